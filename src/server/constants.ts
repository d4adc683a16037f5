/**
 * Limits and defaults of the node process, named with units last. etcd's own defaults are
 * used where a client or an operator would notice the difference.
 */

/** The version Status reports: etcd clients compare it to decide which features to use. */
export const etcdVersion = '3.5.0';

/**
 * The data directory format this binary writes and reads. 2: the log starts with the
 * founding members (RaftConfig.bootstrap) and version.json records the member's identity.
 */
export const dataDirFormatVersion = 2;

/** etcd's --heartbeat-interval and --election-timeout defaults. */
export const heartbeatIntervalMsDefault = 100;
export const electionTimeoutMsDefault = 1000;

/** etcd's --snapshot-count default (entries applied between snapshots). */
export const snapshotCountDefault = 100_000;

/** etcd's --max-request-bytes default; kv refuses larger commands the same way. */
export const maxRequestBytesDefault = 1.5 * 1024 * 1024;
/** What a gRPC message may carry beyond the request itself (etcd's grpcOverheadBytes). */
export const grpcOverheadBytes = 512 * 1024;

/**
 * A request that has not completed by then fails with "etcdserver: request timed out", as
 * etcd's does after 5 s plus two election timeouts.
 */
export const requestTimeoutMsBase = 5_000;

/** A proposal or read forwarded to the leader. */
export const forwardDeadlineMs = 3_000;

/** Watch streams and keep-alive streams one node holds at once; more are refused. */
export const streamsMax = 10_000;
/** A progress request on a watch stream re-checks this often until its watchers are synced. */
export const progressRetryMs = 50;
/** Watchers on one watch stream. */
export const watchersPerStreamMax = 1_000;
/** Keep-alives of one stream waiting for the leader at once; more end the stream. */
export const keepAlivesPendingPerStreamMax = 1_000;

/** Bytes of one JSON gateway request body (a streaming body: of one JSON value in it). */
export const gatewayBodyBytesMax = maxRequestBytesDefault + grpcOverheadBytes;
/** JSON values one streaming gateway request may carry (watch and keep-alive). */
export const gatewayStreamMessagesMax = 10_000;
/**
 * Node flags for a `chorus server` process, which `chorus dev` (and `npm start`) and the
 * benchmark's clusters pass: V8 waits until the old generation holds 256 MB before its first
 * full collection. The store's history only grows, and V8's default limit follows the live
 * size so closely that a member ran a full mark-compact (8–21 ms pause) every 1.5–2 s at 30–50
 * MB under 16 put clients. Paired against the default on a quiet machine (3 rounds): puts/s
 * 1.12×, 1.03×, 1.15×, 1.10× at 1, 16, 64, 256 clients, p99 lower at 1–64, CPU per put lower.
 * It costs up to that much more memory per member before the first collection.
 */
export const serverNodeFlags: readonly string[] = ['--initial-old-space-size=256'];

/** A connection that has not said whether it is gRPC or HTTP/1 by then is closed. */
export const protocolSniffTimeoutMs = 10_000;

/**
 * How long a gRPC connection may go without its first request and the acknowledgement of
 * the server's first SETTINGS before it is read through the `:authority` rewriter for good
 * (authority.ts: gateUrlAuthority). Most clients send both within a round trip of
 * connecting, but a client of many connections may open them all before using any:
 * `etcdctl check perf --load=l` opens 500 clients to each member, and with 1 s here up to
 * 282 of a member's 500 connections were read through the rewriter for their whole life
 * (no rewrite needed, a JavaScript stream in the way of every request). All go direct with
 * 10 s. Waiting is safe that long: the gate holds a connection's bytes, so a keepalive PING
 * is answered only at the verdict, and gRPC-Go sends none sooner than 10 s after connecting
 * (its minimum keepalive time), none at all on a connection without a request unless told to.
 */
export const authorityGateMs = 10_000;

/** Client connections held at once on the client port. */
export const clientConnectionsMax = 10_000;

/** How often the node samples Raft for metrics, the operating mode and leader changes. */
export const observeEveryMs = 100;
/**
 * An observation this much later than due is logged as a warning with how long: the event
 * loop was blocked (a long apply, a GC pause), or the process was starved (lateObservation
 * in server.ts tells which by the CPU time it used meanwhile).
 */
export const eventLoopBlockedWarnMs = 500;
/** An apply batch slower than this is logged as a warning (etcd warns at 100 ms too). */
export const applyWarnMs = 100;

/** Ids drawn at MemberAdd before giving up on finding an unused one (one is all it takes). */
export const memberIdAttemptsMax = 8;

/** A joining member asks each listed peer for the member list, waiting this long for each. */
export const joinQueryTimeoutMs = 3_000;

/**
 * --join-timeout's default: how long a joining member keeps asking while no member can say
 * who it is (none reachable yet, or none that has seen a leader since it started). etcd asks
 * each peer once and exits; a supervisor restarting it is the retry. Thirty seconds covers a
 * cluster started at the same moment as its joiner (processes up, a leader elected) with a
 * wide margin, and still ends a start whose flags name no live member within a minute.
 */
export const joinTimeoutMsDefault = 30_000;
/** The pause after a first round that found nobody to answer; doubled each round. */
export const joinRetryFirstMs = 250;
/** The longest pause between two rounds. */
export const joinRetryMaxMs = 4_000;

/** The largest member list a joining member accepts (a few hundred bytes per member). */
export const joinAnswerBytesMax = 1024 * 1024;

/** How often each member probes every peer's round-trip time (etcd: every 5 s per peer). */
export const peerProbeEveryMs = 5_000;
/** A probe unanswered by then counts as failed. */
export const peerProbeDeadlineMs = 1_000;

/** A membership change forwarded to the leader. */
export const memberChangeDeadlineMs = 10_000;
/** How often a member retries publishing its name and client URLs until they are replicated. */
export const publishRetryMs = 1_000;
/** etcd's limit: one learner at a time. */
export const learnersMax = 1;
/** A learner is promotable once it has this share of the leader's log (etcd's readyPercent). */
export const learnerReadyRatio = 0.9;

/** How long MoveLeader waits for the transferee to take over. */
export const moveLeaderTimeoutMs = 5_000;

/** A graceful stop that has not finished by then exits anyway (non-zero). */
export const shutdownGraceMs = 5_000;

/** Status reports the size of the data directory; walking it is bounded. */
export const dataDirFilesScannedMax = 10_000;

/** Blob bytes per SnapshotResponse (etcd's snapshotSendBufferSize). */
export const snapshotChunkBytes = 32 * 1024;
/** Snapshot chunks written in one event-loop turn before yielding to other clients. */
export const snapshotChunksPerTurn = 16;
/**
 * Snapshot streams one node serves at once; more are refused. Each holds an encoded copy of
 * the whole KV state until its client has read it.
 */
export const snapshotStreamsMax = 2;
