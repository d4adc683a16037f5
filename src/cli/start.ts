/**
 * `chorus start` (what `npm start` runs): the main job, a local 3-member cluster. The same
 * as `chorus dev --nodes 3`; see dev.ts.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { runDevCluster } from './dev.js';

export function registerStart(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description('start a local 3-member cluster on 127.0.0.1 (chorus dev --nodes 3) until Ctrl-C')
    .option('--data-dir <dir>', 'where each member keeps its data and log', '.chorus-dev')
    .action(async (options: { dataDir: string }) => {
      ctx.exitCode = await runDevCluster(3, options.dataDir, false, ctx);
    });
}
