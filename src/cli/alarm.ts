/**
 * `chorus alarm list | disarm`: etcdctl's alarm commands. `disarm` does what etcdctl's does:
 * it lists the active alarms, then deactivates each (through the cluster's log), printing
 * the ones it cleared. Alarms print as etcd prints them, `memberID:<decimal> alarm:<TYPE> `.
 */
import type { Command } from 'commander';
import type { AlarmResponse } from '../client/types.js';
import { clientCommand, flagsOf, withClient } from './client-common.js';
import { Printer } from './client-print.js';
import type { CliContext } from './context.js';

export function registerAlarm(program: Command, ctx: CliContext): void {
  const alarm = program.command('alarm').description('alarm commands: list, disarm');

  clientCommand(alarm, 'list', 'list the active alarms').action(async (_o, command: Command) => {
    const flags = flagsOf(command);
    await withClient(ctx, flags, async (client) => {
      const response = await client.call('Maintenance.Alarm', { action: 'GET', alarm: 'NONE' });
      new Printer(ctx, flags.writeOut).alarms(response);
    });
  });

  clientCommand(alarm, 'disarm', 'deactivate every active alarm').action(
    async (_o, command: Command) => {
      const flags = flagsOf(command);
      await withClient(ctx, flags, async (client) => {
        const listed = await client.call('Maintenance.Alarm', { action: 'GET', alarm: 'NONE' });
        const cleared: AlarmResponse = { header: listed.header, alarms: [] };
        for (const a of listed.alarms) {
          const r = await client.call('Maintenance.Alarm', {
            action: 'DEACTIVATE',
            memberID: a.memberID,
            alarm: a.alarm,
          });
          cleared.header = r.header;
          cleared.alarms.push(...r.alarms);
        }
        new Printer(ctx, flags.writeOut).alarms(cleared);
      });
    },
  );
}
