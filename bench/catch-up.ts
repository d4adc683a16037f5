/**
 * `npm run bench -- --catch-up`: how a follower catches up once the log it lacks has been
 * compacted away. Each round starts a 3-member Chorus cluster (snapshots every third of the
 * keys written), stops one follower with SIGSTOP, writes `keys` values of `valueBytes` through
 * the leader (64 clients), continues the follower and measures:
 *
 * - the time until the follower serves the last key written (serializable get), which covers
 *   the leader's snapshot sent in chunks, the follower's install and the entries after it;
 * - the follower's own install figures (its `snapshot installed` log line: steps, the longest);
 * - a serializable get on the follower every 5 ms meanwhile: how long its event loop stalls.
 *   The baseline is the same probe against the same follower before it was stopped.
 *
 * Below about 8,000 keys of 2 KB the appends already in flight to the stopped follower (a
 * 16 MiB window) carry every entry it misses, and it installs no snapshot (NaN figures).
 *
 * Opt-in (about a minute a round). CHORUS_BENCH_CATCHUP_KEYS (default 60000),
 * _VALUE_BYTES (2048) and _ROUNDS (3) size it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChorusCluster, stopBenchCluster } from './compare-clusters.js';
import { kvCall as call, kvClient, LoadClients, type KvClient } from './compare-load.js';
import { median } from './stats.js';
import type { Benchmark } from './run.js';

const keys = Number(process.env['CHORUS_BENCH_CATCHUP_KEYS'] ?? 60_000);
const valueBytes = Number(process.env['CHORUS_BENCH_CATCHUP_VALUE_BYTES'] ?? 2048);
const rounds = Number(process.env['CHORUS_BENCH_CATCHUP_ROUNDS'] ?? 3);
const writers = 64;
const probeEveryMs = 5;
const catchUpMsMax = 120_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Serializable gets every few ms until `stop()`; their latencies, in ms. */
function probe(client: KvClient): { stop: () => Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await call(client, 'Range', { key: Buffer.from('probe'), serializable: true });
      } catch {
        // A refusal is still an answer; its latency counts.
      }
      latencies.push(performance.now() - started);
      await sleep(probeEveryMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return latencies;
    },
  };
}

interface Round {
  catchUpMs: number;
  snapshotBytes: number;
  installSteps: number;
  installLongestStepMs: number;
  installMs: number;
  probeP50Ms: number;
  probeMaxMs: number;
  idleP50Ms: number;
  idleMaxMs: number;
}

async function round(): Promise<Round> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'chorus-bench-catchup-'));
  const cluster = await startChorusCluster(root, undefined, {
    // The default 5,000 catch-up entries at 60,000 keys, proportionally fewer below, so the
    // follower always needs the snapshot itself.
    env: {
      CHORUS_SNAPSHOT_COUNT: String(Math.floor(keys / 3)),
      CHORUS_SNAPSHOT_CATCHUP_ENTRIES: String(Math.min(5000, Math.floor(keys / 12))),
    },
    logLevel: 'info',
  });
  const lc = new LoadClients(cluster.endpoints);
  const client = (m: number): KvClient => kvClient(cluster.endpoints[m]!);
  try {
    const leader = await lc.leader(20_000);
    if (leader === undefined) throw new Error('no leader');
    const f = (leader + 1) % cluster.members.length;
    const [toLeader, toFollower] = [client(leader), client(f)];
    await call(toLeader, 'Put', { key: Buffer.from('probe'), value: Buffer.from('x') });
    await sleep(500);
    const idle = probe(toFollower);
    await sleep(2_000);
    const idleLatencies = (await idle.stop()).sort((a, b) => a - b);

    const follower = cluster.members[f]!;
    follower.child.kill('SIGSTOP');
    const value = Buffer.alloc(valueBytes, 0x62);
    const keyOf = (i: number): Buffer => Buffer.from(`catch-up/${String(i).padStart(8, '0')}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: writers }, async () => {
        for (let i = next++; i < keys; i = next++)
          await call(toLeader, 'Put', { key: keyOf(i), value });
      }),
    );
    await sleep(3_000); // the leader's last snapshot and compaction
    follower.logTail.length = 0;
    follower.child.kill('SIGCONT');
    const continuedAt = performance.now();
    const stalls = probe(toFollower);
    let catchUpMs = NaN;
    while (performance.now() - continuedAt < catchUpMsMax) {
      await sleep(50);
      const got = (await call(toFollower, 'Range', {
        key: keyOf(keys - 1),
        serializable: true,
      }).catch(() => undefined)) as { kvs?: unknown[] } | undefined;
      if ((got?.kvs?.length ?? 0) > 0) {
        catchUpMs = performance.now() - continuedAt;
        break;
      }
    }
    await sleep(1_000);
    const latencies = (await stalls.stop()).sort((a, b) => a - b);
    const line = follower.logTail.find((l) => l.includes('"snapshot installed"'));
    const installed = (line === undefined ? {} : JSON.parse(line)) as Record<string, number>;
    toLeader.close();
    toFollower.close();
    return {
      catchUpMs,
      snapshotBytes: installed['bytes'] ?? NaN,
      installSteps: installed['steps'] ?? NaN,
      installLongestStepMs: installed['longestStepMs'] ?? NaN,
      installMs: installed['restoreMs'] ?? NaN,
      probeP50Ms: median(latencies),
      probeMaxMs: latencies[latencies.length - 1] ?? NaN,
      idleP50Ms: median(idleLatencies),
      idleMaxMs: idleLatencies[idleLatencies.length - 1] ?? NaN,
    };
  } finally {
    lc.close();
    await stopBenchCluster(cluster);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export const catchUpBench: Benchmark = {
  name: 'catch-up from a snapshot',
  flag: '--catch-up',
  async run() {
    console.log(
      `${keys} keys of ${valueBytes} B written while a follower is stopped; ${rounds} rounds`,
    );
    const results: Round[] = [];
    for (let r = 0; r < rounds; r++) {
      const result = await round();
      results.push(result);
      console.log(
        `round ${r + 1}: ${JSON.stringify(result, (_, v: unknown) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`,
      );
    }
    const m = (pick: (r: Round) => number): string => median(results.map(pick)).toFixed(0);
    console.log(`medians over ${rounds} rounds:`);
    console.log(
      `  caught up after            ${m((r) => r.catchUpMs)} ms (snapshot ${m((r) => r.snapshotBytes / 1e6)} MB)`,
    );
    console.log(
      `  install                    ${m((r) => r.installMs)} ms in ${m((r) => r.installSteps)} steps, longest ${m((r) => r.installLongestStepMs)} ms`,
    );
    console.log(
      `  follower get p50 / max     ${m((r) => r.probeP50Ms)} / ${m((r) => r.probeMaxMs)} ms while catching up`,
    );
    console.log(
      `  baseline p50 / max         ${m((r) => r.idleP50Ms)} / ${m((r) => r.idleMaxMs)} ms before the stop (max ratio ${(median(results.map((r) => r.probeMaxMs)) / median(results.map((r) => r.idleMaxMs))).toFixed(1)})`,
    );
  },
};
