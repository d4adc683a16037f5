/**
 * The etcd client commands of `chorus`, modelled on etcdctl: put, get, del, txn, compaction,
 * watch, lease, member, endpoint, move-leader, alarm and snapshot. Each group lives in its own file;
 * this registers them all. docs/cli.md describes them.
 */
import type { Command } from 'commander';
import { registerAlarm } from './alarm.js';
import type { CliContext } from './context.js';
import { registerEndpoint } from './endpoint.js';
import { registerKv } from './kv.js';
import { registerLease } from './lease.js';
import { registerMember } from './member.js';
import { registerSnapshot } from './snapshot.js';
import { registerWatch } from './watch.js';

export function registerClient(program: Command, ctx: CliContext): void {
  registerKv(program, ctx);
  registerWatch(program, ctx);
  registerLease(program, ctx);
  registerMember(program, ctx);
  registerEndpoint(program, ctx);
  registerAlarm(program, ctx);
  registerSnapshot(program, ctx);
}
