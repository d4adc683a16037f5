/**
 * `chorus watch <key> [range_end]`: prints each event as etcdctl does (the event type, the
 * previous key-value pair with --prev-kv, then key and value) until Ctrl-C, which ends the
 * command with exit code 0. If the member serving the stream goes away, the watch moves to
 * another endpoint and resumes after the last revision it printed, so no event is lost or
 * printed twice; it fails when no endpoint can be reached.
 */
import { status as Status } from '@grpc/grpc-js';
import type { Command } from 'commander';
import type { EtcdClient } from '../client/client.js';
import { streamReconnectDelayMs } from '../client/constants.js';
import { EtcdClientError, fromGrpcError, streamBroken } from '../client/errors.js';
import { parseCount, rangeRequest } from '../client/requests.js';
import type { WatchCreateRequest, WatchResponse } from '../client/types.js';
import {
  clientCommand,
  flagsOf,
  Interruption,
  streamEndpoint,
  withClient,
} from './client-common.js';
import { Printer } from './client-print.js';
import type { CliContext } from './context.js';

interface WatchFlags {
  prefix?: boolean;
  rev?: string;
  prevKv?: boolean;
  progressNotify?: boolean;
}

export function registerWatch(program: Command, ctx: CliContext): void {
  clientCommand(
    program,
    'watch <key> [range_end]',
    'print the events on a key or range until Ctrl-C',
  )
    .option('--prefix', 'watch the keys with this prefix')
    .option('--rev <revision>', 'start at this revision (replaying history)')
    .option('--prev-kv', 'also print the key-value pair before each event')
    .option('--progress-notify', 'print the periodic progress notifications')
    .action(async (key: string, rangeEnd: string | undefined, _o, command: Command) => {
      const flags = flagsOf<WatchFlags>(command);
      await withClient(ctx, flags, async (client) => {
        const range = rangeRequest(key, rangeEnd, { prefix: flags.prefix === true });
        const create: WatchCreateRequest = {
          key: range.key,
          ...(range.rangeEnd === undefined ? {} : { rangeEnd: range.rangeEnd }),
          startRevision: flags.rev === undefined ? '0' : parseCount(flags.rev, 'revision'),
          prevKv: flags.prevKv === true,
          progressNotify: flags.progressNotify === true,
        };
        await watchUntilInterrupted(client, create, new Printer(ctx, flags.writeOut), ctx, flags);
      });
    });
}

/** How one stream ended: Ctrl-C, the server cancelled the watch, or the connection broke. */
type StreamEnd =
  | { kind: 'interrupted' }
  | { kind: 'canceled'; reason: string }
  | { kind: 'broken'; error: EtcdClientError };

async function watchUntilInterrupted(
  client: EtcdClient,
  create: WatchCreateRequest,
  printer: Printer,
  ctx: CliContext,
  flags: WatchFlags,
): Promise<void> {
  const signal = new Interruption();
  try {
    // Where to resume after a broken stream: after the last revision printed.
    let next = create.startRevision ?? '0';
    // Reconnections without a single response in between: each endpoint gets one try.
    let fruitless = 0;
    let broken: EtcdClientError | undefined;
    for (;;) {
      const endpoint = await streamEndpoint(client, broken);
      let progressed = false;
      const end = await new Promise<StreamEnd>((resolve) => {
        const stream = client.stream('Watch.Watch', endpoint);
        let done = false;
        const finish = (result: StreamEnd): void => {
          if (done) return;
          done = true;
          signal.onInterrupt = undefined;
          stream.cancel();
          resolve(result);
        };
        signal.onInterrupt = () => finish({ kind: 'interrupted' });
        if (signal.interrupted) return finish({ kind: 'interrupted' });
        stream.on('data', (r: WatchResponse) => {
          progressed = true;
          if (r.canceled) return finish({ kind: 'canceled', reason: cancelReason(r) });
          if (r.created) return;
          if (r.events.length === 0) {
            if (flags.progressNotify === true)
              ctx.out(`progress notify: ${r.header?.revision ?? '0'}`);
            return;
          }
          printer.watch(r);
          const last = r.events[r.events.length - 1]!.kv;
          if (last !== null) next = (BigInt(last.modRevision) + 1n).toString();
        });
        stream.on('error', (error) =>
          finish({ kind: 'broken', error: fromGrpcError(error, endpoint) }),
        );
        stream.on('end', () =>
          finish({
            kind: 'broken',
            error: new EtcdClientError(Status.UNAVAILABLE, 'watch stream ended', endpoint),
          }),
        );
        stream.write({ createRequest: { ...create, startRevision: next } });
      });
      if (end.kind === 'interrupted') return;
      if (end.kind === 'canceled')
        throw new EtcdClientError(Status.CANCELLED, end.reason, endpoint, { local: true });
      fruitless = progressed ? 0 : fruitless + 1;
      if (!streamBroken(end.error) || fruitless >= client.endpoints.length) throw end.error;
      broken = end.error;
      client.avoid(endpoint);
      await new Promise((resolve) => setTimeout(resolve, streamReconnectDelayMs));
    }
  } finally {
    signal.dispose();
  }
}

function cancelReason(r: WatchResponse): string {
  if (r.compactRevision !== '0')
    return `watch was canceled (etcdserver: mvcc: required revision has been compacted; compacted at ${r.compactRevision})`;
  return `watch was canceled (${r.cancelReason === '' ? 'by the server' : r.cancelReason})`;
}
