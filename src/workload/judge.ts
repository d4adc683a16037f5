/**
 * Judging a workload's client history with the linearizability checker, the same way for
 * every Raft-backed workload: a deterministic budget and one sentence per problem.
 */
import type { HistoryEvent } from '../check/history.js';
import { checkHistory } from '../check/linearizability.js';
import type { Model } from '../check/model.js';

/**
 * The check's budget, in the checker's clock reads (see judgeHistory). 100,000 gave up on
 * register seed 148 at 60 s (264 indeterminate operations under heavy message loss), a
 * linearizable history that needs fewer than 1,000,000; a violation is still reported as
 * soon as it is found, so the budget only bounds how long a hard history is searched.
 */
const checkerBudgetReads = 1_000_000;

export interface Judgement {
  verdict: string;
  /** Why the history fails, when it does (not linearizable, or the checker gave up). */
  problem: string | undefined;
  /** "N ok, N failed, N indeterminate; history <verdict>" */
  summary: string;
}

export function judgeHistory<S>(
  source: string,
  events: HistoryEvent[],
  model: Model<S>,
): Judgement {
  let reads = 0;
  const result = checkHistory(
    { source, timeUnit: 'ns', events },
    model,
    // A deterministic budget: the "clock" counts the checker's clock reads (one per
    // clockCheckEverySteps search steps), so a verdict never depends on machine speed.
    { clock: () => reads++, timeoutMs: checkerBudgetReads, stopAtFirstViolation: true },
  );
  let problem: string | undefined;
  if (result.verdict === 'not-linearizable') {
    const bad = result.partitions.find((p) => p.verdict === 'not-linearizable');
    problem = `history not linearizable (key ${bad?.key ?? '?'}): ${bad?.failure?.unplaceable[0]?.reason ?? ''}`;
  } else if (result.verdict === 'unknown') {
    problem = 'linearizability check gave up (unknown)';
  }
  const ops = events.filter((e) => e.type !== 'invoke');
  const count = (t: string): number => ops.filter((e) => e.type === t).length;
  return {
    verdict: result.verdict,
    problem,
    summary: `${count('ok')} ok, ${count('fail')} failed, ${count('info')} indeterminate; history ${result.verdict}`,
  };
}
