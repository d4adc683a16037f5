// Goal: the simulator is deterministic (one seed, one trace hash; different seeds, different
// hashes), gossip broadcast passes a 200-seed campaign with every nemesis, the seeds that
// once failed stay fixed, and planted bugs are caught — proof that the campaign can fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSimulation, type RunResult } from '../src/sim/run.js';
import { faultKinds } from '../src/sim/nemesis.js';
import { broadcastWorkload, type BroadcastOptions } from '../src/workload/broadcast.js';

const safetyMs = 20_000;

function run(
  seed: number,
  options: Partial<BroadcastOptions> = {},
  trace?: (line: string) => void,
): RunResult {
  return runSimulation(broadcastWorkload(options), {
    seed,
    nodes: 5,
    nemesis: faultKinds,
    safetyMs,
    ...(trace ? { trace } : {}),
  });
}

const reproduce = (seed: number): string =>
  `npx chorus sim --workload broadcast --seed ${seed} --nodes 5 --nemesis all --duration ${safetyMs}ms`;

test('determinism: each seed run twice in one process gives the same trace hash', () => {
  const hashes = new Set<string>();
  for (let seed = 1; seed <= 15; seed++) {
    const a = run(seed);
    const b = run(seed);
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} diverged: ${reproduce(seed)}`);
    assert.equal(a.events, b.events);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 15, 'different seeds give different hashes');
});

test('determinism: the JSONL trace is identical line for line, and tracing does not change the hash', () => {
  const a: string[] = [];
  const b: string[] = [];
  const traced = run(77, {}, (line) => a.push(line));
  run(77, {}, (line) => b.push(line));
  assert.deepEqual(a, b);
  assert.ok(a.length > 1000);
  assert.equal(run(77).traceHash, traced.traceHash);
  for (const line of a.slice(0, 50)) assert.doesNotThrow(() => JSON.parse(line));
});

test('campaign: 200 seeds of broadcast with all nemeses pass', () => {
  const failures: string[] = [];
  const kinds = new Set<string>();
  let acknowledged = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const result = run(seed);
    for (const kind of result.plan.kinds) kinds.add(kind);
    acknowledged += Number(
      /broadcasts: (\d+) acknowledged/.exec(result.verdict.summary[0] ?? '')?.[1] ?? 0,
    );
    if (!result.verdict.ok)
      failures.push(`seed ${seed}: ${result.verdict.problems.join('; ')}\n  ${reproduce(seed)}`);
  }
  assert.deepEqual(failures, []);
  assert.deepEqual(
    [...kinds].sort(),
    [...broadcastWorkload().faults].sort(),
    'the swarm exercised every fault kind',
  );
  assert.ok(acknowledged > 200 * 300, `work was done: ${acknowledged} acknowledged broadcasts`);
});

test('regression: seed 37 (shared-before-fsync sequence reuse) passes', () => {
  const result = run(37);
  assert.ok(result.verdict.ok, result.verdict.problems.join('; '));
});

for (const bug of ['ack-before-fsync', 'share-before-fsync'] as const) {
  test(`a planted bug (${bug}) is caught within 50 seeds`, () => {
    let caught: RunResult | undefined;
    for (let seed = 1; seed <= 50 && caught === undefined; seed++) {
      const result = run(seed, { bug });
      if (!result.verdict.ok) caught = result;
    }
    assert.ok(caught !== undefined, `${bug} survived 50 seeds: the checker cannot see it`);
    assert.ok(
      caught.verdict.problems.some((p) => /lost|never became visible/.test(p)),
      caught.verdict.problems.join('; '),
    );
  });
}

test('seed 37 fails with the sequence-reuse bug planted (the regression test can fail)', () => {
  assert.equal(run(37, { bug: 'share-before-fsync' }).verdict.ok, false);
});
