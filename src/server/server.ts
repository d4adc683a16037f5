/**
 * One Chorus node process: the data directory, the Env over real clock, disk and TCP, the
 * Raft storage, the KV node, and the client port that serves gRPC and the JSON gateway.
 *
 * Start: lock the data directory → bind the peer port → recover Raft storage → start the
 * KV node → bind the client ports. Mode: `starting` until this member first sees a leader,
 * then `serving` while it knows one and `degraded` while it does not (no quorum reachable);
 * `stopped` once stopping.
 *
 * Stop (SIGTERM/SIGINT): stop accepting clients, fail every request still in flight and end
 * every stream with "etcdserver: server stopped" (clients retry elsewhere), close the client
 * connections, stop the KV node, close storage (queued saves complete first), close the
 * peer network, release the lock. Acknowledged writes are durable before their answer, so
 * kill -9 at any moment loses none of them either.
 */
import * as http from 'node:http';
import { describeError, ChorusError, TimeoutError } from '../core/errors.js';
import { nodeId, type NodeId } from '../core/ids.js';
import type { Logger } from '../env/env.js';
import { createNodeEnv, type NodeEnv, type TcpAddress } from '../env/node/index.js';
import { KvNode, kvNodeDefaults } from '../kv/node.js';
import type { RaftStore } from '../raft/driver.js';
import type { RestoredState } from '../raft/raft.js';
import { RaftStorage } from '../storage/index.js';
import type { ServerConfig } from './config.js';
import {
  etcdVersion,
  forwardDeadlineMs,
  grpcOverheadBytes,
  memberInfoDeadlineMs,
  moveLeaderTimeoutMs,
  observeEveryMs,
  requestTimeoutMsBase,
} from './constants.js';
import type { Header, Wire } from './convert.js';
import { openDataDir, raftBytes, raftDirName, type DataDir } from './datadir.js';
import { Dispatcher } from './dispatch.js';
import { GrpcFront } from './grpc.js';
import { Gateway } from './gateway.js';
import { clusterId, hexId, memberId } from './ids.js';
import { EtcdJson } from './json.js';
import { listenClients, type ClientListener } from './listener.js';
import { ServerMetrics, type Mode } from './metrics.js';
import { loadEtcdProto } from './proto.js';
import type { Done, MemberInfo, ServiceContext } from './service.js';

const memberInfoMethod = 'server-member-info';

export interface StartedServer {
  readonly config: ServerConfig;
  readonly clientPorts: readonly number[];
  readonly mode: Mode;
  /** Stops gracefully; `done` runs once storage is closed and the lock released. */
  stop(reason: string, done: () => void): void;
}

/** Starts a node; `done` runs once clients can connect (or with why it could not start). */
export function startServer(
  config: ServerConfig,
  log: Logger,
  done: (error: Error | undefined, server: StartedServer | undefined) => void,
): void {
  let dataDir: DataDir;
  try {
    dataDir = openDataDir(config.dataDir, config.name, config.initialClusterToken);
  } catch (error) {
    return done(error as Error, undefined);
  }
  if (dataDir.tookOverFrom !== undefined)
    log.warn('took over a stale data directory lock', { pid: dataDir.tookOverFrom });
  const fail = (error: Error, cleanup: (() => void)[]): void => {
    for (const c of cleanup) c();
    dataDir.release();
    done(error, undefined);
  };
  const peers = new Map<NodeId, TcpAddress>();
  for (const m of config.initialCluster)
    if (m.name !== config.name) peers.set(nodeId(m.name), { host: m.host, port: m.port });
  createNodeEnv(
    {
      self: nodeId(config.name),
      listen: config.listenPeer,
      peers,
      dataDir: config.dataDir,
      log,
    },
    (error, nodeEnv) => {
      if (error !== undefined || nodeEnv === undefined)
        return fail(
          new Error(
            `cannot listen for peers on ${config.listenPeer.host}:${config.listenPeer.port}: ${describeError(error)}`,
          ),
          [],
        );
      RaftStorage.open(nodeEnv.env, raftDirName, (openError, storage, recovered) => {
        if (openError !== undefined || storage === undefined || recovered === undefined)
          return fail(new Error(`cannot open Raft storage: ${describeError(openError)}`), [
            () => nodeEnv.close(),
          ]);
        const server = new ChorusServer(config, nodeEnv, storage, recovered, dataDir);
        server.listen((listenError) => {
          if (listenError !== undefined)
            return server.stop('could not listen for clients', () => done(listenError, undefined));
          done(undefined, server);
        });
      });
    },
  );
}

class ChorusServer implements StartedServer, ServiceContext {
  readonly kv: KvNode;
  readonly metrics: ServerMetrics;
  readonly moveLeaderTimeoutMs = moveLeaderTimeoutMs;
  mode: Mode = 'starting';
  clientPorts: number[] = [];
  private readonly clusterIdText: string;
  private readonly memberIdText: string;
  private readonly idsByName = new Map<string, bigint>();
  private readonly dispatcher: Dispatcher;
  private readonly grpc: GrpcFront;
  private readonly http: http.Server;
  private readonly listeners: ClientListener[] = [];
  /** Requests waiting for the KV node; failing them all is how a stop answers them. */
  private readonly inflight = new Set<(error: ChorusError) => void>();
  private readonly clientUrlsSeen = new Map<string, string[]>();
  private readonly requestTimeoutMs: number;
  private stopping = false;
  /** Everyone waiting for the stop to finish (a second signal waits with the first). */
  private readonly stopWaiters: (() => void)[] = [];
  private lastLead = '';
  private dbSize = { bytes: 0, atMs: -Infinity };
  private readonly log: Logger;

  constructor(
    readonly config: ServerConfig,
    private readonly nodeEnv: NodeEnv,
    private readonly storage: RaftStorage,
    recovered: RestoredState,
    private readonly dataDir: DataDir,
  ) {
    this.log = nodeEnv.env.log;
    const token = config.initialClusterToken;
    const names = config.initialCluster.map((m) => m.name);
    for (const name of names) this.idsByName.set(name, memberId(token, name));
    this.clusterIdText = clusterId(token, names).toString();
    this.memberIdText = this.memberIdOf(config.name).toString();
    this.metrics = new ServerMetrics({ member: config.name });
    this.requestTimeoutMs = requestTimeoutMsBase + 2 * config.electionTimeoutMs;
    const env = nodeEnv.env;
    this.kv = new KvNode(
      env,
      {
        raft: {
          peers: names.map((n) => nodeId(n)),
          electionTicks: Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs),
          heartbeatTicks: 1,
          preVote: true,
          checkQuorum: true,
        },
        tickMs: config.heartbeatIntervalMs,
        snapshotEveryEntries: config.snapshotCount,
        forwardDeadlineMs,
        ...kvNodeDefaults,
      },
      this.measuredStore(storage),
      recovered,
    );
    this.measureApply();
    this.kv.driver.rpc.handle(memberInfoMethod, (_from, _body, respond) =>
      respond(undefined, { name: config.name, clientUrls: config.advertiseClientUrls }),
    );
    this.dispatcher = new Dispatcher(this, this.metrics, this.log, () => performance.now());
    const definition = loadEtcdProto();
    this.grpc = new GrpcFront(definition, this.dispatcher, {
      receiveBytesMax: config.maxRequestBytes + grpcOverheadBytes,
    });
    const gateway = new Gateway(
      definition,
      new EtcdJson(),
      this.dispatcher,
      {
        bodyBytesMax: config.maxRequestBytes + grpcOverheadBytes,
        health: () => this.health(),
        metrics: async () => ({
          contentType: this.metrics.registry.contentType,
          text: await this.metrics.registry.metrics(),
        }),
        version: etcdVersion,
      },
      this.log,
    );
    this.http = http.createServer((req, res) => gateway.handle(req, res));
    this.http.on('clientError', (_error, socket) => socket.destroy());
    this.observe();
    this.log.info('member started', {
      name: config.name,
      memberId: hexId(this.memberIdOf(config.name)),
      clusterId: hexId(BigInt(this.clusterIdText)),
      dataDir: config.dataDir,
      fresh: this.dataDir.fresh,
      initialClusterState: config.initialClusterState,
      peers: names,
    });
  }

  listen(done: (error: Error | undefined) => void): void {
    const addresses = [...this.config.listenClient];
    const next = (): void => {
      const address = addresses.shift();
      if (address === undefined) {
        this.log.info('serving clients', {
          ports: this.clientPorts,
          advertise: this.config.advertiseClientUrls,
        });
        return done(undefined);
      }
      listenClients(
        address,
        {
          grpc: (socket) => this.grpc.inject(socket),
          http: (socket) => this.http.emit('connection', socket),
        },
        (error, listener) => {
          if (error !== undefined || listener === undefined)
            return done(
              new Error(
                `cannot listen for clients on ${address.host}:${address.port}: ${error?.message ?? 'unknown'}`,
              ),
            );
          this.listeners.push(listener);
          this.clientPorts.push(listener.port);
          next();
        },
      );
    };
    next();
  }

  stop(reason: string, done: () => void): void {
    this.stopWaiters.push(done);
    if (this.stopping) return;
    this.stopping = true;
    this.setMode('stopped');
    this.log.info('stopping', { reason, inflight: this.inflight.size });
    for (const l of this.listeners) l.close();
    const stopped = new ChorusError('closed', 'server stopped');
    for (const fail of [...this.inflight]) fail(stopped);
    this.dispatcher.endStreams(stopped);
    // Let the failures reach the sockets before the connections close.
    this.grpc.close(() => {
      for (const l of this.listeners) l.destroyConnections();
      this.http.close();
      this.kv.stop();
      this.storage.close((error) => {
        if (error !== undefined)
          this.log.error('closing storage failed', { error: describeError(error) });
        this.nodeEnv.close(() => {
          this.dataDir.release();
          this.log.info('stopped', { reason });
          for (const waiter of this.stopWaiters.splice(0)) waiter();
        });
      });
    });
  }

  // --- ServiceContext --------------------------------------------------------------------------

  get memberName(): string {
    return this.config.name;
  }

  wallMs(): number {
    return this.nodeEnv.env.clock.wallMs();
  }

  header(revision?: number): Header {
    return {
      clusterId: this.clusterIdText,
      memberId: this.memberIdText,
      revision: revision ?? this.kv.machine.revision(),
      raftTerm: this.kv.driver.node.raft.term,
    };
  }

  guard<T>(done: Done<T>): Done<T> {
    let finished = false;
    const timers = this.nodeEnv.env.timers;
    const finish: Done<T> = (error, result) => {
      if (finished) return;
      finished = true;
      timers.cancel(timer);
      this.inflight.delete(fail);
      done(error, result);
    };
    const fail = (error: ChorusError): void => finish(error, undefined);
    const timer = timers.set(this.requestTimeoutMs, () =>
      fail(new TimeoutError('request timed out')),
    );
    this.inflight.add(fail);
    if (this.stopping) fail(new ChorusError('closed', 'server stopped'));
    return finish;
  }

  memberIdOf(name: string): bigint {
    return this.idsByName.get(name) ?? memberId(this.config.initialClusterToken, name);
  }

  nameOf(id: bigint): NodeId | undefined {
    for (const [name, known] of this.idsByName) if (known === id) return nodeId(name);
    return undefined;
  }

  members(done: (members: MemberInfo[]) => void): void {
    const others = this.config.initialCluster.filter((m) => m.name !== this.config.name);
    let waiting = others.length;
    const finish = (): void =>
      done(
        this.config.initialCluster.map((m) => ({
          id: this.memberIdOf(m.name),
          name: m.name,
          peerUrls: [m.peerUrl],
          clientUrls:
            m.name === this.config.name
              ? this.config.advertiseClientUrls
              : (this.clientUrlsSeen.get(m.name) ?? []),
        })),
      );
    if (waiting === 0) return finish();
    for (const m of others) {
      this.kv.driver.rpc.call(
        nodeId(m.name),
        memberInfoMethod,
        null,
        (error, body) => {
          const urls = (body as { clientUrls?: unknown } | undefined)?.clientUrls;
          if (
            error === undefined &&
            Array.isArray(urls) &&
            urls.every((u) => typeof u === 'string')
          )
            this.clientUrlsSeen.set(m.name, urls);
          if (--waiting === 0) finish();
        },
        { deadlineMs: memberInfoDeadlineMs },
      );
    }
  }

  status(): Wire {
    const raft = this.kv.driver.node.raft;
    const now = this.nodeEnv.env.clock.monotonicMs();
    if (now - this.dbSize.atMs > 1000)
      this.dbSize = { bytes: raftBytes(this.config.dataDir), atMs: now };
    return {
      version: etcdVersion,
      dbSize: this.dbSize.bytes,
      leader: raft.lead === '' ? '0' : this.memberIdOf(raft.lead).toString(),
      raftIndex: raft.log.committed,
      raftTerm: raft.term,
      raftAppliedIndex: this.kv.driver.appliedIndex,
      errors: raft.lead === '' ? ['etcdserver: no leader'] : [],
      dbSizeInUse: this.dbSize.bytes,
      isLearner: false,
    };
  }

  waitFor(predicate: () => boolean, timeoutMs: number, done: (ok: boolean) => void): void {
    const timers = this.nodeEnv.env.timers;
    const deadline = this.nodeEnv.env.clock.monotonicMs() + timeoutMs;
    const check = (): void => {
      if (predicate()) return done(true);
      if (this.stopping || this.nodeEnv.env.clock.monotonicMs() >= deadline) return done(false);
      timers.set(this.config.heartbeatIntervalMs, check);
    };
    check();
  }

  // --- observation -----------------------------------------------------------------------------

  private health(): { ok: boolean; body: Wire } {
    const raft = this.kv.driver.node.raft;
    const ok = this.mode === 'serving';
    return {
      ok,
      body: {
        health: String(ok),
        reason: ok ? '' : this.mode === 'degraded' ? 'no leader' : this.mode,
        mode: this.mode,
        name: this.config.name,
        memberId: hexId(this.memberIdOf(this.config.name)),
        leader: raft.lead,
        role: raft.role,
        term: raft.term,
        revision: this.kv.machine.revision(),
      },
    };
  }

  private setMode(mode: Mode): void {
    if (mode === this.mode) return;
    this.log.info('mode', { from: this.mode, to: mode });
    this.mode = mode;
    this.metrics.setMode(mode);
  }

  /** Samples Raft for metrics, mode and leader changes. */
  private observe(): void {
    if (this.stopping) return;
    const raft = this.kv.driver.node.raft;
    const m = this.metrics;
    m.term.set(raft.term);
    m.hasLeader.set(raft.lead === '' ? 0 : 1);
    m.isLeader.set(raft.role === 'leader' ? 1 : 0);
    m.committedIndex.set(raft.log.committed);
    m.appliedIndex.set(this.kv.driver.appliedIndex);
    m.revision.set(this.kv.machine.revision());
    m.watchers.set(this.kv.watches.size);
    if (raft.lead !== this.lastLead) {
      m.leaderChanges.inc();
      this.log.info('leader changed', { from: this.lastLead, to: raft.lead, term: raft.term });
      this.lastLead = raft.lead;
    }
    if (raft.lead !== '') this.setMode('serving');
    else if (this.mode !== 'starting') this.setMode('degraded');
    this.nodeEnv.env.timers.set(observeEveryMs, () => this.observe());
  }

  /** Times each save from hand-over to durable (write and fsync, group committed). */
  private measuredStore(storage: RaftStorage): RaftStore {
    const histogram = this.metrics.storageSaveSeconds;
    return {
      save: (update, done) => {
        const started = performance.now();
        storage.save(update, (error) => {
          histogram.observe((performance.now() - started) / 1000);
          done(error);
        });
      },
      saveSnapshot: (snapshot, done) => storage.saveSnapshot(snapshot, done),
      compact: (index, done) => storage.compact(index, done),
    };
  }

  /**
   * Times each apply batch. KvNode offers no hook, so this wraps the machine's `apply` on
   * the instance (the driver calls it through the same object).
   */
  private measureApply(): void {
    const machine = this.kv.machine;
    const apply = machine.apply.bind(machine);
    const histogram = this.metrics.applySeconds;
    machine.apply = (entries) => {
      const started = performance.now();
      try {
        return apply(entries);
      } finally {
        histogram.observe((performance.now() - started) / 1000);
      }
    };
  }
}
