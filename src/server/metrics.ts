/**
 * The node's Prometheus metrics (prom-client), on `/metrics` of the client port. One
 * registry per node process; names are prefixed `chorus_` and follow etcd's where etcd has
 * the same thing (`etcd_server_leader_changes_seen_total` → `chorus_leader_changes_seen_total`).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds: from 100 µs (an in-memory read) to 10 s (a request that timed out). */
const latencyBuckets = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export type Mode = 'starting' | 'serving' | 'degraded' | 'stopped';
export const modes: readonly Mode[] = ['starting', 'serving', 'degraded', 'stopped'];

export class ServerMetrics {
  readonly registry = new Registry();

  readonly term = new Gauge({
    name: 'chorus_raft_term',
    help: 'Current Raft term of this member',
    registers: [this.registry],
  });
  readonly hasLeader = new Gauge({
    name: 'chorus_has_leader',
    help: '1 when this member knows a leader, 0 otherwise',
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: 'chorus_is_leader',
    help: '1 when this member is the leader',
    registers: [this.registry],
  });
  readonly leaderChanges = new Counter({
    name: 'chorus_leader_changes_seen_total',
    help: 'Leader changes this member has seen (a new leader, or none after one)',
    registers: [this.registry],
  });
  readonly committedIndex = new Gauge({
    name: 'chorus_raft_committed_index',
    help: 'Highest Raft log index known committed',
    registers: [this.registry],
  });
  readonly appliedIndex = new Gauge({
    name: 'chorus_raft_applied_index',
    help: 'Highest Raft log index applied to the KV store',
    registers: [this.registry],
  });
  readonly revision = new Gauge({
    name: 'chorus_mvcc_revision',
    help: 'Current MVCC revision of this member',
    registers: [this.registry],
  });
  readonly storeBytes = new Gauge({
    name: 'chorus_mvcc_db_size_in_use_bytes',
    help: "The store's size as the space quota counts it (keys, values and overhead of every retained revision)",
    registers: [this.registry],
  });
  readonly quotaBytes = new Gauge({
    name: 'chorus_server_quota_backend_bytes',
    help: 'The space quota this member enforces (0: none)',
    registers: [this.registry],
  });
  readonly alarms = new Gauge({
    name: 'chorus_alarms_active',
    help: 'Alarms active in the cluster as this member has applied them (NOSPACE, CORRUPT)',
    registers: [this.registry],
  });
  readonly watchers = new Gauge({
    name: 'chorus_watchers',
    help: 'Watchers on this member',
    registers: [this.registry],
  });
  readonly mode = new Gauge({
    name: 'chorus_mode',
    help: "1 for this member's operating mode, 0 for the others",
    labelNames: ['mode'],
    registers: [this.registry],
  });
  readonly proposalsCommitted = new Counter({
    name: 'chorus_proposals_committed_total',
    help: 'Client writes this member proposed (or forwarded) that committed and applied',
    registers: [this.registry],
  });
  readonly proposalsFailed = new Counter({
    name: 'chorus_proposals_failed_total',
    help: 'Client writes refused before commit (no leader, leader changed, timeout, too many requests), by gRPC status',
    labelNames: ['code'],
    registers: [this.registry],
  });
  readonly applySeconds = new Histogram({
    name: 'chorus_apply_duration_seconds',
    help: 'Time to apply one batch of committed entries to the KV store',
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  readonly storageSaveSeconds = new Histogram({
    name: 'chorus_wal_fsync_duration_seconds',
    help: 'Time from handing a Raft save (entries, hard state) to storage until it is durable: the write and its fsync, group committed with others',
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  readonly requests = new Counter({
    name: 'chorus_requests_total',
    help: 'Client requests handled, by method, protocol (grpc or http) and gRPC status code',
    labelNames: ['method', 'protocol', 'code'],
    registers: [this.registry],
  });
  readonly grpcConnections = new Counter({
    name: 'chorus_grpc_connections_total',
    help: 'gRPC connections accepted, by how they are read: "direct" by HTTP/2, "rewritten" through the :authority rewriter (--accept-url-authority; etcdctl 3.4 sends a URL there for endpoint status and --cluster)',
    labelNames: ['path'],
    registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'chorus_request_duration_seconds',
    help: 'Latency of unary client requests, by method and protocol',
    labelNames: ['method', 'protocol'],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  readonly peerRoundTripSeconds = new Histogram({
    name: 'chorus_network_peer_round_trip_time_seconds',
    help: 'Round-trip time of a probe to each peer over the peer network (etcd_network_peer_round_trip_time_seconds); a probe that gets no answer within 1 s counts in chorus_network_peer_probe_failures_total',
    labelNames: ['to'],
    buckets: [
      0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024,
      0.2048, 0.4096, 0.8192,
    ],
    registers: [this.registry],
  });
  readonly tlsHandshakeFailures = new Counter({
    name: 'chorus_tls_handshake_failures_total',
    help: 'TLS handshakes that failed on this member\'s https:// ports (no certificate, another CA\'s, plain TCP), by side: "client" or "peer"',
    labelNames: ['side'],
    registers: [this.registry],
  });
  readonly peerProbeFailures = new Counter({
    name: 'chorus_network_peer_probe_failures_total',
    help: 'Round-trip probes to a peer that failed or went unanswered',
    labelNames: ['to'],
    registers: [this.registry],
  });
  readonly streamsFull = new Counter({
    name: 'chorus_stream_buffer_full_total',
    help: 'Responses after which a stream reported its send buffer full (the client reads slowly): watchers pause, then replay from history',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly streams = new Gauge({
    name: 'chorus_streams',
    help: 'Open watch, keep-alive and snapshot streams, by kind',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  constructor(labels: { member: string }) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry, prefix: 'chorus_process_' });
    for (const m of modes) this.mode.set({ mode: m }, 0);
  }

  setMode(mode: Mode): void {
    for (const m of modes) this.mode.set({ mode: m }, m === mode ? 1 : 0);
  }
}
