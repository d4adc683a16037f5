/**
 * `chorus member list | add | remove | promote`: the Cluster service as etcdctl drives it.
 * Member ids are read and printed in hexadecimal. A server that does not implement a change
 * answers UNIMPLEMENTED, which is printed as the server worded it, with exit code 1.
 */
import type { Command } from 'commander';
import { ClientInputError } from '../client/errors.js';
import { parseMemberId } from '../client/requests.js';
import type { MemberAddResponse } from '../client/types.js';
import { clientCommand, flagsOf, withClient } from './client-common.js';
import { Printer } from './client-print.js';
import type { CliContext } from './context.js';

export function registerMember(program: Command, ctx: CliContext): void {
  const member = program
    .command('member')
    .description('membership commands: list, add, remove, promote');

  clientCommand(member, 'list', 'list the members of the cluster')
    .option('--consistency <l|s>', 'linearizable (l) or serializable (s)', 'l')
    .action(async (_o, command: Command) => {
      const flags = flagsOf<{ consistency: string }>(command);
      await withClient(ctx, flags, async (client) => {
        if (flags.consistency !== 'l' && flags.consistency !== 's')
          throw new ClientInputError(
            `unknown consistency flag ${JSON.stringify(flags.consistency)}`,
          );
        const response = await client.call('Cluster.MemberList', {
          linearizable: flags.consistency === 'l',
        });
        new Printer(ctx, flags.writeOut).memberList(response);
      });
    });

  clientCommand(member, 'add <name>', 'add a member (as a learner with --learner)')
    .option('--peer-urls <urls>', "the new member's peer URLs, comma separated")
    .option('--learner', 'add it as a non-voting learner')
    .action(async (name: string, _o, command: Command) => {
      const flags = flagsOf<{ peerUrls?: string; learner?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const peerURLs = (flags.peerUrls ?? '').split(',').filter((u) => u.trim() !== '');
        if (peerURLs.length === 0) throw new ClientInputError('member peer urls not provided');
        const response = await client.call('Cluster.MemberAdd', {
          peerURLs,
          isLearner: flags.learner === true,
        });
        new Printer(ctx, flags.writeOut).memberAdd(response);
        if (flags.writeOut === 'simple') printJoinSettings(ctx, name, peerURLs, response);
      });
    });

  for (const [verb, method, printed] of [
    ['remove', 'Cluster.MemberRemove', 'removed from'],
    ['promote', 'Cluster.MemberPromote', 'promoted in'],
  ] as const) {
    const description = verb === 'remove' ? 'remove a member' : 'promote a learner to a voter';
    clientCommand(member, `${verb} <memberID>`, description).action(
      async (idText: string, _o, command: Command) => {
        const flags = flagsOf(command);
        await withClient(ctx, flags, async (client) => {
          const id = parseMemberId(idText);
          const response = await client.call(method, { ID: id });
          new Printer(ctx, flags.writeOut).memberChanged(printed, id, response);
        });
      },
    );
  }
}

/** etcdctl prints the settings the new member must start with. */
function printJoinSettings(
  ctx: CliContext,
  name: string,
  peerURLs: string[],
  response: MemberAddResponse,
): void {
  const newId = response.member?.ID;
  const conf = response.members.flatMap((m) =>
    m.peerURLs.map((u) => `${m.ID === newId ? name : m.name}=${u}`),
  );
  ctx.out('');
  ctx.out(`ETCD_NAME=${JSON.stringify(name)}`);
  ctx.out(`ETCD_INITIAL_CLUSTER=${JSON.stringify(conf.join(','))}`);
  ctx.out(`ETCD_INITIAL_ADVERTISE_PEER_URLS=${JSON.stringify(peerURLs.join(','))}`);
  ctx.out('ETCD_INITIAL_CLUSTER_STATE="existing"');
}
