/**
 * Raft throughput, in two settings.
 *
 * Simulated: a 5-node cluster in the deterministic simulator (no faults), RaftStorage on the
 * simulated disk; 64 closed-loop clients propose 256-byte entries to the leader with an
 * exponential think time (mean 0.5 ms). Reported: entries applied on the leader per real
 * second, and simulated messages delivered per real second. The baseline, measured in the
 * same run, is bench/sim.ts's "relay" (the bare simulator passing tokens between 5 nodes, no
 * protocol work): messages/s ÷ relay messages/s is what Raft, RPC framing, storage and the
 * state machine cost per simulated message. Medians of 5 runs after a warm-up run.
 *
 * Real: three processes (bench/raft-node.ts) on 127.0.0.1 over TCP (createNodeEnv) with
 * RaftStorage on the real disk (fdatasync), data directories under os.tmpdir(). The leader
 * runs 1, 16, 64 and 256 closed-loop proposers of 256-byte entries for a bounded time each
 * and reports committed entries/s and p50 / p99 commit latency (propose → applied on the
 * leader). The disk's own rate of append-256-bytes + fdatasync, measured in short probes
 * before and after the cluster in the same file system, is the physical reference: committed/s ÷ fsyncs/s
 * above 1 means group commit is amortizing fsyncs over several entries.
 *
 * CHORUS_BENCH_RAFT_MS sets the duration of one real load level (default 3000).
 */
import { relay } from './sim.js';
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assert } from '../src/core/assert.js';
import { ChorusError, describeError, FatalError } from '../src/core/errors.js';
import type { NodeId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import type { Env } from '../src/env/env.js';
import { RaftDriver, type StateMachine } from '../src/raft/driver.js';
import type { Entry } from '../src/raft/types.js';
import { Cluster } from '../src/sim/cluster.js';
import { World } from '../src/sim/world.js';
import { RaftStorage } from '../src/storage/storage.js';
import type { FromNode, ToNode } from './raft-node.js';
import { fsyncRate } from './disk.js';
import type { Benchmark } from './run.js';
import { median } from './stats.js';

const payloadBytes = 256;
const simRuns = 5;
const simNodes = 5;
const simClients = 64;
const simThinkMsMean = 0.5;
const simLoadMs = 2_000;
const simTickMs = 10;
/** Real ticks are longer than simulated ones: a GC pause must not look like a dead leader. */
export const realTickMs = 20;
const snapshotEveryEntries = 10_000;
const realConcurrency = [1, 16, 64, 256];
const realDurationMs = Number(process.env['CHORUS_BENCH_RAFT_MS'] ?? 3_000);
const realWarmupMs = 1_000;
const fsyncProbeMs = 200;
const fsyncProbes = 5;
const electionWaitMs = 15_000;
const nodePath = fileURLToPath(new URL('./raft-node.js', import.meta.url));

// --- shared by the simulated nodes and the real processes -----------------------------------

/** Counts applied entries; the snapshot is the count. */
class CountingStateMachine implements StateMachine {
  applied = 0;

  apply(entries: readonly Entry[]): unknown[] {
    this.applied += entries.length;
    return entries.map(() => undefined);
  }

  snapshot(): Uint8Array {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, this.applied);
    return bytes;
  }

  restore(data: Uint8Array): void {
    this.applied = new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0);
  }
}

/** RaftStorage under `raft/` plus a RaftDriver with the defaults of the core. */
export function openBenchRaft(
  env: Env,
  peers: readonly NodeId[],
  tickMs: number,
  done: (
    error: ChorusError | undefined,
    opened: { driver: RaftDriver; storage: RaftStorage } | undefined,
  ) => void,
): void {
  RaftStorage.open(env, 'raft', (error, storage, recovered) => {
    if (error !== undefined || storage === undefined || recovered === undefined) {
      return done(error ?? new ChorusError('fatal', 'storage did not open'), undefined);
    }
    const driver = new RaftDriver(env, {
      raft: { peers },
      store: storage,
      recovered,
      stateMachine: new CountingStateMachine(),
      tickMs,
      snapshotEveryEntries,
      forwardDeadlineMs: 2_000,
    });
    done(undefined, { driver, storage });
  });
}

export interface NodeStatus {
  role: string;
  term: number;
  lead: string;
  committed: number;
  applied: number;
}

export interface LoadResult {
  /** Proposals applied on the leader (acknowledged). */
  committed: number;
  /** From the first proposal to the last answer. */
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Refused or dropped proposals by error code. */
  errors: Record<string, number>;
  /** Proposals still unanswered 10 s after the end. */
  outstanding: number;
  termBefore: number;
  termAfter: number;
  roleAfter: string;
  /** The leader's storage fsyncs and group commits during the run. */
  fsyncs: number;
  batches: number;
  /** Warnings and errors logged by the leader process so far, by message. */
  logs: Record<string, number>;
}

// --- simulated ------------------------------------------------------------------------------

interface SimApp {
  driver?: RaftDriver;
}

interface SimRun {
  entries: number;
  messages: number;
  seconds: number;
  virtualMs: number;
  leaderChanges: number;
}

function simRaft(seed: number): SimRun {
  const root = seededRandom(seed);
  const world = new World(root);
  const cluster = new Cluster<SimApp>(world, root.fork('cluster'), simNodes, {
    create(env) {
      const app: SimApp = {};
      const peers = [env.net.self, ...env.net.peers()].sort();
      openBenchRaft(env, peers, simTickMs, (error, opened) => {
        if (error !== undefined || opened === undefined)
          throw new FatalError('cannot open raft storage', { cause: error });
        app.driver = opened.driver;
      });
      return app;
    },
  });
  const leaderIndex = (): number =>
    cluster.nodes.findIndex((n) => n.app?.driver?.node.raft.role === 'leader');
  cluster.bootAll();
  world.runWhile(() => leaderIndex() < 0, 10_000);
  const leader = leaderIndex();
  assert(leader >= 0, 'no leader elected in the simulated cluster within 10 s');
  const driver = cluster.node(leader).app!.driver!;
  const term = driver.node.raft.term;
  const random = root.fork('clients');
  const payload = new Uint8Array(payloadBytes).fill(0x5a);
  const startMs = world.now;
  const endMs = startMs + simLoadMs;
  const client = (): void => {
    if (world.now >= endMs) return;
    cluster.call(
      leader,
      (app) =>
        app.driver?.propose(payload, () => {
          world.after(random.exponential(simThinkMsMean), client);
        }),
      () => {},
    );
  };
  for (let c = 0; c < simClients; c++) world.after(random.exponential(simThinkMsMean), client);
  const appliedBefore = driver.appliedIndex;
  const deliveredBefore = cluster.network.counters.delivered;
  const started = performance.now();
  world.runUntil(endMs);
  const seconds = (performance.now() - started) / 1000;
  return {
    entries: driver.appliedIndex - appliedBefore,
    messages: cluster.network.counters.delivered - deliveredBefore,
    seconds,
    virtualMs: simLoadMs,
    leaderChanges: driver.node.raft.term - term,
  };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function runSimulated(): void {
  relay(2_000);
  simRaft(100); // warm-up
  const relayRates: number[] = [];
  const entryRates: number[] = [];
  const messageRates: number[] = [];
  const virtualRates: number[] = [];
  // Interleaved, so a noisy moment on this shared machine hurts both alike.
  for (let i = 0; i < simRuns; i++) {
    const r = relay(2_000);
    relayRates.push(r.messages / r.seconds);
    const s = simRaft(i + 1);
    entryRates.push(s.entries / s.seconds);
    messageRates.push(s.messages / s.seconds);
    virtualRates.push(s.entries / (s.virtualMs / 1000));
    console.log(
      `  run ${i + 1}: ${fmt(s.entries)} entries in ${s.seconds.toFixed(2)} s real (${s.virtualMs} ms simulated), ` +
        `${fmt(s.messages)} msgs; relay ${fmt(r.messages / r.seconds)} msgs/s` +
        (s.leaderChanges > 0 ? `; leader changed ${s.leaderChanges}x (!)` : ''),
    );
  }
  const entries = median(entryRates);
  const messages = median(messageRates);
  const base = median(relayRates);
  console.log(
    `  simulated, ${simNodes} nodes, ${simClients} clients, ${payloadBytes}-byte entries, no faults:`,
  );
  console.log(`    committed entries per real second     median ${fmt(entries)}`);
  console.log(
    `    committed entries per simulated second median ${fmt(median(virtualRates))} (simulated 1-3 ms links, 0.2-0.7 ms fsync)`,
  );
  console.log(`    delivered msgs per real second         median ${fmt(messages)}`);
  console.log(`    baseline relay msgs per real second    median ${fmt(base)}`);
  console.log(
    `    raft msgs/s ÷ relay msgs/s = ${(messages / base).toFixed(3)} (real cost of a Raft message vs a bare simulator delivery); ` +
      `${(entries / messages).toFixed(2)} entries per message`,
  );
}

// --- real -----------------------------------------------------------------------------------

type Reply = Exclude<FromNode, { type: 'listening' }>;
type Request = ToNode extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

class NodeProcess {
  port = 0;
  exitCode: number | null | undefined;
  private stopping = false;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (reply: Reply) => void; reject: (error: Error) => void }
  >();
  private readonly exited: Promise<void>;

  private constructor(
    readonly id: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        if (!this.stopping) {
          console.log(`  ${id} EXITED unexpectedly (code ${code}, signal ${signal})`);
          process.exitCode = 1;
        }
        for (const p of this.pending.values())
          p.reject(new Error(`${id} exited (code ${code}, signal ${signal})`));
        this.pending.clear();
        resolve();
      }),
    );
    child.on('message', (message: FromNode) => {
      if (message.type === 'listening') return;
      if (message.id === undefined) {
        console.log(
          `  ${id} reports: ${message.type === 'error' ? message.message : message.type}`,
        );
        return;
      }
      const p = this.pending.get(message.id);
      if (p === undefined) return;
      this.pending.delete(message.id);
      if (message.type === 'error') p.reject(new Error(`${id}: ${message.message}`));
      else p.resolve(message);
    });
  }

  static start(id: string, dataDir: string): Promise<NodeProcess> {
    const child = fork(nodePath, [id, dataDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const node = new NodeProcess(id, child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id} did not listen in time`)), 10_000);
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${id} exited with ${code} before listening`)));
      child.on('message', (message: FromNode) => {
        if (message.type !== 'listening') return;
        clearTimeout(timer);
        node.port = message.port;
        resolve(node);
      });
    });
  }

  request(message: Request, timeoutMs: number): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.id} did not answer ${message.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      if (this.exitCode !== undefined || !this.child.connected)
        return reject(new Error(`${this.id} is not running`));
      this.child.send({ ...message, id });
    });
  }

  async status(): Promise<NodeStatus> {
    const reply = await this.request({ type: 'status' }, 5_000);
    assert(reply.type === 'status', 'status reply');
    return reply;
  }

  /** Asks the process to exit, then kills it if it has not within 2 s. */
  async stop(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.stopping = true;
    if (this.child.connected) this.child.send({ type: 'exit' } satisfies ToNode);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2_000);
    await this.exited;
    clearTimeout(timer);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The leader, once a leader exists and every running node follows it in its term. */
async function awaitLeader(nodes: readonly NodeProcess[], waitMs: number): Promise<NodeProcess> {
  const deadline = performance.now() + waitMs;
  let running: NodeProcess[] = [];
  let last: NodeStatus[] = [];
  while (performance.now() < deadline) {
    running = nodes.filter((n) => n.exitCode === undefined);
    if (running.length <= nodes.length / 2)
      throw new Error(`only ${running.length} of ${nodes.length} processes are running`);
    last = await Promise.all(running.map((n) => n.status()));
    const leader = last.findIndex((s) => s.role === 'leader');
    if (
      leader >= 0 &&
      last.every((s) => s.term === last[leader]!.term && s.lead === running[leader]!.id)
    ) {
      return running[leader]!;
    }
    await sleep(50);
  }
  throw new Error(
    `no leader followed by all within ${waitMs} ms; last statuses: ${JSON.stringify(
      last.map((s, i) => ({ node: running[i]!.id, ...s })),
    )}`,
  );
}

/** Median of a few probes: this machine's disk is shared, its fsync rate varies from second to second. */
function fsyncRates(dir: string): number[] {
  return Array.from({ length: fsyncProbes }, () => fsyncRate(dir, fsyncProbeMs, payloadBytes));
}

/** The filesystem type holding `dir`, from /proc/mounts (Linux), for the report. */
function filesystemOf(dir: string): string {
  try {
    const real = fs.realpathSync(dir);
    let best = { mount: '', type: 'unknown', device: '' };
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [device, mount, type] = line.split(' ');
      if (device === undefined || mount === undefined || type === undefined) continue;
      const inside = real === mount || real.startsWith(mount === '/' ? '/' : mount + '/');
      if (inside && mount.length >= best.mount.length) best = { mount, type, device };
    }
    return `${best.type} (${best.device} on ${best.mount})`;
  } catch {
    return 'unknown';
  }
}

interface LevelRow {
  concurrency: number;
  result: LoadResult | undefined;
  leader: string;
  failure?: string;
}

async function runReal(): Promise<void> {
  const tmp = os.tmpdir();
  const root = fs.mkdtempSync(path.join(tmp, 'chorus-bench-raft-'));
  console.log(`  data under ${root}, filesystem ${filesystemOf(root)}`);
  const diskBefore = fsyncRates(root);
  const nodes: NodeProcess[] = [];
  const rows: LevelRow[] = [];
  let setupFailure: string | undefined;
  try {
    const ids = ['r1', 'r2', 'r3'];
    for (const id of ids) fs.mkdirSync(path.join(root, id));
    nodes.push(...(await Promise.all(ids.map((id) => NodeProcess.start(id, path.join(root, id))))));
    await Promise.all(
      nodes.map(async (n) => {
        const peers = nodes.filter((o) => o !== n).map((o): [string, number] => [o.id, o.port]);
        await n.request({ type: 'peers', peers }, 10_000);
      }),
    );
    const electionStarted = performance.now();
    let leader = await awaitLeader(nodes, electionWaitMs);
    console.log(
      `  leader ${leader.id} elected and followed after ${fmt(performance.now() - electionStarted)} ms`,
    );
    await leader.request(
      { type: 'run', concurrency: 16, durationMs: realWarmupMs, payloadBytes },
      realWarmupMs + 20_000,
    );
    for (const concurrency of realConcurrency) {
      try {
        leader = await awaitLeader(nodes, electionWaitMs);
        const reply = await leader.request(
          { type: 'run', concurrency, durationMs: realDurationMs, payloadBytes },
          realDurationMs + 20_000,
        );
        assert(reply.type === 'result', 'run reply');
        rows.push({ concurrency, result: reply, leader: leader.id });
      } catch (error) {
        rows.push({
          concurrency,
          result: undefined,
          leader: leader.id,
          failure: describeError(error),
        });
      }
    }
    const running = nodes.filter((n) => n.exitCode === undefined);
    const statuses = await Promise.all(running.map((n) => n.status()));
    console.log(
      `  at the end: ${statuses.map((s, i) => `${running[i]!.id} ${s.role} term ${s.term} applied ${fmt(s.applied)}`).join('; ')}` +
        (running.length < nodes.length
          ? `; ${nodes.length - running.length} process(es) gone`
          : ''),
    );
  } catch (error) {
    setupFailure = describeError(error);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    fs.rmSync(root, { recursive: true, force: true });
  }
  const probeDir = fs.mkdtempSync(path.join(tmp, 'chorus-bench-fsync-'));
  let diskAfter: number[];
  try {
    diskAfter = fsyncRates(probeDir);
  } finally {
    fs.rmSync(probeDir, { recursive: true, force: true });
  }
  const disk = median([...diskBefore, ...diskAfter]);
  const list = (rates: number[]): string => rates.map(fmt).join(' ');
  console.log(
    `  disk: append ${payloadBytes} B + fdatasync, ${fsyncProbes} probes of ${fsyncProbeMs} ms before (${list(diskBefore)}) and after (${list(diskAfter)}) the cluster: median ${fmt(disk)} fsyncs/s`,
  );
  if (setupFailure !== undefined) {
    console.log(`  REAL CLUSTER FAILED: ${setupFailure}`);
    process.exitCode = 1;
  }
  if (rows.length === 0) return;
  console.log(
    `  3 processes, loopback TCP, fdatasync; ${payloadBytes}-byte entries; ${realDurationMs} ms per level, closed-loop proposers on the leader`,
  );
  const header = [
    'proposers',
    'committed/s',
    'p50 ms',
    'p99 ms',
    '÷ disk fsync/s',
    'leader fsyncs/s',
    'entries/fsync',
    'notes',
  ];
  const table: string[][] = [header];
  for (const row of rows) {
    const r = row.result;
    if (r === undefined) {
      table.push([String(row.concurrency), '-', '-', '-', '-', '-', '-', `FAILED: ${row.failure}`]);
      continue;
    }
    const seconds = r.elapsedMs / 1000;
    const rate = r.committed / seconds;
    const notes: string[] = [];
    const errors = Object.entries(r.errors);
    if (errors.length > 0) notes.push(`errors ${errors.map(([k, v]) => `${k}×${v}`).join(' ')}`);
    if (r.outstanding > 0) notes.push(`${r.outstanding} never answered`);
    if (r.termAfter !== r.termBefore || r.roleAfter !== 'leader')
      notes.push(`term ${r.termBefore}→${r.termAfter}, ${row.leader} now ${r.roleAfter}`);
    table.push([
      String(row.concurrency),
      fmt(rate),
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      (rate / disk).toFixed(2),
      fmt(r.fsyncs / seconds),
      (r.committed / Math.max(1, r.fsyncs)).toFixed(1),
      notes.join('; '),
    ]);
  }
  const widths = header.map((_, c) => Math.max(...table.map((line) => line[c]!.length)));
  for (const line of table) {
    console.log(
      '  ' +
        line
          .map((cell, c) => (c === line.length - 1 ? cell : cell.padStart(widths[c]!)))
          .join('  ')
          .trimEnd(),
    );
  }
  const logs = rows.at(-1)?.result?.logs ?? {};
  if (Object.keys(logs).length > 0)
    console.log(`  leader warnings/errors logged: ${JSON.stringify(logs)}`);
  if (rows.some((r) => r.result === undefined)) process.exitCode = 1;
}

export const raftBench: Benchmark = {
  name: 'raft: committed entries per second, 5 nodes in-process and 3 processes over loopback TCP with fsync',
  async run() {
    console.log('-- deterministic 5-node cluster (virtual time, simulated disk)');
    runSimulated();
    console.log('-- real: 3 processes');
    await runReal();
  },
};
