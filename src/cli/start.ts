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
        '  chorus sim     deterministic cluster simulator with fault injection; workloads:',
        '                   register   a map of registers over Raft, judged for linearizability',
        '                   broadcast  gossip broadcast, judged by the set-full checker',
        '                 e.g. npx chorus sim --workload register --seed 42 --nemesis all',
        '                      npx chorus sim --workload register --seeds 1..200 --duration 10s',
        '  chorus check   linearizability checker for recorded histories, with an HTML report',
        '                 e.g. npx chorus check history.jsonl --model register --html report.html',
        '  npm test       typecheck, lint, unit, transcript, loopback and simulation tests',
        '  npm run bench  simulator, transport, checker and Raft benchmarks',
        'The local multi-node cluster (npm start) arrives with the KV and server issues.',
      ])
        ctx.out(line);
    });
}
