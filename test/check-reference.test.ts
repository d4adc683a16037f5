// Goal: the checker reaches the published verdict on every reference history from outside
// this project (Porcupine's test data: Jepsen's etcd register logs and the multi-key kv
// logs). The files are read from ../shared/data at test time, never copied into the repo;
// CHORUS_PORCUPINE_DATA may point at another copy of the same directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHistory } from '../src/check/formats.js';
import { checkHistory } from '../src/check/linearizability.js';
import { models } from '../src/check/models/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dataDir =
  process.env['CHORUS_PORCUPINE_DATA'] ?? path.resolve(repoRoot, '../shared/data/porcupine');
const kvDir = path.join(dataDir, 'test_data/kv');
const jepsenDir = path.join(dataDir, 'test_data/jepsen');
const clock = (): number => performance.now();

/** VERDICTS.md lists "NNN true|false" pairs for etcd_000 … etcd_059. */
function etcdVerdicts(): Map<string, boolean> {
  const text = readFileSync(path.join(dataDir, 'VERDICTS.md'), 'utf8');
  const verdicts = new Map<string, boolean>();
  for (const m of text.matchAll(/\b(\d{3}) (true|false)\b/g)) verdicts.set(m[1]!, m[2] === 'true');
  return verdicts;
}

const dataMissing = existsSync(dataDir) ? false : `reference data not found at ${dataDir}`;

test(
  'kv reference histories: -ok files are linearizable, -bad files are not',
  { skip: dataMissing },
  () => {
    const files = readdirSync(kvDir).filter((f) => f.endsWith('.txt'));
    assert.equal(files.length, 6, `six kv files in ${kvDir}`);
    for (const file of files) {
      const history = parseHistory(
        readFileSync(path.join(kvDir, file), 'utf8'),
        'porcupine-kv',
        file,
      );
      const result = checkHistory(history, models.kv, { clock, timeoutMs: 60_000 });
      const expected = file.includes('-ok') ? 'linearizable' : 'not-linearizable';
      assert.equal(result.verdict, expected, `${file}: ${result.verdict}`);
    }
  },
);

const jepsenMissing =
  dataMissing ||
  (existsSync(jepsenDir)
    ? false
    : `Jepsen etcd logs not found at ${jepsenDir}: VERDICTS.md describes them but this copy of the ` +
      "data has only kv/. Set CHORUS_PORCUPINE_DATA to a copy of Porcupine's data with test_data/jepsen to run this test.");

test(
  'Jepsen etcd histories 000–059 get the verdicts of VERDICTS.md',
  { skip: jepsenMissing },
  () => {
    const verdicts = etcdVerdicts();
    assert.equal(verdicts.size, 60, 'VERDICTS.md lists 60 etcd verdicts');
    for (const [number, linearizable] of verdicts) {
      const file = `etcd_${number}.log`;
      const history = parseHistory(
        readFileSync(path.join(jepsenDir, file), 'utf8'),
        'jepsen-etcd',
        file,
      );
      const result = checkHistory(history, models.register, { clock, timeoutMs: 60_000 });
      assert.equal(result.verdict, linearizable ? 'linearizable' : 'not-linearizable', file);
    }
  },
);
