/**
 * The `watch` simulation workload. Writers put, delete and write two keys in one txn under
 * a prefix; watchers watch the prefix (or one key) on random nodes, sometimes with prevKv or
 * a filter, sometimes refusing a response (a full buffer) so the node must pause them and
 * replay from history. A watcher moves to another node now and then, and whenever its node
 * restarts, resuming from the revision after the last one it saw.
 *
 * Checked for every watch stream (one creation until it is abandoned or canceled):
 * - revisions strictly increase; each response holds exactly one revision's events;
 * - each revision's events equal the committed ones (as every node applied them), filtered
 *   by the watch's range and filters — all of them, so a revision is never split;
 * - no gap: every committed revision between the stream's start and the last revision it
 *   received that has matching events was delivered;
 * - a cancel for compaction names a compact revision at or above the stream's position.
 * Liveness: once the faults heal, every watcher catches up to the last revision.
 */
import type { Env } from '../env/env.js';
import { inRange, prefixEnd } from '../kv/keys.js';
import type { KvEvent, TxnRequest, WatchCreateRequest } from '../kv/types.js';
import type { WatchResponse } from '../kv/watch.js';
import { faultKinds, type NemesisPlan } from '../sim/nemesis.js';
import type { SimNode } from '../sim/node.js';
import type { SimWorkload, Verdict } from '../sim/run.js';
import {
  KvRun,
  kvSimDefaults,
  renderEvents,
  utf8,
  type KvCtx,
  type KvSimApp,
  type KvSimOptions,
} from './kv-app.js';

export interface WatchSimOptions extends KvSimOptions {
  watchers: number;
  /** Chance that a watcher's sink reports a full buffer for a response. */
  refuseRate: number;
  /** Mean interval between a watcher's voluntary moves to another node. */
  moveEveryMsMean: number;
}

export const watchSimDefaults: WatchSimOptions = {
  ...kvSimDefaults,
  clients: 4,
  watchers: 4,
  refuseRate: 0.05,
  moveEveryMsMean: 1_500,
};

const prefix = 'w/';

interface Stream {
  request: WatchCreateRequest;
  node: number;
  incarnation: number;
  id: number | undefined;
  /** Revision of the last events received (or start − 1). */
  last: number;
  closed: boolean;
}

interface Watcher {
  index: number;
  stream: Stream | undefined;
  /** The revision to resume from. */
  next: number;
  streams: number;
  events: number;
}

export function watchWorkload(options: Partial<WatchSimOptions> = {}): SimWorkload<KvSimApp> {
  const o: WatchSimOptions = { ...watchSimDefaults, ...options };
  const run = new KvRun(o);
  const watchers: Watcher[] = [];
  let compactCancels = 0;
  let refusals = 0;

  const writer = (ctx: KvCtx): void => {
    if (ctx.phase !== 'safety') return;
    const r = ctx.random;
    const key = (): Uint8Array => utf8(`${prefix}${r.int(o.keys)}`);
    const roll = r.float();
    run.operate<unknown>(
      ctx,
      r.int(ctx.cluster.size),
      (node, reply) => {
        if (roll < 0.6) return node.put({ key: key(), value: utf8(String(r.int(100))) }, reply);
        if (roll < 0.75) return node.deleteRange({ key: key() }, reply);
        const a = key();
        const b = utf8(`${prefix}${o.keys + r.int(o.keys)}`);
        const txn: TxnRequest = {
          compare: [],
          success: [
            { put: { key: a, value: utf8(String(r.int(100))) } },
            { put: { key: b, value: utf8(String(r.int(100))) } },
          ],
          failure: [],
        };
        return node.txn(txn, reply);
      },
      () => ctx.world.after(r.exponential(o.thinkMsMean), () => writer(ctx)),
    );
  };

  const fail = (message: string): never => run.invariants.fail(message);

  /** Checks one response against the committed history and the stream's position. */
  const receive = (w: Watcher, s: Stream, response: WatchResponse): void => {
    if (s.closed) return;
    if (response.canceled === true) {
      s.closed = true;
      if (response.compactRevision !== undefined) {
        compactCancels++;
        if (response.compactRevision < s.last + 1)
          fail(
            `watcher ${w.index}: canceled for compaction at ${response.compactRevision}, but it was at ${s.last + 1}`,
          );
        w.next = 0; // start again from the present
      }
      return;
    }
    if (response.events.length === 0) return;
    const revision = response.events[0]!.kv.modRevision;
    if (response.events.some((e) => e.kv.modRevision !== revision))
      fail(`watcher ${w.index}: one response mixes revisions`);
    if (revision <= s.last)
      fail(`watcher ${w.index}: revision ${revision} after ${s.last} (order or duplicate)`);
    // No gap: nothing that matches committed between the last revision and this one.
    for (let rev = s.last + 1; rev < revision; rev++) {
      if (matching(s.request, rev).length > 0)
        fail(`watcher ${w.index}: missed revision ${rev} (got ${revision} after ${s.last})`);
    }
    const want = matching(s.request, revision);
    // etcd: "if the previous KV is already compacted, nothing will be returned" — a
    // missing prevKv is allowed once history at the revision before was compacted.
    const prevGone = run.maxCompacted > revision - 1;
    const prevKv =
      s.request.prevKv === true &&
      !(prevGone && response.events.every((e) => e.prevKv === undefined));
    if (renderEvents(response.events, prevKv) !== renderEvents(want, prevKv))
      fail(
        `watcher ${w.index}: revision ${revision} delivered ${renderEvents(response.events, prevKv)}, committed ${renderEvents(want, prevKv)}`,
      );
    s.last = revision;
    w.next = revision + 1;
    w.events += response.events.length;
  };

  const matching = (request: WatchCreateRequest, revision: number): KvEvent[] => {
    const events = run.revisionEvents.get(revision) ?? [];
    const filters = request.filters ?? [];
    return events.filter((e) => {
      if (e.type === 'put' && filters.includes('noput')) return false;
      if (e.type === 'delete' && filters.includes('nodelete')) return false;
      const end = request.rangeEnd;
      return end === undefined
        ? renderKey(e.kv.key) === renderKey(request.key)
        : inRange(e.kv.key, request.key, end);
    });
  };

  const open = (ctx: KvCtx, w: Watcher): void => {
    const r = ctx.random;
    const single = r.chance(0.2);
    const filter = r.float();
    const request: WatchCreateRequest = {
      key: utf8(single ? `${prefix}${r.int(o.keys)}` : prefix),
      ...(single ? {} : { rangeEnd: prefixEnd(utf8(prefix)) }),
      startRevision: w.next,
      prevKv: r.chance(0.5),
      ...(filter < 0.1
        ? { filters: ['noput' as const] }
        : filter < 0.2
          ? { filters: ['nodelete' as const] }
          : {}),
    };
    const target = r.int(ctx.cluster.size);
    const node = ctx.cluster.nodes[target]!;
    const s: Stream = {
      request,
      node: target,
      incarnation: node.incarnation,
      id: undefined,
      last: (w.next === 0 ? Infinity : w.next) - 1,
      closed: false,
    };
    w.stream = s;
    w.streams++;
    ctx.cluster.call(
      target,
      (app) => {
        const kv = app.node;
        if (kv === undefined) return void (s.closed = true);
        s.incarnation = node.incarnation;
        const sink = (response: WatchResponse): boolean => {
          if (response.created === true) {
            if (s.last === Infinity) s.last = response.revision;
            return true;
          }
          ctx.world.after(0.05, () => receive(w, s, response));
          if (response.events.length === 0 || !r.chance(o.refuseRate)) return true;
          refusals++;
          // A full buffer: resume after a while (the node replays from history).
          ctx.world.after(r.exponential(50), () => {
            if (!s.closed && node.incarnation === s.incarnation && s.id !== undefined)
              node.app?.node?.watches.resume(s.id);
          });
          return false;
        };
        try {
          s.id = kv.watch(request, sink);
        } catch {
          s.closed = true;
        }
      },
      () => (s.closed = true),
    );
  };

  /** Keeps each watcher on a live stream: reopens after a restart, a cancel, or a move. */
  const tend = (ctx: KvCtx, w: Watcher): void => {
    ctx.world.after(50, () => {
      if (ctx.phase === 'done') return;
      const s = w.stream;
      const node = s === undefined ? undefined : ctx.cluster.nodes[s.node];
      const lost =
        s === undefined ||
        s.closed ||
        node === undefined ||
        node.status === 'crashed' ||
        node.incarnation !== s.incarnation;
      const move = ctx.phase === 'safety' && ctx.random.chance(50 / o.moveEveryMsMean);
      if (lost || move) {
        if (s !== undefined && !s.closed) {
          s.closed = true;
          if (s.id !== undefined && node?.status === 'up') node.app?.node?.watches.forget(s.id);
        }
        open(ctx, w);
      }
      tend(ctx, w);
    });
  };

  /** Every watcher has what matched; a stream on a node outside the configuration cannot. */
  const caughtUp = (ctx: KvCtx): boolean => {
    const latest = Math.max(0, ...run.history.keys());
    const members = run.invariants.members(ctx);
    return watchers.every((w) => {
      const s = w.stream;
      if (s === undefined || s.closed) return false;
      if (!members.has(ctx.cluster.nodes[s.node]!.id)) return true;
      for (let rev = s.last + 1; rev <= latest; rev++)
        if (matching(s.request, rev).length > 0) return false;
      return true;
    });
  };

  return {
    name: 'watch',
    faults: faultKinds,
    livenessMsMax: o.livenessMsMax,
    create: (env: Env, node: SimNode<KvSimApp>, plan: NemesisPlan) => run.create(env, node, plan),
    start(ctx) {
      run.start(ctx);
      for (let c = 0; c < o.clients; c++)
        ctx.world.after(ctx.random.exponential(o.thinkMsMean), () => writer(ctx));
      for (let i = 0; i < o.watchers; i++) {
        const w: Watcher = { index: i, stream: undefined, next: 0, streams: 0, events: 0 };
        watchers.push(w);
        open(ctx, w);
        tend(ctx, w);
      }
    },
    converged: (ctx) => run.pending === 0 && run.invariants.converged(ctx) && caughtUp(ctx),
    check(ctx, converged): Verdict {
      const problems = run.finish(ctx, converged);
      if (converged && !caughtUp(ctx)) problems.push('a watcher did not catch up after healing');
      const delivered = watchers.reduce((n, w) => n + w.events, 0);
      const streams = watchers.reduce((n, w) => n + w.streams, 0);
      return {
        ok: problems.length === 0,
        problems,
        summary: [
          `revisions: ${run.history.size}; events delivered: ${delivered} over ${streams} streams; refusals: ${refusals}; canceled by compaction: ${compactCancels}; compactions: ${run.compactions}`,
        ],
      };
    },
  };
}

const renderKey = (key: Uint8Array): string => [...key].join(',');
