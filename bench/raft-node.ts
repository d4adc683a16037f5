/**
 * One Raft process of the raft benchmark (bench/raft.ts forks three). It listens on an
 * ephemeral port of 127.0.0.1, learns its peers' ports from the parent, opens RaftStorage on
 * the real disk under its data directory and runs a RaftDriver over TCP (createNodeEnv).
 * The leader, when told to, runs the load itself: `concurrency` proposers, each proposing a
 * 256-byte entry and the next one as soon as the previous one is applied, for `durationMs`.
 *
 * IPC, every request carries an id that its reply repeats:
 *   child → parent  { type: 'listening', port }                  once bound
 *   parent → child  { id, type: 'peers', peers: [[id, port]] }   → { id, type: 'opened' }
 *   parent → child  { id, type: 'status' }                        → { id, type: 'status', … }
 *   parent → child  { id, type: 'run', concurrency, … }           → { id, type: 'result', … }
 *   parent → child  { type: 'exit' }
 * The child exits when the parent goes away (IPC disconnect).
 */
import { nodeId, type NodeId } from '../src/core/ids.js';
import { describeError } from '../src/core/errors.js';
import type { LogFields, Logger } from '../src/env/env.js';
import { createNodeEnv, type NodeEnv } from '../src/env/node/index.js';
import type { RaftDriver } from '../src/raft/driver.js';
import type { RaftStorage } from '../src/storage/storage.js';
import { openBenchRaft, realTickMs, type LoadResult, type NodeStatus } from './raft.js';

export type ToNode =
  | { id: number; type: 'peers'; peers: [string, number][] }
  | { id: number; type: 'status' }
  | { id: number; type: 'run'; concurrency: number; durationMs: number; payloadBytes: number }
  | { type: 'exit' };

export type FromNode =
  | { type: 'listening'; port: number }
  | { id: number; type: 'opened' }
  | ({ id: number; type: 'status' } & NodeStatus)
  | ({ id: number; type: 'result' } & LoadResult)
  | { id?: number; type: 'error'; message: string };

const self = nodeId(process.argv[2]!);
const dataDir = process.argv[3]!;

function tell(message: FromNode): void {
  process.send?.(message);
}

/** Warnings and errors go to stderr, the first few of each kind only; counted for the report. */
const logCounts = new Map<string, number>();
function stderrLogger(fields: LogFields): Logger {
  const write =
    (level: string) =>
    (message: string, more?: LogFields): void => {
      const key = `${level} ${message}`;
      const seen = (logCounts.get(key) ?? 0) + 1;
      logCounts.set(key, seen);
      if (seen <= 3) {
        process.stderr.write(
          `  [${self}] ${level}: ${message} ${JSON.stringify({ ...fields, ...more })}${seen === 3 ? ' (further ones counted, not printed)' : ''}\n`,
        );
      }
    };
  return {
    debug() {},
    info() {},
    warn: write('warn'),
    error: write('error'),
    child: (more) => stderrLogger({ ...fields, ...more }),
  };
}

let nodeEnv: NodeEnv | undefined;
let driver: RaftDriver | undefined;
let storage: RaftStorage | undefined;

function status(): NodeStatus {
  const raft = driver?.node.raft;
  return {
    role: raft?.role ?? 'starting',
    term: raft?.term ?? 0,
    lead: raft?.lead ?? '',
    committed: raft?.log.committed ?? 0,
    applied: driver?.appliedIndex ?? 0,
  };
}

function runLoad(
  d: RaftDriver,
  s: RaftStorage,
  options: { concurrency: number; durationMs: number; payloadBytes: number },
  done: (result: LoadResult) => void,
): void {
  const payload = new Uint8Array(options.payloadBytes);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 131 + 7) & 0xff;
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const termBefore = d.node.raft.term;
  const fsyncsBefore = s.counters.fsyncs;
  const batchesBefore = s.counters.batches;
  const start = performance.now();
  const end = start + options.durationMs;
  let outstanding = 0;
  let lastDone = start;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(guard);
    const sorted = latencies.sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.floor(q * (sorted.length - 1))] ?? NaN;
    done({
      committed: latencies.length,
      elapsedMs: lastDone - start,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      errors,
      outstanding,
      termBefore,
      termAfter: d.node.raft.term,
      roleAfter: d.node.raft.role,
      fsyncs: s.counters.fsyncs - fsyncsBefore,
      batches: s.counters.batches - batchesBefore,
      logs: Object.fromEntries(logCounts),
    });
  };
  // Proposals still unanswered this long after the end are reported as outstanding.
  const guard = setTimeout(finish, options.durationMs + 10_000);
  const proposeOne = (): void => {
    const t0 = performance.now();
    outstanding++;
    d.propose(payload, (error) => {
      outstanding--;
      const now = performance.now();
      lastDone = now;
      if (error === undefined) latencies.push(now - t0);
      else errors[error.code] = (errors[error.code] ?? 0) + 1;
      if (now < end) {
        // After the driver's apply loop has returned (a microtask), or a little later after an
        // error, so a proposer that is refused at once does not spin.
        if (error === undefined) queueMicrotask(proposeOne);
        else setTimeout(proposeOne, 5);
      } else if (outstanding === 0) {
        finish();
      }
    });
  };
  for (let i = 0; i < options.concurrency; i++) proposeOne();
}

process.on('disconnect', () => process.exit(0));
process.on('uncaughtException', (error) => {
  tell({ type: 'error', message: `uncaught in ${self}: ${describeError(error)}` });
  process.stderr.write(`  [${self}] uncaught: ${error.stack ?? describeError(error)}\n`);
  process.exit(1);
});

process.on('message', (message: ToNode) => {
  switch (message.type) {
    case 'peers': {
      const ne = nodeEnv!;
      for (const [id, port] of message.peers)
        ne.net.setPeer(nodeId(id), { host: '127.0.0.1', port });
      const peers: NodeId[] = [self, ...ne.net.peers()].sort();
      openBenchRaft(ne.env, peers, realTickMs, (error, opened) => {
        if (error !== undefined || opened === undefined) {
          return tell({ id: message.id, type: 'error', message: describeError(error) });
        }
        driver = opened.driver;
        storage = opened.storage;
        tell({ id: message.id, type: 'opened' });
      });
      return;
    }
    case 'status':
      return tell({ id: message.id, type: 'status', ...status() });
    case 'run': {
      if (driver === undefined || storage === undefined || driver.node.raft.role !== 'leader') {
        return tell({ id: message.id, type: 'error', message: `${self} is not the leader` });
      }
      runLoad(driver, storage, message, (result) =>
        tell({ id: message.id, type: 'result', ...result }),
      );
      return;
    }
    case 'exit':
      driver?.stop();
      nodeEnv?.close(() => process.exit(0));
      return;
  }
});

createNodeEnv(
  {
    self,
    listen: { host: '127.0.0.1', port: 0 },
    peers: new Map(),
    dataDir,
    seed: 1,
    log: stderrLogger({}),
  },
  (error, created) => {
    if (error !== undefined || created === undefined) {
      tell({ type: 'error', message: `listen: ${describeError(error)}` });
      process.exit(1);
    }
    nodeEnv = created;
    tell({ type: 'listening', port: created.net.listening!.port });
  },
);
