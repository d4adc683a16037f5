/**
 * The `chorus` command: one subcommand per file in this folder. `main` returns the exit
 * code instead of exiting, so tests can call it in-process.
 */
import { Command, CommanderError } from 'commander';
import { registerStart } from './start.js';
import { registerSim } from './sim.js';
import { registerCheck } from './check.js';
import { registerServer } from './server.js';
import { registerDev } from './dev.js';
import { registerClient } from './client.js';
import type { CliContext } from './context.js';

export async function main(
  argv: readonly string[],
  context?: Partial<CliContext>,
): Promise<number> {
  const ctx: CliContext = {
    out: context?.out ?? ((line) => process.stdout.write(line + '\n')),
    err: context?.err ?? ((line) => process.stderr.write(line + '\n')),
    exitCode: 0,
  };
  const program = new Command('chorus')
    .description('Chorus: a distributed data system that proves itself under faults')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.out(s.trimEnd()),
      writeErr: (s) => ctx.err(s.trimEnd()),
    });
  registerStart(program, ctx);
  registerSim(program, ctx);
  registerCheck(program, ctx);
  registerServer(program, ctx);
  registerDev(program, ctx);
  registerClient(program, ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not errors; every other parse failure is bad arguments.
      return error.exitCode === 0 ? 0 : 2;
    }
    throw error;
  }
  return ctx.exitCode;
}
