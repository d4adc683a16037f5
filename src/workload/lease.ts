/**
 * The `lease` simulation workload. Each client grants a lease, attaches a few keys to it,
 * keeps it alive through random nodes for a while, then revokes it or walks away and lets
 * it expire; then it starts again. Reads of its keys go on meanwhile.
 *
 * Checked:
 * - no lease expires early: a revocation the client did not ask for applies no sooner than
 *   the lease's TTL after the client sent its last acknowledged keep-alive (or the grant),
 *   less the clock-drift allowance (1e-3, the simulator's drift bound) — across leader
 *   changes, pauses and restarts. A mass revocation after a leader change breaks this;
 * - a key is never visible after its lease's revocation applied: on every node, right after
 *   the revocation applies, no key carries the lease; and no linearizable read at or after
 *   the revocation's revision returns a key with it;
 * - liveness: once faults heal and the clients stop, every lease expires and is revoked.
 */
import type { Env } from '../env/env.js';
import { KvError } from '../kv/errors.js';
import type { RangeResult } from '../kv/types.js';
import { faultKinds, type NemesisPlan } from '../sim/nemesis.js';
import type { SimNode } from '../sim/node.js';
import type { SimWorkload, Verdict } from '../sim/run.js';
import {
  KvRun,
  kvSimDefaults,
  str,
  utf8,
  type KvCtx,
  type KvSimApp,
  type KvSimOptions,
} from './kv-app.js';

export const leaseDriftAllowance = 1e-3;

interface LeaseLife {
  id: number;
  ttlMs: number;
  /** World time at which the last acknowledged grant or keep-alive was sent. */
  lastAckedSendMs: number;
  revokeAsked: boolean;
  /** Revision after the revocation applied (first node), if it did. */
  revokedAt: number | undefined;
  keys: string[];
}

/** World time before which the lease must not expire: its TTL after the last acknowledged send, less drift (1 ms slack). */
const expiresNoSoonerThan = (life: LeaseLife): number =>
  life.lastAckedSendMs + life.ttlMs * (1 - leaseDriftAllowance) - 1;

export function leaseWorkload(options: Partial<KvSimOptions> = {}): SimWorkload<KvSimApp> {
  const run = new KvRun({ ...kvSimDefaults, clients: 5, compactEveryMsMean: 0, ...options });
  const o = run.o;
  const leases = new Map<number, LeaseLife>();
  let expired = 0;
  let revokedByClient = 0;
  let keepAlives = 0;
  let readsChecked = 0;
  let worldNow = (): number => 0;

  const fail = (message: string): never => run.invariants.fail(message);

  const observeRevoked = (node: SimNode<KvSimApp>, id: number, now: number): void => {
    const kv = node.app?.node;
    if (kv === undefined) return;
    const all = kv.machine.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) });
    const left = all.kvs.find((k) => k.lease === id);
    if (left !== undefined)
      fail(`${node.id}: key ${str(left.key)} still carries lease ${id} after its revocation`);
    const life = leases.get(id);
    if (life === undefined || life.revokedAt !== undefined) return;
    life.revokedAt = kv.machine.revision();
    if (life.revokeAsked) return void revokedByClient++;
    expired++;
    const earliest = expiresNoSoonerThan(life);
    if (now < earliest)
      fail(
        `lease ${id} (ttl ${life.ttlMs} ms) revoked at ${now.toFixed(1)} ms, ${(earliest - now).toFixed(1)} ms before its TTL ran out (last keep-alive sent at ${life.lastAckedSendMs.toFixed(1)} ms)`,
      );
  };

  const client = (ctx: KvCtx, c: number, round: number): void => {
    if (ctx.phase !== 'safety') return;
    const r = ctx.random;
    const ttl = 1 + r.int(3);
    const sentAt = ctx.world.now;
    run.operate<{ id: number; ttl: number }>(
      ctx,
      r.int(ctx.cluster.size),
      (node, reply) => node.leaseGrant({ ttl }, reply),
      (outcome) => {
        const granted = outcome.result;
        if (granted === undefined) {
          ctx.world.after(r.exponential(50), () => client(ctx, c, round + 1));
          return;
        }
        const life: LeaseLife = {
          id: granted.id,
          ttlMs: granted.ttl * 1000,
          lastAckedSendMs: sentAt,
          revokeAsked: false,
          revokedAt: undefined,
          keys: [],
        };
        leases.set(life.id, life);
        const keys = 1 + r.int(3);
        for (let k = 0; k < keys; k++) {
          const key = `l/${c}/${round}/${k}`;
          life.keys.push(key);
          run.operate(
            ctx,
            r.int(ctx.cluster.size),
            (node, reply) => node.put({ key: utf8(key), value: utf8('v'), lease: life.id }, reply),
            () => undefined,
          );
        }
        const lifetimeMs = life.ttlMs * (0.5 + 2.5 * r.float());
        keepAlive(ctx, c, round, life, ctx.world.now + lifetimeMs);
      },
    );
  };

  const keepAlive = (
    ctx: KvCtx,
    c: number,
    round: number,
    life: LeaseLife,
    until: number,
  ): void => {
    const r = ctx.random;
    ctx.world.after(life.ttlMs / 3, () => {
      if (ctx.phase !== 'safety' || life.revokedAt !== undefined) return;
      if (ctx.world.now >= until) {
        if (r.chance(0.3)) {
          life.revokeAsked = true;
          run.operate(
            ctx,
            r.int(ctx.cluster.size),
            (node, reply) => node.leaseRevoke(life.id, reply),
            () => undefined,
          );
        }
        // Walk away (or revoked): a new lease after a pause.
        ctx.world.after(r.exponential(100), () => client(ctx, c, round + 1));
        return;
      }
      const sentAt = ctx.world.now;
      run.operate<number>(
        ctx,
        r.int(ctx.cluster.size),
        (node, reply) => node.leaseKeepAlive(life.id, reply),
        (outcome) => {
          if (outcome.result !== undefined) {
            keepAlives++;
            life.lastAckedSendMs = Math.max(life.lastAckedSendMs, sentAt);
          } else if (
            outcome.error instanceof KvError &&
            outcome.error.kvCode === 'lease-not-found'
          ) {
            // Legitimate once the TTL ran out (the leader may be revoking it); not before.
            const earliest = expiresNoSoonerThan(life);
            if (!life.revokeAsked && life.revokedAt === undefined && sentAt < earliest)
              fail(
                `keep-alive of lease ${life.id} sent at ${sentAt.toFixed(1)} ms refused as not found before its TTL ran out (${earliest.toFixed(1)} ms)`,
              );
          }
        },
      );
      read(ctx, life);
      keepAlive(ctx, c, round, life, until);
    });
  };

  /** A linearizable read of one of the lease's keys: gone once the revocation applied. */
  const read = (ctx: KvCtx, life: LeaseLife): void => {
    const key = ctx.random.pick(life.keys);
    run.operate<RangeResult & { revision: number }>(
      ctx,
      ctx.random.int(ctx.cluster.size),
      (node, reply) => node.range({ key: utf8(key) }, reply),
      (outcome) => {
        const result = outcome.result;
        if (result === undefined) return;
        readsChecked++;
        const kv = result.kvs[0];
        if (kv === undefined || kv.lease === 0) return;
        const owner = leases.get(kv.lease);
        if (owner?.revokedAt !== undefined && result.revision >= owner.revokedAt)
          fail(
            `read of ${key} at revision ${result.revision} returned it with lease ${kv.lease}, revoked at revision ${owner.revokedAt}`,
          );
      },
    );
  };

  return {
    name: 'lease',
    faults: faultKinds,
    livenessMsMax: o.livenessMsMax,
    // The check uses the world's clock (real time), not the node's drifting one.
    create: (env: Env, node: SimNode<KvSimApp>, plan: NemesisPlan) =>
      run.create(env, node, plan, { revoked: (id) => observeRevoked(node, id, worldNow()) }),
    start(ctx) {
      worldNow = () => ctx.world.now;
      run.start(ctx);
      for (let c = 0; c < o.clients; c++)
        ctx.world.after(ctx.random.exponential(o.thinkMsMean), () => client(ctx, c, 0));
    },
    converged(ctx) {
      if (run.pending > 0 || !run.invariants.converged(ctx)) return false;
      const leader = run.invariants.leader(ctx);
      const kv = ctx.cluster.nodes.find((n) => n.app?.driver === leader)?.app?.node;
      return kv !== undefined && kv.machine.leases.ids().length === 0;
    },
    check(ctx, converged): Verdict {
      const problems = run.finish(ctx, converged);
      return {
        ok: problems.length === 0,
        problems,
        summary: [
          `leases: ${leases.size} granted, ${expired} expired, ${revokedByClient} revoked by clients; keep-alives acknowledged: ${keepAlives}; reads checked: ${readsChecked}`,
          `leaders: ${run.invariants.leaderTerms} terms; membership changes: ${run.invariants.membershipChanges} (${run.invariants.nodesAdded} adding a node)`,
        ],
      };
    },
  };
}
