// Goal: the determinism ban of DESIGN.md is real — lint rejects time, randomness, timers and
// direct I/O in protocol code, and allows them where they belong (Env implementations, the
// CLI entry points). Each case lints source text as if it stood at a given path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';

const eslint = new ESLint();

async function rulesHit(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => m.ruleId ?? m.message);
}

const banned: [string, string][] = [
  ['export const t = Date.now();\n', 'no-restricted-globals'],
  ['export const r = Math.random();\n', 'no-restricted-properties'],
  ['setTimeout(() => {}, 1);\n', 'no-restricted-globals'],
  ['export const p = performance.now();\n', 'no-restricted-globals'],
  ['export const h = process.hrtime();\n', 'no-restricted-properties'],
  ["import * as fs from 'node:fs';\nexport const f = fs;\n", 'no-restricted-imports'],
  ["import { connect } from 'node:net';\nexport const c = connect;\n", 'no-restricted-imports'],
  [
    "import { randomBytes } from 'node:crypto';\nexport const b = randomBytes;\n",
    'no-restricted-imports',
  ],
];

test(
  'protocol code may not reach time, randomness or I/O directly',
  { timeout: 120_000 },
  async () => {
    for (const [code, rule] of banned) {
      const hits = await rulesHit(code, 'src/gossip/constants.ts');
      assert.ok(
        hits.includes(rule),
        `${code.trim()} in src/gossip → ${hits.join(', ') || 'no error'}`,
      );
    }
  },
);

test('Env implementations and entry points may', { timeout: 120_000 }, async () => {
  const hits = await rulesHit('export const t = Date.now();\n', 'src/env/node/clock.ts');
  assert.ok(!hits.includes('no-restricted-globals'), hits.join(', '));
  const cli = await rulesHit(
    "import * as fs from 'node:fs';\nexport const f = fs;\n",
    'src/cli/sim.ts',
  );
  assert.ok(!cli.includes('no-restricted-imports'), cli.join(', '));
});

test('floating promises and non-exhaustive switches are errors', { timeout: 120_000 }, async () => {
  const floating = await rulesHit(
    'async function f(): Promise<void> {}\nf();\n',
    'src/gossip/constants.ts',
  );
  assert.ok(floating.includes('@typescript-eslint/no-floating-promises'), floating.join(', '));
  const code =
    "type K = 'a' | 'b';\nexport function g(k: K): number {\n  switch (k) {\n    case 'a':\n      return 1;\n  }\n  return 0;\n}\n";
  const switchHits = await rulesHit(code, 'src/gossip/constants.ts');
  assert.ok(
    switchHits.includes('@typescript-eslint/switch-exhaustiveness-check'),
    switchHits.join(', '),
  );
});
