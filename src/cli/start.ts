/** `chorus start`: the main job. The local cluster arrives with the KV issue; until then it says what exists. */
import type { Command } from 'commander';
import type { CliContext } from './context.js';

export function registerStart(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description('start a local cluster (not yet: prints what exists)')
    .action(() => {
      for (const line of [
        'Chorus — what exists today:',
        '  chorus sim     deterministic cluster simulator with fault injection (gossip broadcast workload)',
        '                 e.g. npx chorus sim --seed 42 --nemesis all',
        '                      npx chorus sim --seeds 1..200 --nemesis all',
        '  npm test       typecheck, lint, unit tests, transport tests on loopback, a 200-seed campaign',
        '  npm run bench  simulator and TCP transport throughput',
        'The local multi-node cluster (npm start) arrives with the Raft and KV issues.',
      ])
        ctx.out(line);
    });
}
