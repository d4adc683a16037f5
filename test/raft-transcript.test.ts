// Goal: every transcript in testdata/raft/ replays to exactly its recorded printout, so each
// paper section it cites keeps behaving as the story says. CHORUS_REWRITE=1 regenerates the
// printouts (read the diff before committing it); transcripts listed in knownFailures record
// the CORRECT behaviour of a core bug that is not fixed yet and are never rewritten.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { Cluster, formatTranscript, parseTranscript } from './raft-harness.js';

/** Transcripts whose expected output is the correct behaviour the core does not show yet. */
const knownFailures = new Map<string, string>([
  // Empty: the four bugs these transcripts found (stale lease reads, a read stuck after a lost
  // heartbeat round, lost appends never resent, a stalled in-flight window) are fixed.
]);

const dir = fileURLToPath(new URL('../../testdata/raft/', import.meta.url));
const rewrite = process.env['CHORUS_REWRITE'] === '1';

function replay(text: string): { actual: string; outputs: string[]; expected: string } {
  const { directives, trailer } = parseTranscript(text);
  const cluster = new Cluster();
  const outputs = directives.map((d) => cluster.run(d.line));
  const actual = formatTranscript(directives, outputs, trailer);
  const expected = formatTranscript(
    directives,
    directives.map((d) => d.expected),
    trailer,
  );
  return { actual, outputs, expected };
}

for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.txt'))
  .sort()) {
  const known = knownFailures.get(file);
  test(`transcript ${file}`, () => {
    const path = join(dir, file);
    const { actual, expected } = replay(readFileSync(path, 'utf8'));
    if (known !== undefined) {
      assert.notEqual(actual, expected, `${file} passes now: remove it from knownFailures`);
      return;
    }
    if (rewrite) {
      writeFileSync(path, actual);
      return;
    }
    assert.equal(actual, expected, `${file} differs; rerun with CHORUS_REWRITE=1 to see the diff`);
  });
}

test('figure8.txt catches the planted commit-rule bug (commit an old-term entry by counting)', () => {
  const text = readFileSync(join(dir, 'figure8.txt'), 'utf8');
  const broken = text.replace(
    'add-nodes 5 prevote=false checkquorum=false',
    'add-nodes 5 prevote=false checkquorum=false bug=commit-old-term',
  );
  assert.notEqual(broken, text, 'the bug was planted');
  const { actual, expected } = replay(broken);
  assert.notEqual(
    actual,
    expected,
    'the transcript did not notice a leader committing an old-term entry',
  );
});
