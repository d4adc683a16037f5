// Goal: `chorus sim` prints the configuration drawn from the seed, the verdict and one
// trace-hash line; exits 0 on pass, 1 on failure, 2 on bad arguments with usage; a campaign
// prints a summary and the reproduce command of each failing seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { parseDuration, parseSeeds } from '../src/cli/sim.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

test('one seed: configuration first, verdict, trace-hash; same seed same hash', async () => {
  const a = await cli('sim', '--seed', '42', '--duration', '5s');
  assert.equal(a.code, 0, a.out.join('\n'));
  assert.match(
    a.out[0]!,
    /^seed: 42 {2}workload: register {2}nodes: 5/,
    'register is the default workload',
  );
  assert.match(a.out[1]!, /^nemesis \(drawn from the seed\): /);
  assert.ok(a.out.includes('verdict: PASS'));
  const hashLines = a.out.filter((l) => l.startsWith('trace-hash: '));
  assert.equal(hashLines.length, 1);
  assert.match(hashLines[0]!, /^trace-hash: [0-9a-f]{16}$/);
  const b = await cli('sim', '--seed', '42', '--duration', '5s');
  assert.equal(
    b.out.find((l) => l.startsWith('trace-hash')),
    hashLines[0],
  );
  const c = await cli('sim', '--seed', '43', '--duration', '5s');
  assert.notEqual(
    c.out.find((l) => l.startsWith('trace-hash')),
    hashLines[0],
  );
});

test('bad arguments exit 2 with usage and a reason', async () => {
  for (const args of [
    ['sim', '--seed', 'x'],
    ['sim', '--seed', '1', '--nemesis', 'meteor'],
    ['sim', '--seed', '1', '--nodes', '0'],
    ['sim', '--seed', '1', '--duration', 'soon'],
    ['sim', '--seed', '1', '--workload', 'nope'],
    ['sim'],
    ['sim', '--seed', '1', '--seeds', '1..2'],
    ['sim', '--bogus'],
  ]) {
    const r = await cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}`);
    assert.ok(r.err.length > 0, `${args.join(' ')} explains itself`);
  }
});

test('a campaign prints a summary table and passes', async () => {
  const r = await cli('sim', '--seeds', '1..5', '--duration', '3s', '--nemesis', 'partition,crash');
  assert.equal(r.code, 0, r.out.join('\n'));
  assert.ok(r.out.some((l) => /fault kind +runs +failed/.test(l)));
  assert.equal(r.out.at(-1), '5 passed, 0 failed');
});

test('a planted bug makes seeds fail: exit 1, problems and the reproduce command', async () => {
  const r = await cli(
    'sim',
    '--workload',
    'broadcast',
    '--seeds',
    '1..2',
    '--duration',
    '20s',
    '--plant-bug',
    'ack-before-fsync',
  );
  assert.equal(r.code, 1, r.out.join('\n'));
  assert.ok(r.out.some((l) => l.startsWith('FAIL seed 1: ')));
  assert.ok(
    r.out.includes(
      '  reproduce: npx chorus sim --workload broadcast --seed 1 --nodes 5 --nemesis all --duration 20000ms --plant-bug ack-before-fsync',
    ),
  );
  const one = await cli(
    'sim',
    '--workload',
    'broadcast',
    '--seed',
    '1',
    '--duration',
    '20s',
    '--plant-bug',
    'ack-before-fsync',
  );
  assert.equal(one.code, 1);
  assert.ok(one.out.includes('verdict: FAIL'));
  const bad = await cli('sim', '--seed', '1', '--plant-bug', 'gremlin');
  assert.equal(bad.code, 2);
});

test('--trace writes JSON lines; a real process exits with the verdict code', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chorus-sim-'));
  const trace = join(dir, 'trace.jsonl');
  const r = spawnSync(
    process.execPath,
    ['bin/chorus.js', 'sim', '--seed', '3', '--duration', '2s', '--trace', trace],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = readFileSync(trace, 'utf8').trim().split('\n');
  assert.ok(lines.length > 100);
  assert.equal((JSON.parse(lines[0]!) as { kind: string }).kind, 'plan');
  const bad = spawnSync(process.execPath, ['bin/chorus.js', 'sim', '--seed', 'nope'], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /usage: chorus sim/);
});

test('durations and seed ranges parse, and reject junk', () => {
  assert.equal(parseDuration('60s'), 60_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('5'), 5000);
  assert.throws(() => parseDuration('-1s'));
  assert.deepEqual(parseSeeds('3..5'), [3, 4, 5]);
  assert.deepEqual(parseSeeds('9'), [9]);
  assert.throws(() => parseSeeds('5..3'));
  assert.throws(() => parseSeeds('1.5'));
});
