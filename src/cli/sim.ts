import type { Command } from 'commander';
import type { CliContext } from './context.js';

export function registerSim(program: Command, ctx: CliContext): void {
  program.command('sim').action(() => ctx.err('not yet'));
}
