/**
 * `chorus endpoint status | health` and `chorus move-leader`: questions asked of each member
 * separately, as etcdctl asks them. `health` counts a member healthy when a linearizable
 * read through it succeeds (it needs the leader and a quorum) and it reports no alarm;
 * `--cluster` asks every member the cluster lists instead of the --endpoints.
 */
import type { Command } from 'commander';
import { parseEndpoints, type EtcdClient } from '../client/client.js';
import { ClientInputError, EtcdClientError } from '../client/errors.js';
import { parseMemberId } from '../client/requests.js';
import { clientCommand, exitFailed, flagsOf, withClient } from './client-common.js';
import { goDuration, Printer, type EndpointHealth, type EndpointStatus } from './client-print.js';
import type { CliContext } from './context.js';

interface EndpointFlags {
  cluster?: boolean;
}

export function registerEndpoint(program: Command, ctx: CliContext): void {
  const endpoint = program.command('endpoint').description('per-endpoint commands: status, health');

  clientCommand(
    endpoint,
    'status',
    "each endpoint's member id, version, leader, Raft term and index",
  )
    .option('--cluster', 'every member the cluster lists, instead of --endpoints')
    .action(async (_o, command: Command) => {
      const flags = flagsOf<EndpointFlags>(command);
      await withClient(ctx, flags, async (client) => {
        const list: EndpointStatus[] = [];
        let failed = false;
        for (const ep of await endpointsOf(client, flags)) {
          try {
            list.push({
              endpoint: ep,
              status: await client.call('Maintenance.Status', {}, { endpoint: ep }),
            });
          } catch (error) {
            if (!(error instanceof EtcdClientError)) throw error;
            failed = true;
            ctx.err(`Failed to get the status of endpoint ${ep} (${error.message})`);
          }
        }
        new Printer(ctx, flags.writeOut).endpointStatus(list);
        if (failed) ctx.exitCode = exitFailed;
      });
    });

  clientCommand(endpoint, 'health', 'whether each endpoint can serve a linearizable read')
    .option('--cluster', 'every member the cluster lists, instead of --endpoints')
    .action(async (_o, command: Command) => {
      const flags = flagsOf<EndpointFlags>(command);
      await withClient(ctx, flags, async (client) => {
        const endpoints = await endpointsOf(client, flags);
        const list = await Promise.all(endpoints.map((ep) => health(client, ep)));
        new Printer(ctx, flags.writeOut).endpointHealth(list);
        if (list.some((h) => h.error !== '')) {
          ctx.err('Error: unhealthy cluster');
          ctx.exitCode = exitFailed;
        }
      });
    });

  clientCommand(
    program,
    'move-leader <memberID>',
    'transfer leadership to another member (hex id)',
  ).action(async (idText: string, _o, command: Command) => {
    const flags = flagsOf(command);
    await withClient(ctx, flags, async (client) => {
      const target = parseMemberId(idText);
      const leader = await findLeader(client);
      const response = await client.call(
        'Maintenance.MoveLeader',
        { targetID: target },
        { endpoint: leader.endpoint },
      );
      new Printer(ctx, flags.writeOut).moveLeader(leader.id, target, response);
    });
  });
}

async function endpointsOf(client: EtcdClient, flags: EndpointFlags): Promise<readonly string[]> {
  if (flags.cluster !== true) return client.endpoints;
  const members = await client.call('Cluster.MemberList', { linearizable: false });
  const urls = members.members.flatMap((m) => m.clientURLs);
  if (urls.length === 0) throw new ClientInputError('the cluster lists no client URLs');
  return [...new Set(parseEndpoints(urls.join(',')))];
}

async function health(client: EtcdClient, endpoint: string): Promise<EndpointHealth> {
  const result: EndpointHealth = { endpoint, health: false, took: '', error: '' };
  let started = process.hrtime.bigint();
  try {
    // `took` is the read's own time, as in etcdctl, not the connection's.
    await client.reachable(endpoint);
    started = process.hrtime.bigint();
    await client.call('KV.Range', { key: Buffer.from('health') }, { endpoint });
    result.health = true;
  } catch (error) {
    if (!(error instanceof EtcdClientError)) throw error;
    result.error = error.message;
  }
  result.took = goDuration(process.hrtime.bigint() - started);
  if (!result.health) return result;
  try {
    const alarms = await client.call('Maintenance.Alarm', { action: 'GET' }, { endpoint });
    if (alarms.alarms.length > 0) {
      result.health = false;
      result.error = `Active Alarm(s): ${alarms.alarms.map((a) => `${a.alarm} `).join('')}`;
    }
  } catch {
    result.health = false;
    result.error = 'Unable to fetch the alarm list';
  }
  return result;
}

/** The endpoint among --endpoints whose member is the leader, as etcdctl finds it. */
async function findLeader(client: EtcdClient): Promise<{ endpoint: string; id: string }> {
  for (const endpoint of client.endpoints) {
    const status = await client.call('Maintenance.Status', {}, { endpoint });
    const id = status.header?.memberId;
    if (id !== undefined && id === status.leader) return { endpoint, id };
  }
  throw new ClientInputError(`no leader endpoint given at [${client.endpoints.join(' ')}]`);
}
