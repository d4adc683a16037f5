/**
 * The one load generator of the compare benchmark (bench/compare.ts): closed-loop clients on
 * @grpc/grpc-js with the etcd v3 protos of src/server/proto.ts, identical for Chorus and etcd.
 *
 * - Every member gets `channelsPerMember` HTTP/2 connections (a local subchannel pool, so
 *   channels do not share one); client `c` uses connection `⌊c / members⌋ mod channelsPerMember`.
 * - A client sends its k-th request to member (c + k) mod members: whichever member leads,
 *   both systems see the same mix of requests landing on the leader and on followers (which
 *   forward writes and linearizable reads), so leader placement does not favour either.
 * - Keys are `bench/000000`…, drawn uniformly from `keySpace` keys written once beforehand;
 *   values are `valueBytes` bytes. The key sequence comes from a seeded PRNG, the same seed
 *   for both systems.
 * - A cell runs a warm-up (connections, JIT), then a measured window: every request that
 *   completes inside the window counts towards throughput and its latency (send → answer)
 *   towards p50 / p99, whenever it was sent. Clients stop sending at the end of the window.
 */
import * as fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { seededRandom } from '../src/core/prng.js';
import { loadEtcdProto } from '../src/server/proto.js';

export const operations = ['put', 'get-linearizable', 'get-serializable', 'txn'] as const;
export type Operation = (typeof operations)[number];

export const keySpace = 1_000;
export const valueBytes = 256;
const channelsPerMember = 4;
const requestDeadlineMs = 10_000;
const errorBackoffMs = 20;
const prefillClients = 32;

type Callback = (error: grpc.ServiceError | null, response: unknown) => void;
type Unary = (request: object, options: grpc.CallOptions, callback: Callback) => void;
export type KvClient = grpc.Client & { Put: Unary; Range: Unary; Txn: Unary; Compact: Unary };
type MaintenanceClient = grpc.Client & { Status: Unary };
type ClientClass<T> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions,
) => T;

let protoPackage:
  | { etcdserverpb: { KV: ClientClass<KvClient>; Maintenance: ClientClass<MaintenanceClient> } }
  | undefined;

function etcdserverpb(): NonNullable<typeof protoPackage>['etcdserverpb'] {
  protoPackage ??= grpc.loadPackageDefinition(loadEtcdProto()) as unknown as typeof protoPackage;
  return protoPackage!.etcdserverpb;
}

const keys = Array.from({ length: keySpace }, (_, i) =>
  Buffer.from(`bench/${String(i).padStart(6, '0')}`),
);
const value = Buffer.alloc(valueBytes, 0x61);

function call(method: Unary, client: grpc.Client, request: object): Promise<unknown> {
  return new Promise((resolve, reject) =>
    method.call(client, request, { deadline: Date.now() + requestDeadlineMs }, (error, response) =>
      error === null ? resolve(response) : reject(error),
    ),
  );
}

/** A KV client on a connection of its own to `endpoint` (host:port). */
export function kvClient(endpoint: string): KvClient {
  const options = { 'grpc.use_local_subchannel_pool': 1 };
  return new (etcdserverpb().KV)(endpoint, grpc.credentials.createInsecure(), options);
}

/** One unary KV call, with the load generator's deadline. */
export function kvCall(
  client: KvClient,
  method: 'Put' | 'Range' | 'Txn' | 'Compact',
  request: object,
): Promise<unknown> {
  return call(client[method], client, request);
}

export interface MemberStatus {
  memberId: string;
  leader: string;
  raftTerm: string;
}

/** The gRPC connections to one cluster. */
export class LoadClients {
  private readonly kv: KvClient[][];
  private readonly maintenance: MaintenanceClient[];

  /** `tls`: the clusters' client ports are https:// (compare-clusters.ts, benchTls). */
  constructor(
    readonly endpoints: readonly string[],
    tls?: { ca: string; clientCert: string; clientKey: string },
  ) {
    const pb = etcdserverpb();
    const credentials =
      tls === undefined
        ? grpc.credentials.createInsecure()
        : grpc.credentials.createSsl(
            fs.readFileSync(tls.ca),
            fs.readFileSync(tls.clientKey),
            fs.readFileSync(tls.clientCert),
          );
    // Each channel its own subchannel pool: otherwise grpc-js shares one connection per address.
    const options = { 'grpc.use_local_subchannel_pool': 1 };
    this.kv = endpoints.map((e) =>
      Array.from({ length: channelsPerMember }, () => new pb.KV(e, credentials, options)),
    );
    this.maintenance = endpoints.map((e) => new pb.Maintenance(e, credentials, options));
  }

  close(): void {
    for (const channels of this.kv) for (const c of channels) c.close();
    for (const c of this.maintenance) c.close();
  }

  async status(member: number): Promise<MemberStatus> {
    const client = this.maintenance[member]!;
    const response = (await call(client.Status, client, {})) as {
      header: { memberId: string; raftTerm: string };
      leader: string;
    };
    return {
      memberId: response.header.memberId,
      leader: response.leader,
      raftTerm: response.header.raftTerm,
    };
  }

  /**
   * The index of the leader once every member names the same one (members that do not
   * answer yet count as disagreeing); undefined after `timeoutMs`.
   */
  async leader(timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = await Promise.all(
        this.endpoints.map((_, i) => this.status(i).catch(() => undefined)),
      );
      const id = statuses[0]?.leader;
      if (id !== undefined && id !== '0' && statuses.every((s) => s?.leader === id)) {
        const index = statuses.findIndex((s) => s?.memberId === id);
        if (index >= 0) return index;
      }
      if (Date.now() > deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** One request of `operation` on `key`, through the given member and connection. */
  request(operation: Operation, member: number, channel: number, key: Buffer): Promise<unknown> {
    const client = this.kv[member]![channel]!;
    switch (operation) {
      case 'put':
        return call(client.Put, client, { key, value });
      case 'get-linearizable':
        return call(client.Range, client, { key });
      case 'get-serializable':
        return call(client.Range, client, { key, serializable: true });
      case 'txn':
        // A guarded write, as a compare-and-swap client sends: the key exists (every key is
        // written before the first cell), so the success branch always runs.
        return call(client.Txn, client, {
          compare: [{ key, target: 'VERSION', result: 'GREATER', version: '0' }],
          success: [{ requestPut: { key, value } }],
          failure: [{ requestRange: { key } }],
        });
    }
  }

  /** Writes every key once, so that reads find a value and txns take their success branch. */
  async prefill(): Promise<void> {
    let next = 0;
    const worker = async (c: number): Promise<void> => {
      for (let i = next++; i < keySpace; i = next++) {
        await this.request('put', (c + i) % this.endpoints.length, 0, keys[i]!);
      }
    };
    await Promise.all(Array.from({ length: prefillClients }, (_, c) => worker(c)));
  }
}

export interface CellResult {
  operation: Operation;
  clients: number;
  /** Requests answered inside the measured window. */
  requests: number;
  windowMs: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Failed requests inside the window, by gRPC code and message. */
  errors: Record<string, number>;
  /** CPU time the cluster's processes spent per 1,000 answered requests (user + system). */
  serverCpuMsPer1k: number;
  /** The same for this load generator. */
  loadCpuMsPer1k: number;
}

export interface CellTiming {
  warmupMs: number;
  windowMs: number;
  seed: number;
}

/** The value at quantile q of an ascending array (nearest rank). */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** User + system CPU milliseconds of a process so far, from /proc (Linux); NaN elsewhere. */
function processCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticksPerSecond = 100;
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return NaN;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `clients` closed-loop clients of one operation against one cluster. */
export async function runCell(
  load: LoadClients,
  serverPids: readonly (number | undefined)[],
  operation: Operation,
  clients: number,
  timing: CellTiming,
): Promise<CellResult> {
  const members = load.endpoints.length;
  const random = seededRandom(timing.seed);
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const started = performance.now();
  const windowFrom = started + timing.warmupMs;
  const windowUntil = windowFrom + timing.windowMs;
  // CPU is sampled when the window opens and when it closes, by timers: the clients' own
  // awaits keep the event loop turning, so the timers fire within a request's time.
  const cpu = { server: [NaN, NaN], load: [NaN, NaN] };
  const sampleCpu = (at: 0 | 1): void => {
    cpu.server[at] = serverPids.reduce<number>((sum, pid) => sum + processCpuMs(pid), 0);
    const usage = process.cpuUsage();
    cpu.load[at] = (usage.user + usage.system) / 1000;
  };
  const timers = [
    setTimeout(() => sampleCpu(0), timing.warmupMs),
    setTimeout(() => sampleCpu(1), timing.warmupMs + timing.windowMs),
  ];

  const client = async (c: number): Promise<void> => {
    const channel = Math.floor(c / members) % channelsPerMember;
    for (let k = c; performance.now() < windowUntil; k++) {
      const key = keys[random.int(keySpace)]!;
      const sent = performance.now();
      let failure: string | undefined;
      try {
        await load.request(operation, k % members, channel, key);
      } catch (error) {
        const e = error as grpc.ServiceError;
        failure = `${grpc.status[e.code] ?? e.code} ${e.details ?? e.message}`;
      }
      const answered = performance.now();
      if (answered >= windowFrom && answered <= windowUntil) {
        if (failure === undefined) latencies.push(answered - sent);
        else errors[failure] = (errors[failure] ?? 0) + 1;
      }
      if (failure !== undefined) await sleep(errorBackoffMs);
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  for (const timer of timers) clearTimeout(timer);
  if (Number.isNaN(cpu.load[1])) sampleCpu(1);
  const serverCpuMs = cpu.server[1]! - cpu.server[0]!;
  const loadCpuMs = cpu.load[1]! - cpu.load[0]!;

  const sorted = Float64Array.from(latencies).sort();
  const requests = sorted.length;
  return {
    operation,
    clients,
    requests,
    windowMs: timing.windowMs,
    opsPerSecond: requests / (timing.windowMs / 1000),
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    errors,
    serverCpuMsPer1k: requests > 0 ? (serverCpuMs / requests) * 1000 : NaN,
    loadCpuMsPer1k: requests > 0 ? (loadCpuMs / requests) * 1000 : NaN,
  };
}
