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
import * as https from 'node:https';
import { getHeapStatistics } from 'node:v8';
import type { TlsOptions } from 'node:tls';
import { asChorusError, describeError, ChorusError, TimeoutError } from '../core/errors.js';
import { nodeId, type NodeId } from '../core/ids.js';
import type { Logger } from '../env/env.js';
import {
  createNodeEnv,
  queryPeer,
  type NodeEnv,
  type PeerTls,
  type TcpAddress,
} from '../env/node/index.js';
import { KvNode, kvNodeDefaults } from '../kv/node.js';
import type { RaftStore } from '../raft/driver.js';
import type { RestoredState } from '../raft/raft.js';
import { RaftStorage } from '../storage/index.js';
import {
  checkAdvertisedPeerUrls,
  namedMembers,
  parseUrl,
  quotaBytesOf,
  type ServerConfig,
} from './config.js';
import {
  etcdVersion,
  forwardDeadlineMs,
  grpcOverheadBytes,
  joinAnswerBytesMax,
  joinQueryTimeoutMs,
  memberChangeDeadlineMs,
  moveLeaderTimeoutMs,
  observeEveryMs,
  eventLoopBlockedWarnMs,
  applyWarnMs,
  peerProbeDeadlineMs,
  peerProbeEveryMs,
  publishRetryMs,
  requestTimeoutMsBase,
} from './constants.js';
import type { Header, Wire } from './convert.js';
import { openDataDir, raftBytes, raftDirName, type DataDir } from './datadir.js';
import { Dispatcher } from './dispatch.js';
import { StatusError } from './errors.js';
import { GrpcFront } from './grpc.js';
import { Gateway } from './gateway.js';
import { clusterId, founderIdentity, hexId } from './ids.js';
import {
  encodeMembersAnswer,
  learnIdentity,
  membersQuestion,
  type AskMembers,
  type Joined,
  type JoinTiming,
} from './join.js';
import { EtcdJson } from './json.js';
import { listenClients, type ClientListener } from './listener.js';
import { loadClientTls, loadPeerTls, watchTlsFiles } from './tls.js';
import { changeMembership, type MemberRequest } from './member-changes.js';
import {
  ClusterMachine,
  encodeClusterCommand,
  foundingMembers,
  MemberTable,
  type Member,
} from './membership.js';
import { ServerMetrics, type Mode } from './metrics.js';
import { loadEtcdProto } from './proto.js';
import type { Done, ServiceContext } from './service.js';

/** A membership change forwarded to the leader. */
const memberChangeMethod = 'server-member-change';
/** Answered at once: the peer round-trip probe. */
const pingMethod = 'server-ping';
/** The leader tells a member it removed, which may never apply its own removal. */
const removedMethod = 'server-removed';
/** How long the leader keeps a removed member's connection for that notice to leave. */
const removedNoticeGraceMs = 1_000;

export interface StartedServer {
  readonly config: ServerConfig;
  readonly clientPorts: readonly number[];
  readonly mode: Mode;
  /** Stops gracefully; `done` runs once storage is closed and the lock released. */
  stop(reason: string, done: () => void): void;
  /** `listener` runs once the server has stopped, whoever stopped it (e.g. its removal). */
  whenStopped(listener: (reason: string) => void): void;
}

/**
 * Who this member is: the identity its data directory recorded; for a fresh one, a
 * founder's own, or what a running member says of a joining one (join.ts), then recorded.
 */
function resolveIdentity(
  config: ServerConfig,
  dataDir: DataDir,
  log: Logger,
  peerTls: PeerTls | undefined,
  done: (error: Error | undefined, joined: Joined | undefined) => void,
): void {
  if (dataDir.identity !== undefined) return done(undefined, undefined);
  if (config.initialClusterState === 'new') {
    // etcd checks this only when bootstrapping, as here: a restart keeps the URLs its
    // member table holds (MemberUpdate may have changed them) whatever the flags say now.
    try {
      checkAdvertisedPeerUrls(config.name, config.initialCluster, config.advertisePeerUrls);
    } catch (error) {
      return done(error as Error, undefined);
    }
    dataDir.record(founderIdentity(config.initialClusterToken, config.name));
    return done(undefined, undefined);
  }
  const ask: AskMembers = (address, answered) =>
    queryPeer(
      address,
      membersQuestion,
      {
        timeoutMs: joinQueryTimeoutMs,
        replyBytesMax: joinAnswerBytesMax,
        ...(peerTls === undefined ? {} : { tlsClient: peerTls.client }),
      },
      answered,
    );
  const timing: JoinTiming = {
    nowMs: () => performance.now(),
    wait: (ms, then) => setTimeout(then, ms),
  };
  learnIdentity(config, ask, timing, log.child({ node: config.name }), (error, joined) => {
    if (error !== undefined || joined === undefined) return done(error, undefined);
    dataDir.record(joined.identity);
    done(undefined, joined);
  });
}

/**
 * Where to reach the other members before the member table is known: every member the
 * joined-through member listed, or else the founders of --initial-cluster (their node ids
 * are their names). Members added later are known once the log or snapshot is applied.
 */
function seedPeers(
  config: ServerConfig,
  self: NodeId,
  joined: Joined | undefined,
): Map<NodeId, TcpAddress[]> {
  const peers = new Map<NodeId, TcpAddress[]>();
  if (joined !== undefined) {
    for (const m of joined.members) {
      const addresses = peerAddresses(m.peerUrls);
      if (m.node !== self && addresses.length > 0) peers.set(m.node, addresses);
    }
    return peers;
  }
  for (const [name, entries] of namedMembers(config.initialCluster))
    if (nodeId(name) !== self)
      peers.set(
        nodeId(name),
        entries.map((m) => ({ host: m.host, port: m.port, tls: m.tls })),
      );
  return peers;
}

/** The addresses of a member's peer URLs, in order; unusable URLs are skipped. */
function peerAddresses(urls: readonly string[]): TcpAddress[] {
  const addresses: TcpAddress[] = [];
  for (const url of urls) {
    try {
      const { host, port, tls } = parseUrl(url, 'peer-urls');
      addresses.push({ host, port, tls });
    } catch {
      // MemberAdd and MemberUpdate check URLs; one that does not parse here is skipped.
    }
  }
  return addresses;
}

/**
 * What to say of an observation `lateMs` late (undefined: nothing), given the CPU time the
 * process used over the `intervalMs` since the last one. A late timer alone cannot tell a
 * blocked event loop (a long apply, a GC pause: the process worked all along) from a starved
 * process (the machine's cores were busy elsewhere): the CPU time can. Half the interval
 * or more is taken as blocked.
 */
export function lateObservation(
  lateMs: number,
  cpuMs: number,
  intervalMs: number,
): { message: string; fields: Record<string, number> } | undefined {
  if (lateMs <= eventLoopBlockedWarnMs) return undefined;
  const fields = { blockedMs: Math.round(lateMs), cpuMs: Math.round(cpuMs) };
  return cpuMs >= intervalMs / 2
    ? { message: 'event loop was blocked', fields }
    : {
        message:
          'event loop ran late while the process got little CPU (a busy machine, or a stopped process)',
        fields,
      };
}

/** Starts a node; `done` runs once clients can connect (or with why it could not start). */
export function startServer(
  config: ServerConfig,
  log: Logger,
  done: (error: Error | undefined, server: StartedServer | undefined) => void,
): void {
  let dataDir: DataDir;
  let clientTls: TlsOptions | undefined;
  let peerTls: PeerTls | undefined;
  try {
    // Before the data directory is locked: a bad certificate leaves nothing to undo.
    if (config.clientTls !== undefined) clientTls = loadClientTls(config.clientTls);
    if (config.peerTls !== undefined) peerTls = loadPeerTls(config.peerTls);
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
  resolveIdentity(config, dataDir, log, peerTls, (identityError, joined) => {
    if (identityError !== undefined) return fail(identityError, []);
    if (joined !== undefined)
      log.info("learned this member's id from the cluster", {
        memberId: hexId(BigInt(joined.identity.memberId)),
        node: joined.identity.nodeId,
      });
    startMember(
      config,
      log,
      dataDir,
      seedPeers(config, dataDir.identity!.nodeId, joined),
      { client: clientTls, peer: peerTls },
      fail,
      done,
    );
  });
}

/** Binds the peer port, opens Raft storage and starts the member with a known identity. */
function startMember(
  config: ServerConfig,
  log: Logger,
  dataDir: DataDir,
  peers: Map<NodeId, TcpAddress[]>,
  tls: { client: TlsOptions | undefined; peer: PeerTls | undefined },
  fail: (error: Error, cleanup: (() => void)[]) => void,
  done: (error: Error | undefined, server: StartedServer | undefined) => void,
): void {
  const self = dataDir.identity!.nodeId;
  createNodeEnv(
    {
      self,
      listen: config.listenPeer,
      peers,
      dataDir: config.dataDir,
      log,
      ...(tls.peer === undefined ? {} : { tls: tls.peer }),
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
        const server = new ChorusServer(config, nodeEnv, storage, recovered, dataDir, tls.client);
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
  readonly table = new MemberTable();
  private readonly self: NodeId;
  /** The cluster id computed from the flags, until the replicated one is known. */
  private readonly flagClusterId: string;
  private readonly memberIdText: string;
  private readonly dispatcher: Dispatcher;
  private readonly grpc: GrpcFront;
  private readonly http: http.Server;
  /** What --listen-metrics-urls ports answer (Gateway.handleObservability). */
  private readonly observabilityHandler: http.RequestListener;
  /** The --listen-metrics-urls servers. */
  private readonly metricsServers: http.Server[] = [];
  private readonly listeners: ClientListener[] = [];
  /** Stops watching the TLS files (watchTls). */
  private readonly tlsWatches: (() => void)[] = [];
  /** Requests waiting for the KV node; failing them all is how a stop answers them. */
  private readonly inflight = new Set<(error: ChorusError) => void>();
  private readonly requestTimeoutMs: number;
  private readonly stoppedListeners: ((reason: string) => void)[] = [];
  /** When each member was last seen active by this node as leader (monotonic ms). */
  private readonly activeAt = new Map<NodeId, number>();
  private readonly removedHandled = new Set<NodeId>();
  private publishing = false;
  private publishedAtMs = -Infinity;
  private started = false;
  private stopping = false;
  /** Everyone waiting for the stop to finish (a second signal waits with the first). */
  private readonly stopWaiters: (() => void)[] = [];
  private lastLead = '';
  /** The peer network's count of failed TLS handshakes when metrics last looked. */
  private peerTlsFailuresSeen = 0;
  private observedAtMs: number | undefined;
  /** The process's CPU time (user + system, µs) at the last observation. */
  private observedCpuMicros = 0;
  private dbSize = { bytes: 0, atMs: -Infinity };
  /** The space quota this member enforces (0: none); see quotaBytesOf. */
  readonly quotaBytes: number;
  private readonly log: Logger;

  constructor(
    readonly config: ServerConfig,
    private readonly nodeEnv: NodeEnv,
    private readonly storage: RaftStorage,
    recovered: RestoredState,
    private readonly dataDir: DataDir,
    /** The https:// client URLs' TLS options (tls.ts). */
    private readonly clientTls: TlsOptions | undefined,
  ) {
    this.log = nodeEnv.env.log;
    const token = config.initialClusterToken;
    const founders = namedMembers(config.initialCluster);
    const names = [...founders.keys()];
    this.flagClusterId = clusterId(token, names).toString();
    this.self = dataDir.identity!.nodeId;
    this.memberIdText = dataDir.identity!.memberId;
    this.metrics = new ServerMetrics({ member: config.name });
    this.requestTimeoutMs = requestTimeoutMsBase + 2 * config.electionTimeoutMs;
    const env = nodeEnv.env;
    const quota = quotaBytesOf(config.quotaBackendBytes, getHeapStatistics().heap_size_limit);
    this.quotaBytes = quota.bytes;
    if (quota.warning !== undefined) this.log.warn(quota.warning, { quotaBytes: quota.bytes });
    this.kv = new KvNode(
      env,
      {
        raft: {
          // The membership comes from the log: the founders write it there (bootstrap), and
          // everyone else replays it (see membership.ts).
          peers: [],
          ...(config.initialClusterState === 'new'
            ? { bootstrap: foundingMembers(token, config.initialCluster) }
            : {}),
          electionTicks: Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs),
          heartbeatTicks: 1,
          preVote: true,
          checkQuorum: true,
        },
        tickMs: config.heartbeatIntervalMs,
        snapshotEveryEntries: config.snapshotCount,
        snapshotCatchUpEntries: config.snapshotCatchUpEntries,
        forwardDeadlineMs,
        ...kvNodeDefaults,
        wrapStateMachine: (machine) =>
          new ClusterMachine(machine, this.table, () => this.membershipChanged()),
        quotaBytes: this.quotaBytes,
        alarmMember: this.memberIdText,
        observe: {
          alarm: (alarm, active) =>
            this.log.warn(active ? 'alarm raised' : 'alarm cleared', {
              alarm: alarm.alarm,
              memberId: alarm.member,
              storeBytes: this.kv.machine.store.bytes,
              quotaBytes: this.quotaBytes,
            }),
        },
      },
      this.measuredStore(storage),
      recovered,
    );
    this.measureApply();
    this.metrics.quotaBytes.set(this.quotaBytes);
    this.kv.driver.rpc.handle(memberChangeMethod, (_from, body, respond) =>
      this.changeOnLeader(body as MemberRequest, (error, result) => respond(error, result)),
    );
    this.kv.driver.rpc.handle(pingMethod, (_from, _body, respond) => respond(undefined, null));
    this.nodeEnv.env.timers.set(1_000, () => this.probePeers());
    this.kv.driver.rpc.on(removedMethod, (from) => {
      this.log.warn('the leader says this member was removed from the cluster', { from });
      this.onRemoved();
    });
    // A member that missed the leader's notice hears it from the first peer it dials.
    this.nodeEnv.net.onRetired((by) => {
      this.log.warn('a peer says this member was removed from the cluster', { by });
      this.onRemoved();
    });
    this.nodeEnv.net.answerQueries((question) =>
      question === membersQuestion
        ? encodeMembersAnswer(config.initialClusterToken, this.table, this.mode !== 'starting')
        : undefined,
    );
    this.started = true;
    this.membershipChanged();
    this.dispatcher = new Dispatcher(this, this.metrics, this.log, () => performance.now());
    const definition = loadEtcdProto();
    this.grpc = new GrpcFront(definition, this.dispatcher, {
      receiveBytesMax: config.maxRequestBytes + grpcOverheadBytes,
      acceptUrlAuthority: config.acceptUrlAuthority,
      onConnection: (path) => this.metrics.grpcConnections.inc({ path }),
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
    this.observabilityHandler = (req, res) => gateway.handleObservability(req, res);
    this.observe();
    this.log.info('member started', {
      name: config.name,
      memberId: hexId(BigInt(this.memberIdText)),
      clusterId: hexId(BigInt(this.clusterIdText)),
      dataDir: config.dataDir,
      fresh: this.dataDir.fresh,
      initialClusterState: config.initialClusterState,
      advertisePeerUrls: config.advertisePeerUrls,
      node: this.self,
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
          tls: this.config.listenClient.map((u) => u.tls),
          advertise: this.config.advertiseClientUrls,
        });
        this.watchTls();
        return this.listenMetrics(done);
      }
      if (address.tls && this.clientTls === undefined)
        return done(new Error(`https:// client URL on port ${address.port} without TLS files`));
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
        address.tls
          ? {
              options: this.clientTls!,
              // etcd logs these too ("rejected connection"): a client that cannot connect
              // learns little more than that from its TLS library.
              onHandshakeError: (error, remote) => {
                // OpenSSL's message is a stack line; its reason ("peer did not return a
                // certificate") and code say it.
                const { code, reason } = error as Error & { code?: string; reason?: string };
                this.metrics.tlsHandshakeFailures.inc({ side: 'client' });
                this.log.info('client TLS handshake failed', {
                  remote,
                  error: reason ?? error.message.trim(),
                  ...(code === undefined ? {} : { code }),
                });
              },
            }
          : undefined,
      );
    };
    next();
  }

  /** Opens the --listen-metrics-urls ports, one after the other; `done` after the last. */
  private listenMetrics(done: (error: Error | undefined) => void): void {
    const addresses = [...this.config.listenMetrics];
    const next = (): void => {
      const address = addresses.shift();
      if (address === undefined) return done(undefined);
      const server = address.tls
        ? https.createServer(
            { ...this.clientTls!, ALPNProtocols: ['http/1.1'] },
            this.observabilityHandler,
          )
        : http.createServer(this.observabilityHandler);
      server.on('clientError', (_error, socket) => socket.destroy());
      const onError = (error: Error): void =>
        done(
          new Error(
            `cannot listen for metrics on ${address.host}:${address.port}: ${error.message}`,
          ),
        );
      server.once('error', onError);
      server.listen(address.port, address.host, () => {
        server.off('error', onError);
        server.on('error', () => {});
        this.metricsServers.push(server);
        const bound = server.address() as { port: number };
        this.log.info('serving metrics', { port: bound.port, tls: address.tls });
        next();
      });
    };
    next();
  }

  /** Rotated certificate files take effect for new connections (tls.ts, watchTlsFiles). */
  private watchTls(): void {
    const { clientTls, peerTls } = this.config;
    const secure = [...this.config.listenClient, ...this.config.listenMetrics].some((u) => u.tls);
    if (clientTls !== undefined && secure)
      this.tlsWatches.push(
        watchTlsFiles(
          clientTls,
          loadClientTls,
          (options) => {
            for (const l of this.listeners) l.setSecureContext(options);
            for (const m of this.metricsServers)
              if (m instanceof https.Server) m.setSecureContext(options);
          },
          this.log,
        ),
      );
    if (peerTls !== undefined && this.config.listenPeer.tls)
      this.tlsWatches.push(
        watchTlsFiles(peerTls, loadPeerTls, (tls) => this.nodeEnv.net.setTls(tls), this.log),
      );
  }

  stop(reason: string, done: () => void): void {
    this.stopWaiters.push(done);
    if (this.stopping) return;
    this.stopping = true;
    for (const unwatch of this.tlsWatches.splice(0)) unwatch();
    this.setMode('stopped');
    this.log.info('stopping', { reason, inflight: this.inflight.size });
    for (const l of this.listeners) l.close();
    for (const m of this.metricsServers) {
      m.close();
      m.closeAllConnections();
    }
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
          for (const listener of this.stoppedListeners.splice(0)) listener(reason);
        });
      });
    });
  }

  whenStopped(listener: (reason: string) => void): void {
    this.stoppedListeners.push(listener);
  }

  // --- ServiceContext --------------------------------------------------------------------------

  private get clusterIdText(): string {
    return this.table.clusterId !== '' ? this.table.clusterId : this.flagClusterId;
  }

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

  memberIdOf(node: NodeId): bigint | undefined {
    if (node === this.self) return BigInt(this.memberIdText);
    return this.table.get(node)?.id;
  }

  nodeOf(id: bigint): NodeId | undefined {
    return this.table.byId(id)?.node;
  }

  members(): Member[] {
    return this.table.list().map((m) =>
      // Our own name and URLs are known before they are published.
      m.node === this.self
        ? { ...m, name: this.config.name, clientUrls: this.config.advertiseClientUrls }
        : m,
    );
  }

  changeMembership(
    request: MemberRequest,
    done: Done<{ member: Member; members: Member[] }>,
  ): void {
    const raft = this.kv.driver.node.raft;
    const answered = (error: ChorusError | undefined, body: unknown): void => {
      if (error !== undefined)
        return done(new ChorusError(error.code, error.message, { cause: error }), undefined);
      const refusal = (body as { refusal?: { code: number; message: string } }).refusal;
      if (refusal !== undefined)
        return done(new StatusError(refusal.code, refusal.message), undefined);
      done(undefined, decodeChangeResult(body));
    };
    if (raft.role === 'leader') return this.changeOnLeader(request, answered);
    if (raft.lead === '') return done(new ChorusError('no-leader', 'no leader'), undefined);
    this.kv.driver.rpc.call(raft.lead, memberChangeMethod, request, answered, {
      deadlineMs: memberChangeDeadlineMs,
    });
  }

  status(): Wire {
    const raft = this.kv.driver.node.raft;
    const now = this.nodeEnv.env.clock.monotonicMs();
    if (now - this.dbSize.atMs > 1000)
      this.dbSize = { bytes: raftBytes(this.config.dataDir), atMs: now };
    return {
      version: etcdVersion,
      dbSize: this.dbSize.bytes,
      leader: raft.lead === '' ? '0' : (this.memberIdOf(raft.lead) ?? 0n).toString(),
      raftIndex: raft.log.committed,
      raftTerm: raft.term,
      raftAppliedIndex: this.kv.driver.appliedIndex,
      // etcd lists the active alarms here too, in their protobuf text form.
      errors: [
        ...(raft.lead === '' ? ['etcdserver: no leader'] : []),
        ...this.kv.alarms().map((a) => `memberID:${a.member} alarm:${a.alarm} `),
      ],
      dbSizeInUse: this.kv.machine.store.bytes,
      dbSizeQuota: this.quotaBytes,
      isLearner: this.table.get(this.self)?.isLearner ?? false,
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

  // --- membership ------------------------------------------------------------------------------

  /**
   * Carries out a membership change here, the leader. The answer travels to a forwarding
   * member as RPC data: a refusal as {refusal: {code, message}} (a gRPC status, which the
   * RPC layer's error codes cannot carry), a success as the member and the member list.
   */
  private changeOnLeader(
    request: MemberRequest,
    respond: (error: ChorusError | undefined, result?: unknown) => void,
  ): void {
    const env = this.nodeEnv.env;
    changeMembership(
      {
        driver: this.kv.driver,
        table: this.table,
        timers: env.timers,
        clusterToken: this.config.initialClusterToken,
        isStarted: (node) => this.isStarted(node),
        retryMs: this.config.heartbeatIntervalMs,
        now: () => env.clock.monotonicMs(),
        wallMs: () => env.clock.wallMs(),
        draw: () => env.random.int(2 ** 32),
      },
      request,
      env.clock.monotonicMs() + memberChangeDeadlineMs,
      (error, member) => {
        if (error instanceof StatusError)
          return respond(undefined, { refusal: { code: error.code, message: error.message } });
        if (error !== undefined) return respond(asChorusError(error));
        respond(undefined, {
          member: encodeMember(member!),
          members: this.members().map(encodeMember),
        });
      },
    );
  }

  /** A voter counts as started if the leader heard from it within two election timeouts. */
  private isStarted(node: NodeId): boolean {
    if (node === this.self) return true;
    const at = this.activeAt.get(node);
    return (
      at !== undefined &&
      this.nodeEnv.env.clock.monotonicMs() - at < 2 * this.config.electionTimeoutMs
    );
  }

  /** After the table changed: reach every member at its URL, forget removed ones. */
  private membershipChanged(): void {
    if (!this.started) return;
    const net = this.nodeEnv.net;
    for (const m of this.table.list()) {
      if (m.node === this.self || m.peerUrls.length === 0) continue;
      const addresses = peerAddresses(m.peerUrls);
      if (addresses.length > 0) net.setPeer(m.node, addresses);
      else this.log.warn('member has no usable peer URL', { node: m.node, urls: m.peerUrls });
    }
    for (const node of this.table.removedNodeIds()) {
      if (this.removedHandled.has(node)) continue;
      this.removedHandled.add(node);
      if (node === this.self) {
        this.onRemoved();
        continue;
      }
      this.log.info('member removed', { node });
      // It may never apply its own removal (we stop sending it entries): tell it, then let go.
      if (this.kv.driver.node.raft.role === 'leader')
        this.kv.driver.rpc.notify(node, removedMethod, null);
      this.nodeEnv.env.timers.set(removedNoticeGraceMs, () => net.removePeer(node));
    }
  }

  private onRemoved(): void {
    if (this.stopping) return;
    this.log.warn('this member was removed from the cluster; stopping');
    // Not from inside the apply that told us: let the driver finish its Ready first.
    this.nodeEnv.env.timers.set(0, () => this.stop('removed from the cluster', () => {}));
  }

  /**
   * Publishes this member's name and client URLs through the log once it runs, so every
   * member's MemberList shows them, even while this one is down (etcd's publish).
   */
  private publish(): void {
    const own = this.table.get(this.self);
    if (own === undefined || this.publishing) return;
    const urls = this.config.advertiseClientUrls;
    if (own.name === this.config.name && sameList(own.clientUrls, urls)) return;
    const now = this.nodeEnv.env.clock.monotonicMs();
    if (now - this.publishedAtMs < publishRetryMs) return;
    this.publishing = true;
    this.publishedAtMs = now;
    const command = encodeClusterCommand({
      t: 'attributes',
      node: this.self,
      name: this.config.name,
      clientUrls: [...urls],
    });
    this.kv.driver.propose(command, (error) => {
      this.publishing = false;
      if (error !== undefined)
        this.log.debug('publishing attributes failed; will retry', { error: error.message });
    });
  }

  // --- observation -----------------------------------------------------------------------------

  /** Measures the round trip to every other member, one probe each per period. */
  private probePeers(): void {
    if (this.stopping) return;
    const rpc = this.kv.driver.rpc;
    for (const m of this.table.list()) {
      if (m.node === this.self) continue;
      const to = m.name === '' ? m.node : m.name;
      const started = performance.now();
      rpc.call(
        m.node,
        pingMethod,
        null,
        (error) => {
          if (error !== undefined) this.metrics.peerProbeFailures.inc({ to });
          else
            this.metrics.peerRoundTripSeconds.observe({ to }, (performance.now() - started) / 1000);
        },
        { deadlineMs: peerProbeDeadlineMs },
      );
    }
    this.nodeEnv.env.timers.set(peerProbeEveryMs, () => this.probePeers());
  }

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
        memberId: hexId(BigInt(this.memberIdText)),
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
    const now = this.nodeEnv.env.clock.monotonicMs();
    const lateMs = this.observedAtMs === undefined ? 0 : now - this.observedAtMs - observeEveryMs;
    const cpu = process.cpuUsage();
    const cpuMs = (cpu.user + cpu.system - this.observedCpuMicros) / 1000;
    const late = lateObservation(lateMs, cpuMs, observeEveryMs + lateMs);
    if (late !== undefined) this.log.warn(late.message, late.fields);
    this.observedAtMs = now;
    this.observedCpuMicros = cpu.user + cpu.system;
    if (this.stopping) return;
    const raft = this.kv.driver.node.raft;
    const m = this.metrics;
    m.term.set(raft.term);
    m.hasLeader.set(raft.lead === '' ? 0 : 1);
    m.isLeader.set(raft.role === 'leader' ? 1 : 0);
    m.committedIndex.set(raft.log.committed);
    m.appliedIndex.set(this.kv.driver.appliedIndex);
    m.revision.set(this.kv.machine.revision());
    m.storeBytes.set(this.kv.machine.store.bytes);
    m.alarms.set(this.kv.alarms().length);
    m.watchers.set(this.kv.watches.size);
    const peerTlsFailures = this.nodeEnv.net.stats().connectionErrors['tls-handshake'] ?? 0;
    if (peerTlsFailures > this.peerTlsFailuresSeen)
      m.tlsHandshakeFailures.inc({ side: 'peer' }, peerTlsFailures - this.peerTlsFailuresSeen);
    this.peerTlsFailuresSeen = peerTlsFailures;
    if (raft.lead !== this.lastLead) {
      m.leaderChanges.inc();
      this.log.info('leader changed', { from: this.lastLead, to: raft.lead, term: raft.term });
      this.lastLead = raft.lead;
    }
    if (raft.lead !== '') this.setMode('serving');
    else if (this.mode !== 'starting') this.setMode('degraded');
    if (raft.role === 'leader') {
      const now = this.nodeEnv.env.clock.monotonicMs();
      for (const [node, pr] of raft.progress) if (pr.recentActive) this.activeAt.set(node, now);
    }
    if (raft.lead !== '') this.publish();
    this.nodeEnv.env.timers.set(observeEveryMs, () => this.observe());
  }

  /**
   * Times each save from hand-over to durable (write and fsync, group committed); a save of
   * the commit index alone is not waited for and not timed.
   */
  private measuredStore(storage: RaftStorage): RaftStore {
    const histogram = this.metrics.storageSaveSeconds;
    return {
      save: (update, done) => {
        if (update.mustSync === false) return storage.save(update, done);
        const started = performance.now();
        storage.save(update, (error) => {
          histogram.observe((performance.now() - started) / 1000);
          done(error);
        });
      },
      saveSnapshot: (snapshot, done) => storage.saveSnapshot(snapshot, done),
      saveSnapshotOfLog: (metadata, data, done) => storage.saveSnapshotOfLog(metadata, data, done),
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
        const ms = performance.now() - started;
        histogram.observe(ms / 1000);
        if (ms > applyWarnMs)
          this.log.warn('apply took too long', {
            ms: Math.round(ms),
            entries: entries.length,
            firstIndex: entries[0]?.index,
            bytes: entries.reduce((n, e) => n + e.data.length, 0),
          });
      }
    };
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A member as RPC data (its id beyond 2^53 as a decimal string). */
function encodeMember(m: Member): unknown {
  return { ...m, id: m.id.toString() };
}

function decodeMember(value: unknown): Member {
  const m = value as Member & { id: string };
  return { ...m, id: BigInt(m.id) };
}

function decodeChangeResult(body: unknown): { member: Member; members: Member[] } {
  const b = body as { member: unknown; members: unknown[] };
  return { member: decodeMember(b.member), members: b.members.map(decodeMember) };
}
