/**
 * The `kv` simulation workload: clients get, put, delete and compare-and-set (a txn: compare
 * the value, or version 0 for a missing key, then put) a few keys through random nodes,
 * while the nemesis runs and compactions trim history. The history is judged by the
 * linearizability checker with the kv model; the Raft invariants and "every node applies
 * the same events at every revision" are checked after every event.
 */
import type { Value } from '../check/history.js';
import { kvModel } from '../check/models/kv.js';
import type { Env } from '../env/env.js';
import { KvError } from '../kv/errors.js';
import type { RangeResult, TxnRequest, TxnResult } from '../kv/types.js';
import { faultKinds, type NemesisPlan } from '../sim/nemesis.js';
import type { SimNode } from '../sim/node.js';
import type { SimWorkload, Verdict } from '../sim/run.js';
import {
  isDefinite,
  KvRun,
  kvSimDefaults,
  str,
  utf8,
  type KvCtx,
  type KvSimApp,
  type KvSimOptions,
} from './kv-app.js';
import { judgeHistory } from './judge.js';

/**
 * `kv-quota`: the kv workload with a space quota every write soon reaches between two
 * compactions, and an operator who disarms now and then — NOSPACE raised, replicated,
 * refusing writes, disarmed, under the same faults and checks. Snapshots are due by bytes
 * too (about every 40 entries, before the count of 50), and the entries kept for catching
 * up are bounded by bytes (about 5 of the 10).
 */
export const kvQuotaOptions: Partial<KvSimOptions> = {
  quotaBytes: 4_000,
  disarmEveryMsMean: 700,
  snapshotLogBytes: 1_000,
  snapshotCatchUpBytes: 120,
};

export function kvWorkload(options: Partial<KvSimOptions> = {}): SimWorkload<KvSimApp> {
  const run = new KvRun({ ...kvSimDefaults, ...options });
  const o = run.o;

  const client = (ctx: KvCtx, process: number): void => {
    if (ctx.phase !== 'safety') return;
    const r = ctx.random;
    const key = `k${r.int(o.keys)}`;
    const roll = r.float();
    const f = roll < 0.4 ? 'get' : roll < 0.7 ? 'put' : roll < 0.8 ? 'delete' : 'cas';
    const value = String(r.int(10));
    const from = r.chance(0.3) ? '' : String(r.int(10));
    const input: Value = f === 'get' || f === 'delete' ? null : f === 'put' ? value : [from, value];
    run.record(process, 'invoke', f, key, input);
    run.operate<unknown>(
      ctx,
      r.int(ctx.cluster.size),
      (node, reply) => {
        const k = utf8(key);
        switch (f) {
          case 'get':
            return node.range({ key: k }, reply);
          case 'put':
            return node.put({ key: k, value: utf8(value) }, reply);
          case 'delete':
            return node.deleteRange({ key: k }, reply);
          case 'cas': {
            // etcd: a value compare on a missing key always fails, so "" (missing) compares
            // the version with 0 instead.
            const txn: TxnRequest = {
              compare: [
                from === ''
                  ? { key: k, result: 'equal', target: 'version', version: 0 }
                  : { key: k, result: 'equal', target: 'value', value: utf8(from) },
              ],
              success: [{ put: { key: k, value: utf8(value) } }],
              failure: [],
            };
            return node.txn(txn, reply);
          }
        }
      },
      (outcome) => {
        let type: 'ok' | 'fail' | 'info' = 'ok';
        let output: Value = input;
        if (outcome.error instanceof KvError && outcome.error.kvCode === 'no-space')
          run.refusedNoSpace++;
        if (outcome.error !== undefined) type = isDefinite(outcome.error) ? 'fail' : 'info';
        else if (outcome.timedOut === true) type = 'info';
        else if (outcome.down === true) type = 'fail';
        else if (f === 'get') {
          const kv = (outcome.result as RangeResult).kvs[0];
          output = kv === undefined ? '' : str(kv.value);
        } else if (f === 'cas') output = (outcome.result as TxnResult).succeeded;
        run.record(process, type, f, key, output);
        const next = type === 'info' ? run.nextProcess++ : process;
        ctx.world.after(r.exponential(o.thinkMsMean), () => client(ctx, next));
      },
    );
  };

  return {
    name: o.quotaBytes > 0 ? 'kv-quota' : 'kv',
    faults: faultKinds,
    livenessMsMax: o.livenessMsMax,
    create: (env: Env, node: SimNode<KvSimApp>, plan: NemesisPlan) => run.create(env, node, plan),
    start(ctx) {
      run.start(ctx);
      for (let p = 0; p < o.clients; p++) {
        const process = run.nextProcess++;
        ctx.world.after(ctx.random.exponential(o.thinkMsMean), () => client(ctx, process));
      }
    },
    converged: (ctx) => run.pending === 0 && run.invariants.converged(ctx),
    check(ctx, converged): Verdict {
      const problems = run.finish(ctx, converged);
      // Where snapshots compacted the Raft log to, on the node that got furthest.
      const logFrom = Math.max(
        ...ctx.cluster.nodes.map((n) => n.app?.driver?.node.raft.log.firstIndex() ?? 1),
      );
      const judged = judgeHistory('kv workload', run.events, kvModel);
      if (judged.problem !== undefined) problems.push(judged.problem);
      return {
        ok: problems.length === 0,
        problems,
        summary: [
          `operations: ${judged.summary}`,
          `revisions: ${run.history.size}; compactions: ${run.compactions}; Raft log compacted to ${logFrom - 1};${o.quotaBytes > 0 ? ` writes refused for space: ${run.refusedNoSpace}; alarms disarmed: ${run.disarmed};` : ''} leaders: ${run.invariants.leaderTerms} terms; membership changes: ${run.invariants.membershipChanges} (${run.invariants.nodesAdded} adding a node)`,
        ],
      };
    },
  };
}
