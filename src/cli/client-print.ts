/**
 * How the client commands print what the server answered, in etcdctl 3.5's three formats:
 * - simple (the default): printer_simple.go — "OK", a key line then a value line, lease ids
 *   as %016x, member ids as %x, one comma-separated line per member or endpoint;
 * - json: printer_json.go — Go's encoding/json of the response struct (see gojson.ts);
 * - table: printer_table.go — member list and endpoint status/health as a bordered table,
 *   every other command as in simple.
 */
import {
  goEmbeddedHeader,
  goInt,
  goJsonStringify,
  goMessage,
  type GoValue,
} from '../client/gojson.js';
import { leaseHex, memberHex } from '../client/requests.js';
import type {
  AlarmResponse,
  DeleteRangeResponse,
  KeyValue,
  LeaseGrantResponse,
  LeaseKeepAliveResponse,
  LeaseLeasesResponse,
  LeaseRevokeResponse,
  LeaseTimeToLiveResponse,
  Member,
  MemberAddResponse,
  MembersResponse,
  MoveLeaderResponse,
  PutResponse,
  RangeResponse,
  StatusResponse,
  TxnResponse,
  WatchResponse,
} from '../client/types.js';
import type { OutputFormat } from './client-common.js';
import type { CliContext } from './context.js';

export interface EndpointHealth {
  endpoint: string;
  health: boolean;
  /** Go's time.Duration text, e.g. "1.234567ms". */
  took: string;
  error: string;
}

/** etcdctl's snapshot.Status (3.4): what `snapshot status` prints. */
export interface SnapshotStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
}

export interface EndpointStatus {
  endpoint: string;
  status: StatusResponse;
}

const text = (bytes: Buffer): string => bytes.toString('utf8');

export class Printer {
  constructor(
    private readonly ctx: CliContext,
    readonly format: OutputFormat,
    /** get --print-value-only: values without their keys (simple only). */
    private readonly valueOnly = false,
  ) {}

  get json(): boolean {
    return this.format === 'json';
  }

  get(r: RangeResponse, countOnly = false): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.RangeResponse', r));
    // etcdctl refuses --count-only unless -w fields; here simple prints the count instead.
    if (countOnly) return this.ctx.out(r.count);
    for (const kv of r.kvs) this.kv(kv);
  }

  put(r: PutResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.PutResponse', r));
    this.ctx.out('OK');
    if (r.prevKv !== null) this.kv(r.prevKv);
  }

  del(r: DeleteRangeResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.DeleteRangeResponse', r));
    this.ctx.out(r.deleted);
    for (const kv of r.prevKvs) this.kv(kv);
  }

  txn(r: TxnResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.TxnResponse', r));
    this.txnSimple(r);
  }

  private txnSimple(r: TxnResponse): void {
    this.ctx.out(r.succeeded ? 'SUCCESS' : 'FAILURE');
    for (const op of r.responses) {
      this.ctx.out('');
      if (op.responseRange) this.get(op.responseRange);
      else if (op.responsePut) this.put(op.responsePut);
      else if (op.responseDeleteRange) this.del(op.responseDeleteRange);
      else if (op.responseTxn) this.txnSimple(op.responseTxn);
    }
  }

  /** One watch response with events (clientv3 hands etcdctl no others). */
  watch(r: WatchResponse): void {
    if (this.json) {
      // clientv3.WatchResponse (3.5): Header is a value, the rest have no json tags.
      return this.printJson({
        Header: r.header === null ? {} : goMessage('etcdserverpb.ResponseHeader', r.header),
        Events: r.events.length === 0 ? null : r.events.map((e) => goMessage('mvccpb.Event', e)),
        CompactRevision: goInt(r.compactRevision),
        Canceled: r.canceled,
        Created: r.created,
      });
    }
    for (const event of r.events) {
      this.ctx.out(event.type);
      if (event.prevKv !== null) this.kv(event.prevKv);
      if (event.kv !== null) this.kv(event.kv);
    }
  }

  grant(r: LeaseGrantResponse): void {
    if (this.json)
      return this.printJson({
        ...goEmbeddedHeader(r.header),
        ID: goInt(r.ID),
        TTL: goInt(r.TTL),
        Error: r.error,
      });
    this.ctx.out(`lease ${leaseHex(r.ID)} granted with TTL(${r.TTL}s)`);
  }

  revoke(id: string, r: LeaseRevokeResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.LeaseRevokeResponse', r));
    this.ctx.out(`lease ${leaseHex(id)} revoked`);
  }

  keepAlive(r: LeaseKeepAliveResponse): void {
    if (this.json)
      return this.printJson({ ...goEmbeddedHeader(r.header), ID: goInt(r.ID), TTL: goInt(r.TTL) });
    this.ctx.out(`lease ${leaseHex(r.ID)} keepalived with TTL(${r.TTL})`);
  }

  timeToLive(r: LeaseTimeToLiveResponse, keys: boolean): void {
    if (this.json)
      return this.printJson({
        ...goEmbeddedHeader(r.header),
        id: goInt(r.ID),
        ttl: goInt(r.TTL),
        'granted-ttl': goInt(r.grantedTTL),
        keys: r.keys.length === 0 ? null : r.keys.map((k) => k.toString('base64')),
      });
    if (r.grantedTTL === '0' && r.TTL === '-1')
      return this.ctx.out(`lease ${leaseHex(r.ID)} already expired`);
    let line = `lease ${leaseHex(r.ID)} granted with TTL(${r.grantedTTL}s), remaining(${r.TTL}s)`;
    if (keys) line += `, attached keys([${r.keys.map(text).join(' ')}])`;
    this.ctx.out(line);
  }

  leases(r: LeaseLeasesResponse): void {
    if (this.json)
      return this.printJson({
        ...goEmbeddedHeader(r.header),
        leases: r.leases.map((l) => ({ id: goInt(l.ID) })),
      });
    this.ctx.out(`found ${r.leases.length} leases`);
    for (const lease of r.leases) this.ctx.out(leaseHex(lease.ID));
  }

  memberAdd(r: MemberAddResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.MemberAddResponse', r));
    const learner = r.member?.isLearner === true ? ' as learner ' : ' ';
    const cluster = memberHex(r.header?.clusterId ?? '0').padStart(16);
    this.ctx.out(
      `Member ${memberHex(r.member?.ID ?? '0').padStart(16)} added${learner}to cluster ${cluster}`,
    );
  }

  memberChanged(verb: 'removed from' | 'promoted in', id: string, r: MembersResponse): void {
    const type = verb === 'removed from' ? 'MemberRemoveResponse' : 'MemberPromoteResponse';
    if (this.json) return this.printJson(goMessage(`etcdserverpb.${type}`, r));
    const cluster = memberHex(r.header?.clusterId ?? '0').padStart(16);
    this.ctx.out(`Member ${memberHex(id).padStart(16)} ${verb} cluster ${cluster}`);
  }

  memberList(r: MembersResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.MemberListResponse', r));
    const header = ['ID', 'Status', 'Name', 'Peer Addrs', 'Client Addrs', 'Is Learner'];
    this.rows(header, r.members.map(memberRow));
  }

  /** etcdctl prints each alarm in its protobuf text form (gogo's, with a trailing space). */
  alarms(r: AlarmResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.AlarmResponse', r));
    for (const a of r.alarms) this.ctx.out(`memberID:${a.memberID} alarm:${a.alarm} `);
  }

  endpointHealth(list: readonly EndpointHealth[]): void {
    if (this.json)
      return this.printJson(
        list.map((h) => ({
          endpoint: h.endpoint,
          health: h.health,
          took: h.took,
          ...(h.error === '' ? {} : { error: h.error }),
        })),
      );
    if (this.format === 'table') {
      const rows = list.map((h) => [h.endpoint, String(h.health), h.took, h.error]);
      return this.table(['endpoint', 'health', 'took', 'error'], rows);
    }
    for (const h of list) {
      if (h.error === '')
        this.ctx.out(`${h.endpoint} is healthy: successfully committed proposal: took = ${h.took}`);
      else this.ctx.err(`${h.endpoint} is unhealthy: failed to commit proposal: ${h.error}`);
    }
  }

  endpointStatus(list: readonly EndpointStatus[]): void {
    if (this.json)
      return this.printJson(
        list.map((s) => ({
          Endpoint: s.endpoint,
          Status: goMessage('etcdserverpb.StatusResponse', s.status),
        })),
      );
    const header = ['endpoint', 'ID', 'version', 'db size', 'is leader', 'is learner'];
    header.push('raft term', 'raft index', 'raft applied index', 'errors');
    this.rows(header, list.map(statusRow));
  }

  moveLeader(from: string, to: string, r: MoveLeaderResponse): void {
    if (this.json) return this.printJson(goMessage('etcdserverpb.MoveLeaderResponse', r));
    this.ctx.out(`Leadership transferred from ${memberHex(from)} to ${memberHex(to)}`);
  }

  /** etcdctl's `snapshot status`: one row; json is Go's encoding of snapshot.Status. */
  snapshotStatus(s: SnapshotStatus): void {
    if (this.json)
      return this.printJson({
        hash: goInt(s.hash),
        revision: goInt(s.revision),
        totalKey: goInt(s.totalKey),
        totalSize: goInt(s.totalSize),
      });
    const row = [
      s.hash.toString(16),
      String(s.revision),
      String(s.totalKey),
      humanBytes(s.totalSize),
    ];
    this.rows(['hash', 'revision', 'total keys', 'total size'], [row]);
  }

  private kv(kv: KeyValue): void {
    if (!this.valueOnly) this.ctx.out(text(kv.key));
    this.ctx.out(text(kv.value));
  }

  private printJson(value: GoValue): void {
    this.ctx.out(goJsonStringify(value));
  }

  /** Simple: one comma-separated line per row; table: a bordered table. */
  private rows(header: string[], rows: string[][]): void {
    if (this.format === 'table') return this.table(header, rows);
    for (const row of rows) this.ctx.out(row.join(', '));
  }

  /** olekukonko/tablewriter as etcdctl sets it up: upper-case centred headers, cells right. */
  private table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) =>
      Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)),
    );
    const border = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
    const center = (s: string, w: number): string => {
      const left = Math.floor((w - s.length) / 2);
      return ' '.repeat(left) + s + ' '.repeat(w - s.length - left);
    };
    this.ctx.out(border);
    this.ctx.out(`|${header.map((h, i) => ` ${center(h.toUpperCase(), widths[i]!)} `).join('|')}|`);
    this.ctx.out(border);
    for (const row of rows)
      this.ctx.out(`|${widths.map((w, i) => ` ${(row[i] ?? '').padStart(w)} `).join('|')}|`);
    this.ctx.out(border);
  }
}

function memberRow(m: Member): string[] {
  return [
    memberHex(m.ID),
    m.name === '' ? 'unstarted' : 'started',
    m.name,
    m.peerURLs.join(','),
    m.clientURLs.join(','),
    String(m.isLearner),
  ];
}

function statusRow(s: EndpointStatus): string[] {
  const r = s.status;
  return [
    s.endpoint,
    memberHex(r.header?.memberId ?? '0'),
    r.version,
    humanBytes(Number(r.dbSize)),
    String(r.leader === (r.header?.memberId ?? '')),
    String(r.isLearner),
    r.raftTerm,
    r.raftIndex,
    r.raftAppliedIndex,
    r.errors.join(', '),
  ];
}

/** go-humanize's Bytes: SI units, one decimal below 10. */
export function humanBytes(bytes: number): string {
  if (bytes < 10) return `${bytes} B`;
  const sizes = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  const e = Math.min(Math.floor(Math.log(bytes) / Math.log(1000)), sizes.length - 1);
  const value = Math.floor((bytes / 1000 ** e) * 10 + 0.5) / 10;
  if (value < 10) return `${value.toFixed(1)} ${sizes[e]}`;
  // Go's %.0f rounds a half to even (20.5 → "20"); toFixed would round it up.
  const whole = value % 1 === 0.5 ? 2 * Math.round(value / 2) : Math.round(value);
  return `${whole} ${sizes[e]}`;
}

/** Go's time.Duration.String() of a span in nanoseconds: "812.3µs", "1.234567ms", "2.5s". */
export function goDuration(ns: bigint): string {
  if (ns === 0n) return '0s';
  const fraction = (value: bigint, digits: number): string => {
    const scale = 10n ** BigInt(digits);
    const rest = (value % scale).toString().padStart(digits, '0').replace(/0+$/, '');
    return `${value / scale}${rest === '' ? '' : `.${rest}`}`;
  };
  if (ns < 1_000n) return `${ns}ns`;
  if (ns < 1_000_000n) return `${fraction(ns, 3)}µs`;
  if (ns < 1_000_000_000n) return `${fraction(ns, 6)}ms`;
  const hours = ns / 3_600_000_000_000n;
  const minutes = (ns / 60_000_000_000n) % 60n;
  const seconds = `${fraction(ns % 60_000_000_000n, 9)}s`;
  if (hours > 0n) return `${hours}h${minutes}m${seconds}`;
  return minutes > 0n ? `${minutes}m${seconds}` : seconds;
}
