/**
 * `chorus lease grant | revoke | timetolive | list | keep-alive`: the Lease service as etcdctl
 * drives it. Lease ids are read and printed in hexadecimal (%016x), as etcdctl does.
 * `keep-alive` renews every TTL/3 until the lease is gone (then it says so and exits 0) or
 * Ctrl-C; `--once` renews once.
 */
import { status as Status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import type { EtcdClient } from '../client/client.js';
import {
  keepAliveDivisor,
  keepAliveIntervalMsMin,
  streamReconnectDelayMs,
} from '../client/constants.js';
import {
  ClientInputError,
  EtcdClientError,
  fromGrpcError,
  streamBroken,
} from '../client/errors.js';
import { leaseHex, parseLeaseId } from '../client/requests.js';
import type { LeaseKeepAliveResponse } from '../client/types.js';
import {
  clientCommand,
  flagsOf,
  Interruption,
  streamEndpoint,
  withClient,
} from './client-common.js';
import { Printer } from './client-print.js';
import type { CliContext } from './context.js';

const leaseNotFound = 'etcdserver: requested lease not found';

export function registerLease(program: Command, ctx: CliContext): void {
  const lease = program
    .command('lease')
    .description('lease commands: grant, revoke, timetolive, list, keep-alive');

  clientCommand(lease, 'grant <ttl>', 'grant a lease of ttl seconds').action(
    async (ttl: string, _o, command: Command) => {
      const flags = flagsOf(command);
      await withClient(ctx, flags, async (client) => {
        if (!/^\d+$/.test(ttl)) throw new ClientInputError(`bad TTL ${JSON.stringify(ttl)}`);
        const response = await wrapped('failed to grant lease', () =>
          client.call('Lease.LeaseGrant', { TTL: ttl }),
        );
        new Printer(ctx, flags.writeOut).grant(response);
      });
    },
  );

  clientCommand(lease, 'revoke <leaseID>', 'revoke a lease (and delete its keys)').action(
    async (idText: string, _o, command: Command) => {
      const flags = flagsOf(command);
      await withClient(ctx, flags, async (client) => {
        const id = parseLeaseId(idText);
        const response = await wrapped('failed to revoke lease', () =>
          client.call('Lease.LeaseRevoke', { ID: id }),
        );
        new Printer(ctx, flags.writeOut).revoke(id, response);
      });
    },
  );

  clientCommand(lease, 'timetolive <leaseID>', "a lease's granted and remaining TTL")
    .option('--keys', 'also list the keys attached to the lease')
    .action(async (idText: string, _o, command: Command) => {
      const flags = flagsOf<{ keys?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const keys = flags.keys === true;
        const response = await client.call('Lease.LeaseTimeToLive', {
          ID: parseLeaseId(idText),
          keys,
        });
        new Printer(ctx, flags.writeOut).timeToLive(response, keys);
      });
    });

  clientCommand(lease, 'list', 'list the active leases').action(async (_o, command: Command) => {
    const flags = flagsOf(command);
    await withClient(ctx, flags, async (client) => {
      new Printer(ctx, flags.writeOut).leases(await client.call('Lease.LeaseLeases', {}));
    });
  });

  clientCommand(lease, 'keep-alive <leaseID>', 'renew a lease until Ctrl-C')
    .option('--once', 'renew once and exit')
    .action(async (idText: string, _o, command: Command) => {
      const flags = flagsOf<{ once?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const id = parseLeaseId(idText);
        const printer = new Printer(ctx, flags.writeOut);
        if (flags.once === true) return printer.keepAlive(await keepAliveOnce(client, id));
        const end = await keepAliveUntilGone(client, id, printer);
        if (end === 'gone' && flags.writeOut === 'simple')
          ctx.out(`lease ${leaseHex(id)} expired or revoked.`);
      });
    });
}

/** etcdctl's "failed to grant lease (etcdserver: …)": the server's text, with what failed. */
async function wrapped<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof EtcdClientError)) throw error;
    throw new EtcdClientError(error.code, `${what} (${error.message})`, error.endpoint, {
      cause: error,
      local: true,
    });
  }
}

/** One renewal on a fresh stream, within the command timeout. */
async function keepAliveOnce(client: EtcdClient, id: string): Promise<LeaseKeepAliveResponse> {
  const endpoint = await client.reachable();
  const stream = client.stream('Lease.LeaseKeepAlive', endpoint);
  try {
    const response = await new Promise<LeaseKeepAliveResponse>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new EtcdClientError(Status.DEADLINE_EXCEEDED, 'keep-alive', endpoint)),
        client.options.commandTimeoutMs,
      );
      stream.once('data', (r: LeaseKeepAliveResponse) => {
        clearTimeout(timer);
        resolve(r);
      });
      stream.once('error', (error) => {
        clearTimeout(timer);
        reject(fromGrpcError(error, endpoint));
      });
      stream.write({ ID: id });
    });
    if (BigInt(response.TTL) <= 0n)
      throw new EtcdClientError(Status.NOT_FOUND, leaseNotFound, endpoint);
    return response;
  } finally {
    stream.cancel();
  }
}

/**
 * Renews as etcd's client does: a request whenever the next renewal is due (TTL/3 after the
 * last answer), re-sent every `keepAliveIntervalMsMin` while no answer comes, until the
 * server reports the lease gone (TTL ≤ 0), no answer has come within the lease's TTL (it
 * has expired for all we know), or Ctrl-C. A broken stream is reopened on another endpoint
 * while the lease may still live; before the first answer, each endpoint gets one try.
 */
async function keepAliveUntilGone(
  client: EtcdClient,
  id: string,
  printer: Printer,
): Promise<'gone' | 'interrupted'> {
  const signal = new Interruption();
  try {
    let fruitless = 0;
    let broken: EtcdClientError | undefined;
    // The lease surely lives until the last answer plus its TTL.
    let aliveUntilMs: number | undefined;
    let nextRenewalMs = 0;
    for (;;) {
      const endpoint = await streamEndpoint(client, broken);
      let progressed = false;
      const end = await new Promise<'gone' | 'interrupted' | EtcdClientError>((resolve) => {
        const stream = client.stream('Lease.LeaseKeepAlive', endpoint);
        let done = false;
        const tick = (): void => {
          if (aliveUntilMs !== undefined && Date.now() >= aliveUntilMs) return finish('gone');
          if (Date.now() >= nextRenewalMs) stream.write({ ID: id });
        };
        const timer = setInterval(tick, keepAliveIntervalMsMin);
        const finish = (result: 'gone' | 'interrupted' | EtcdClientError): void => {
          if (done) return;
          done = true;
          clearInterval(timer);
          signal.onInterrupt = undefined;
          stream.cancel();
          resolve(result);
        };
        signal.onInterrupt = () => finish('interrupted');
        if (signal.interrupted) return finish('interrupted');
        stream.on('data', (r: LeaseKeepAliveResponse) => {
          progressed = true;
          const ttl = Number(r.TTL);
          if (ttl <= 0) return finish('gone');
          aliveUntilMs = Date.now() + ttl * 1000;
          nextRenewalMs = Date.now() + (ttl * 1000) / keepAliveDivisor;
          printer.keepAlive(r);
        });
        stream.on('error', (error) => finish(fromGrpcError(error, endpoint)));
        stream.on('end', () =>
          finish(new EtcdClientError(Status.UNAVAILABLE, 'keep-alive stream ended', endpoint)),
        );
        tick();
      });
      if (end === 'gone' || end === 'interrupted') return end;
      fruitless = progressed ? 0 : fruitless + 1;
      const retry =
        aliveUntilMs === undefined
          ? fruitless < client.endpoints.length
          : Date.now() < aliveUntilMs;
      if (!streamBroken(end) || !retry) throw end;
      broken = end;
      client.avoid(endpoint);
      await new Promise((resolve) => setTimeout(resolve, streamReconnectDelayMs));
    }
  } finally {
    signal.dispose();
  }
}
