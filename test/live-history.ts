// Shared by the live fault tests: a kv workload over real `chorus server` processes that
// records every client operation as a Jepsen-style history for the linearizability checker.
//
// Clients talk etcd v3 gRPC through @grpc/grpc-js directly, one request per operation and no
// retries: a client library that retries on its own (etcd3 does) could apply a put twice and
// would blur what each recorded operation did. Each operation is recorded as
// - `ok` with what it observed (a get's value, "" when missing; a cas's `succeeded`);
// - `fail` only when the request certainly never took effect: it was never sent (no
//   connection), or the server refused it before proposing it (`no leader`, `too many
//   requests`, a bad argument);
// - `info` otherwise (deadline, connection reset, `request timed out`, `leader changed`,
//   `server stopped`): it may take effect at any later moment or never. The process that ran
//   it is then retired, as Jepsen does, and the client goes on under a new process id.
import * as grpc from '@grpc/grpc-js';
import { checkHistory, type CheckResult } from '../src/check/linearizability.js';
import type { EventType, HistoryEvent, ProcessId, Value } from '../src/check/history.js';
import { kvModel } from '../src/check/models/kv.js';
import { seededRandom, type Random } from '../src/core/prng.js';
import { loadEtcdProto } from '../src/server/proto.js';
import { sleep } from './server-helpers.js';

/** A client gives up on one request after this long and records it as indeterminate. */
export const opDeadlineMs = 2_000;
/** The checker's time budget; past it the verdict is `unknown`, which fails a test too. */
export const checkBudgetMs = 30_000;
/** A client pauses this long after an operation that did not succeed. */
const failureBackoffMs = 100;

type Callback = (error: grpc.ServiceError | null, response: unknown) => void;
type Unary = (request: object, options: grpc.CallOptions, callback: Callback) => void;

type GrpcKv = grpc.Client & { Range: Unary; Put: Unary; Txn: Unary };
export type GrpcCluster = grpc.Client & {
  MemberList: Unary;
  MemberAdd: Unary;
  MemberRemove: Unary;
  MemberPromote: Unary;
};

interface EtcdPackage {
  etcdserverpb: {
    KV: new (address: string, credentials: grpc.ChannelCredentials, options: object) => GrpcKv;
    Cluster: new (
      address: string,
      credentials: grpc.ChannelCredentials,
      options: object,
    ) => GrpcCluster;
  };
}

let etcdPackage: EtcdPackage | undefined;
function etcd(): EtcdPackage {
  etcdPackage ??= grpc.loadPackageDefinition(loadEtcdProto()) as unknown as EtcdPackage;
  return etcdPackage;
}

/** Reconnect fast: a killed member comes back on the same port within seconds. */
const channelOptions = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
  'grpc.min_reconnect_backoff_ms': 100,
};

export function kvClient(endpoint: string): GrpcKv {
  return new (etcd().etcdserverpb.KV)(endpoint, grpc.credentials.createInsecure(), channelOptions);
}

export function clusterClient(endpoint: string): GrpcCluster {
  return new (etcd().etcdserverpb.Cluster)(
    endpoint,
    grpc.credentials.createInsecure(),
    channelOptions,
  );
}

export type Outcome = { error: grpc.ServiceError } | { response: Record<string, unknown> };

/** One unary call with a deadline; never rejects. */
export function call(method: Unary, client: grpc.Client, request: object): Promise<Outcome> {
  return new Promise((resolve) => {
    method.call(client, request, { deadline: Date.now() + opDeadlineMs }, (error, response) =>
      resolve(
        error !== null ? { error } : { response: (response ?? {}) as Record<string, unknown> },
      ),
    );
  });
}

/**
 * `fail` when the request certainly did not take effect, `info` when it may have. A read's
 * completion type does not matter to the checker (a read that did not complete changes
 * nothing), so reads go through the same rule.
 */
export function classify(error: grpc.ServiceError): 'fail' | 'info' {
  const details = error.details ?? '';
  switch (error.code) {
    case grpc.status.UNAVAILABLE:
      // grpc-js says this when no connection was ready: the call never left the client.
      if (details.startsWith('No connection established')) return 'fail';
      // Chorus answers this before proposing (on the member or on the one it forwards to).
      if (details === 'etcdserver: no leader') return 'fail';
      return 'info';
    // Refused before anything was proposed.
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.FAILED_PRECONDITION:
    case grpc.status.OUT_OF_RANGE:
    case grpc.status.NOT_FOUND:
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.PERMISSION_DENIED:
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.UNIMPLEMENTED:
      return 'fail';
    // The request may have been proposed; its fate is unknown.
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.CANCELLED:
    case grpc.status.UNKNOWN:
    case grpc.status.INTERNAL:
    case grpc.status.ABORTED:
    case grpc.status.DATA_LOSS:
    case grpc.status.OK:
      return 'info';
  }
}

/** The events of one history, in real-time order, with times in nanoseconds. */
export class Recorder {
  readonly events: HistoryEvent[] = [];
  private readonly origin = performance.now();

  record(process: ProcessId, type: EventType, f: string, key: string, value: Value): void {
    this.events.push({
      process,
      type,
      f,
      key,
      value,
      time: Math.round((performance.now() - this.origin) * 1e6),
      index: this.events.length,
    });
  }

  /** Operations invoked, and completions by type. */
  summary(): { ok: number; fail: number; info: number; ops: number } {
    const count = (t: EventType): number => this.events.filter((e) => e.type === t).length;
    return { ok: count('ok'), fail: count('fail'), info: count('info'), ops: count('invoke') };
  }
}

/** Judges a recorded history with the kv model, within the budget. */
export function judge(events: readonly HistoryEvent[], source: string): CheckResult {
  return checkHistory({ source, timeUnit: 'ns', events: [...events] }, kvModel, {
    clock: () => performance.now(),
    timeoutMs: checkBudgetMs,
    stopAtFirstViolation: true,
  });
}

/** The verdict in one line, with the checker's first reason when it is not linearizable. */
export function describeVerdict(result: CheckResult): string {
  const bad = result.partitions.find((p) => p.verdict !== 'linearizable');
  if (bad === undefined) return `${result.verdict} (${result.steps} steps)`;
  const reason = bad.failure?.unplaceable[0]?.reason ?? bad.note ?? '';
  return `${result.verdict}: key ${String(bad.key)}: ${reason}`;
}

export interface WorkloadOptions {
  /** Members' client addresses (`127.0.0.1:port`), read again before each random pick. */
  endpoints: () => readonly string[];
  keys: readonly string[];
  clients: number;
  seed: number;
  /** Mean pause between one client's operations. */
  thinkMsMean: number;
  /** A hard bound on operations, whatever the phases take. */
  opsMax: number;
}

/**
 * Concurrent clients doing get (40%), put (35%) and cas (25%) on a few keys through random
 * endpoints. Every value written is unique (`v<n>`), which keeps the checker's search narrow;
 * a cas expects the last value its client saw on that key (or "" = missing), so many succeed.
 */
export class KvWorkload {
  readonly recorder = new Recorder();
  /** Error messages seen, with counts, for the test's report. */
  readonly errors = new Map<string, number>();
  private readonly clients = new Map<string, GrpcKv>();
  private readonly random: Random;
  private stopping = false;
  private running: Promise<void>[] = [];
  private nextProcess = 0;
  private nextValue = 0;
  private ops = 0;
  private okOps = 0;

  constructor(readonly options: WorkloadOptions) {
    this.random = seededRandom(options.seed);
  }

  start(): void {
    for (let c = 0; c < this.options.clients; c++) {
      this.running.push(this.client(this.random.fork(`client-${c}`)));
    }
  }

  /** Stops the clients after their current operation (each is bounded by its deadline). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
    this.running = [];
  }

  /**
   * Whether `count` more operations succeed (failures do not count: a cluster that refuses
   * everything makes no progress) before `timeoutMs` passes and before the bound on
   * operations stops the clients.
   */
  async progress(count: number, timeoutMs: number): Promise<boolean> {
    const target = this.okOps + count;
    const deadline = Date.now() + timeoutMs;
    while (this.okOps < target && Date.now() < deadline && this.ops < this.options.opsMax)
      await sleep(20);
    return this.okOps >= target;
  }

  /**
   * After the clients stopped: a linearizable get of every key through every endpoint, so an
   * acknowledged write that was lost shows up as a read the checker cannot place.
   */
  async finalReads(endpoints: readonly string[]): Promise<void> {
    for (const endpoint of endpoints) {
      for (const key of this.options.keys) {
        // Bounded retries: the member may still be catching up after a fault.
        for (let attempt = 0; attempt < 20; attempt++) {
          if ((await this.get(`final-${endpoint}`, endpoint, key)) === 'ok') break;
          await sleep(100);
        }
      }
    }
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }

  private kv(endpoint: string): GrpcKv {
    let client = this.clients.get(endpoint);
    if (client === undefined) {
      client = kvClient(endpoint);
      this.clients.set(endpoint, client);
    }
    return client;
  }

  private async client(random: Random): Promise<void> {
    let process: number = this.nextProcess++;
    /** The last value this client saw per key: what its next cas expects. */
    const seen = new Map<string, string>();
    while (!this.stopping && this.ops < this.options.opsMax) {
      await sleep(random.exponential(this.options.thinkMsMean));
      if (this.stopping) break;
      const endpoint = random.pick(this.options.endpoints());
      const key = random.pick(this.options.keys);
      const roll = random.float();
      this.ops++;
      let type: 'ok' | 'fail' | 'info';
      if (roll < 0.4) {
        type = await this.get(process, endpoint, key, (v) => seen.set(key, v));
      } else if (roll < 0.75) {
        const value = `v${this.nextValue++}`;
        type = await this.put(process, endpoint, key, value);
        if (type === 'ok') seen.set(key, value);
      } else {
        const from = random.chance(0.15) ? '' : (seen.get(key) ?? '');
        const to = `v${this.nextValue++}`;
        type = await this.cas(process, endpoint, key, from, to, () => seen.set(key, to));
      }
      if (type === 'info') process = this.nextProcess++;
      if (type === 'ok') this.okOps++;
      // Back off after a refusal, so a member that is down does not fill the history with
      // instant failures.
      else await sleep(failureBackoffMs);
    }
  }

  private noteError(error: grpc.ServiceError): 'fail' | 'info' {
    const type = classify(error);
    // Without the parts that vary per call (the last connect error, the elapsed time).
    const details = (error.details ?? '').replace(/ (Last error:|after \d).*/, '');
    const message = `${type} ${grpc.status[error.code]} ${details}`;
    this.errors.set(message, (this.errors.get(message) ?? 0) + 1);
    return type;
  }

  private async get(
    process: ProcessId,
    endpoint: string,
    key: string,
    saw?: (value: string) => void,
  ): Promise<'ok' | 'fail' | 'info'> {
    this.recorder.record(process, 'invoke', 'get', key, null);
    const client = this.kv(endpoint);
    const outcome = await call(client.Range, client, { key: Buffer.from(key) });
    if ('error' in outcome) {
      const type = this.noteError(outcome.error);
      this.recorder.record(process, type, 'get', key, null);
      return type;
    }
    const kvs = outcome.response['kvs'] as { value: Buffer }[];
    const value = kvs[0]?.value.toString('utf8') ?? '';
    this.recorder.record(process, 'ok', 'get', key, value);
    saw?.(value);
    return 'ok';
  }

  private async put(
    process: ProcessId,
    endpoint: string,
    key: string,
    value: string,
  ): Promise<'ok' | 'fail' | 'info'> {
    this.recorder.record(process, 'invoke', 'put', key, value);
    const client = this.kv(endpoint);
    const outcome = await call(client.Put, client, {
      key: Buffer.from(key),
      value: Buffer.from(value),
    });
    const type = 'error' in outcome ? this.noteError(outcome.error) : 'ok';
    this.recorder.record(process, type, 'put', key, value);
    return type;
  }

  /** etcd's compare-and-swap: a txn comparing the value (or version 0 for "") then a put. */
  private async cas(
    process: ProcessId,
    endpoint: string,
    key: string,
    from: string,
    to: string,
    swapped: () => void,
  ): Promise<'ok' | 'fail' | 'info'> {
    this.recorder.record(process, 'invoke', 'cas', key, [from, to]);
    const client = this.kv(endpoint);
    const k = Buffer.from(key);
    const compare =
      from === ''
        ? { result: 'EQUAL', target: 'VERSION', key: k, version: 0 }
        : { result: 'EQUAL', target: 'VALUE', key: k, value: Buffer.from(from) };
    const outcome = await call(client.Txn, client, {
      compare: [compare],
      success: [{ requestPut: { key: k, value: Buffer.from(to) } }],
      failure: [],
    });
    if ('error' in outcome) {
      const type = this.noteError(outcome.error);
      this.recorder.record(process, type, 'cas', key, [from, to]);
      return type;
    }
    const succeeded = outcome.response['succeeded'] === true;
    this.recorder.record(process, 'ok', 'cas', key, succeeded);
    if (succeeded) swapped();
    return 'ok';
  }
}

/**
 * Planted failures, to show the judgment can fail: a copy of `events` with one `ok` read
 * changed. `lost-write` makes the last read of a key that saw a value read "" instead (an
 * acknowledged write vanished; nothing here deletes); `phantom` makes a read return a value
 * nobody wrote.
 */
export function plant(
  events: readonly HistoryEvent[],
  kind: 'lost-write' | 'phantom',
): { events: HistoryEvent[]; changed: HistoryEvent } | undefined {
  const reads = events.filter(
    (e) => e.type === 'ok' && e.f === 'get' && typeof e.value === 'string' && e.value !== '',
  );
  const target = kind === 'lost-write' ? reads[reads.length - 1] : reads[0];
  if (target === undefined) return undefined;
  const changed = { ...target, value: kind === 'lost-write' ? '' : 'never-written' };
  return { events: events.map((e) => (e === target ? changed : e)), changed };
}
