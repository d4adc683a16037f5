// Goal: `chorus check` keeps its contract. Exit 0 linearizable, 1 not, 3 unknown, 2 bad input;
// bad input is one line naming the file, the line and the reason, never a stack trace — for
// every malformed or truncated line a fuzzer can produce.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { main } from '../src/cli/main.js';
import { parseDuration } from '../src/cli/check.js';

const dir = mkdtempSync(path.join(tmpdir(), 'chorus-check-'));
let files = 0;

function file(text: string, name = `h${files++}.jsonl`): string {
  const full = path.join(dir, name);
  writeFileSync(full, text);
  return full;
}

async function run(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['check', ...argv], { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

const ev = (process: number, type: string, f: string, value: unknown): string =>
  JSON.stringify({ process, type, f, value });

const good = [
  ev(0, 'invoke', 'write', 1),
  ev(1, 'invoke', 'read', null),
  ev(0, 'ok', 'write', 1),
  ev(1, 'ok', 'read', 1),
  ev(1, 'invoke', 'read', null),
  ev(1, 'ok', 'read', 1),
].join('\n');

const stale = [
  ev(0, 'invoke', 'write', 1),
  ev(0, 'ok', 'write', 1),
  ev(0, 'invoke', 'write', 2),
  ev(0, 'ok', 'write', 2),
  ev(1, 'invoke', 'read', null),
  ev(1, 'ok', 'read', 1),
].join('\n');

/** Thirty concurrent writes then a read of a value no one wrote: a huge search to refute. */
function hard(): string {
  const lines: string[] = [];
  for (let p = 0; p < 30; p++) lines.push(ev(p, 'invoke', 'write', p));
  lines.push(ev(99, 'invoke', 'read', null), ev(99, 'ok', 'read', 1000));
  for (let p = 0; p < 30; p++) lines.push(ev(p, 'ok', 'write', p));
  return lines.join('\n');
}

test('exit 0 for a linearizable history, 1 with an explanation for a stale read', async () => {
  const ok = await run(file(good), '--model', 'register');
  assert.equal(ok.code, 0, ok.err.join('\n'));
  assert.match(ok.out[0]!, /^linearizable/);
  const bad = await run(file(stale), '--model', 'register');
  assert.equal(bad.code, 1);
  const text = bad.out.join('\n');
  assert.match(text, /not linearizable/);
  assert.match(text, /longest linearizable prefix places 2 of 3/);
  assert.match(
    text,
    /process 1 read → 1 \(ok, lines 5–6\): it returned 1 but the register holds 2/,
  );
});

test('exit 3 when the time budget runs out', async () => {
  const result = await run(file(hard()), '--model', 'register', '--timeout', '5ms');
  assert.equal(result.code, 3, result.out.join('\n'));
  assert.match(result.out.join('\n'), /unknown.*time budget ran out/s);
});

test('--html writes a self-contained report', async () => {
  const html = path.join(dir, 'report.html');
  const result = await run(file(stale), '--model', 'register', '--html', html);
  assert.equal(result.code, 1);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /<svg class="timeline"/);
  assert.doesNotMatch(page, /<script|src=|href=/);
});

test('bad arguments and unreadable files exit 2 with a reason', async () => {
  const cases: [string[], RegExp][] = [
    [[file(good), '--model', 'tree'], /unknown model "tree"/],
    [[file(good), '--model', 'register', '--format', 'csv'], /unknown format "csv"/],
    [[file(good), '--model', 'register', '--timeout', 'soon'], /bad --timeout "soon"/],
    [[path.join(dir, 'missing.jsonl'), '--model', 'register'], /missing\.jsonl: cannot read/],
    [[file(good)], /required option '--model/],
  ];
  for (const [argv, reason] of cases) {
    const result = await run(...argv);
    assert.equal(result.code, 2, argv.join(' '));
    assert.match(result.err.join('\n'), reason);
  }
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('0s'), undefined);
});

test('malformed histories name the file, the line and the reason', async () => {
  const cases: [string, string, RegExp][] = [
    [`${ev(0, 'invoke', 'read', null)}\n{"process": 0, "type": "done"`, 'jsonl', /:2: not JSON/],
    [
      `${ev(0, 'invoke', 'read', null)}\n${ev(0, 'invoke', 'read', null)}`,
      'jsonl',
      /:2: process 0 invokes read while its read from line 1/,
    ],
    [
      ev(0, 'ok', 'read', 1),
      'jsonl',
      /:1: ok read by process 0, which has no invocation outstanding/,
    ],
    [ev(0, 'invoke', 'fly', 1), 'jsonl', /:1: the register model has no function "fly"/],
    [
      'INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tbanana',
      'jepsen-etcd',
      /:2: value "banana"/,
    ],
    ['nothing here', 'jepsen-etcd', /no "jepsen.util - " operation lines/],
    [
      '{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n{:process 0, :type :ok',
      'porcupine-kv',
      /:2: expected an EDN map/,
    ],
  ];
  for (const [text, format, reason] of cases) {
    const model = format === 'porcupine-kv' ? 'kv' : 'register';
    const name = file(text);
    const result = await run(name, '--model', model, '--format', format);
    assert.equal(result.code, 2, `${text}: ${result.out.join('\n')}`);
    assert.equal(result.err.length, 1);
    assert.ok(result.err[0]!.includes(name), result.err[0]);
    assert.match(result.err[0]!, reason);
  }
});

/** Any failure must be one `chorus check: FILE:LINE: reason` line, never a stack trace. */
function assertBadInput(result: { code: number; err: string[] }, name: string, line: number): void {
  assert.equal(result.code, 2);
  assert.equal(result.err.length, 1, result.err.join('\n'));
  assert.ok(result.err[0]!.startsWith(`chorus check: ${name}:${line}: `), result.err[0]);
  assert.doesNotMatch(result.err[0]!, /\n\s+at /);
}

test('fuzz: a random line in a history exits 2 naming that line', async () => {
  const lines = good.split('\n');
  await fc.assert(
    fc.asyncProperty(
      fc
        .string({ minLength: 1, maxLength: 60 })
        .filter((s) => s.trim() !== '' && !s.includes('\n')),
      fc.integer({ min: 0, max: lines.length }),
      async (junk, at) => {
        const text = [...lines.slice(0, at), junk, ...lines.slice(at)].join('\n');
        const name = file(text);
        assertBadInput(await run(name, '--model', 'register'), name, at + 1);
      },
    ),
    { numRuns: 150 },
  );
});

test('fuzz: a truncated line exits 2 naming that line (jsonl and porcupine-kv)', async () => {
  const kv = [
    '{:process 0, :type :invoke, :f :put, :key "a", :value "x"}',
    '{:process 0, :type :ok, :f :put, :key "a", :value "x"}',
    '{:process 1, :type :invoke, :f :get, :key "a", :value nil}',
    '{:process 1, :type :ok, :f :get, :key "a", :value "x"}',
  ];
  const formats = [
    { format: 'jsonl', model: 'register', lines: good.split('\n') },
    { format: 'porcupine-kv', model: 'kv', lines: kv },
  ];
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...formats), fc.nat(), fc.nat(), async (f, which, cut) => {
      const at = which % f.lines.length;
      const line = f.lines[at]!;
      const truncated = line.slice(0, 1 + (cut % (line.length - 1)));
      const name = file([...f.lines.slice(0, at), truncated, ...f.lines.slice(at + 1)].join('\n'));
      assertBadInput(await run(name, '--model', f.model, '--format', f.format), name, at + 1);
    }),
    { numRuns: 200 },
  );
});

test('fuzz: garbage after "jepsen.util - " exits 2 naming that line', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.string({ maxLength: 40 }).filter((s) => !s.includes('\n')),
      async (junk) => {
        const text = `noise\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - ${junk}\n`;
        const name = file(text);
        const result = await run(name, '--model', 'register', '--format', 'jepsen-etcd');
        // A few strings are themselves valid lines (e.g. "0 :ok :read 3"); the rest are bad input.
        if (result.code !== 2) return;
        assertBadInput(result, name, 3);
      },
    ),
    { numRuns: 200 },
  );
});
