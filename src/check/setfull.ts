/**
 * The set-full checker (after Jepsen's): elements are added to a set and the set is read on
 * many nodes over time. It reports, for every acknowledged add:
 * - lost: absent from every node's final read;
 * - never visible on some node: absent from at least one node's final read;
 * - stable visibility latency: from acknowledgement until every later read holds it.
 * A failed add (definitely did not happen) that shows up in any read, and any value nobody
 * added, are errors too. Indeterminate adds (info) may or may not appear.
 */

export type SetValue = number | string;

export interface SetAdd {
  value: SetValue;
  node: string;
  invokeMs: number;
  /** When the ok or fail arrived; undefined for an indeterminate add. */
  completeMs: number | undefined;
  outcome: 'ok' | 'fail' | 'info';
}

export interface SetRead {
  node: string;
  timeMs: number;
  values: ReadonlySet<SetValue>;
}

export interface SetFullResult {
  ok: boolean;
  acknowledged: number;
  indeterminate: number;
  failed: number;
  lost: SetValue[];
  neverVisible: { value: SetValue; missingOn: string[] }[];
  failedButVisible: SetValue[];
  phantom: SetValue[];
  stableLatencyMs: { median: number; p99: number; max: number } | undefined;
  /** Sentences a person can follow; empty when ok. */
  problems: string[];
}

const listed = (values: readonly SetValue[], max = 10): string =>
  values.slice(0, max).join(', ') + (values.length > max ? `, … (${values.length} in all)` : '');

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function checkSetFull(
  adds: readonly SetAdd[],
  reads: readonly SetRead[],
  finalReads: readonly SetRead[],
): SetFullResult {
  const added = new Map<SetValue, SetAdd>();
  for (const add of adds) added.set(add.value, add);
  const acked = adds.filter((a) => a.outcome === 'ok');
  const failed = adds.filter((a) => a.outcome === 'fail');

  const lost: SetValue[] = [];
  const neverVisible: { value: SetValue; missingOn: string[] }[] = [];
  for (const add of acked) {
    const missingOn = finalReads.filter((r) => !r.values.has(add.value)).map((r) => r.node);
    if (missingOn.length === finalReads.length && finalReads.length > 0) lost.push(add.value);
    else if (missingOn.length > 0) neverVisible.push({ value: add.value, missingOn });
  }

  const all = [...reads, ...finalReads];
  const failedButVisible = failed
    .filter((a) => all.some((r) => r.values.has(a.value)))
    .map((a) => a.value);
  const phantomSet = new Set<SetValue>();
  for (const read of all) for (const v of read.values) if (!added.has(v)) phantomSet.add(v);
  const phantom = [...phantomSet];

  // Stable latency: walk reads from the latest back; the last read lacking a value bounds
  // the moment from which every read held it.
  const ordered = [...reads].sort((a, b) => a.timeMs - b.timeMs);
  const lastMiss = new Map<SetValue, number>();
  const pending = new Set(acked.map((a) => a.value));
  for (let i = ordered.length - 1; i >= 0 && pending.size > 0; i--) {
    const read = ordered[i]!;
    for (const v of pending) {
      if (!read.values.has(v)) {
        lastMiss.set(v, read.timeMs);
        pending.delete(v);
      }
    }
  }
  const latencies: number[] = [];
  for (const add of acked) {
    if (lost.includes(add.value)) continue;
    const miss = lastMiss.get(add.value);
    const ackMs = add.completeMs ?? add.invokeMs;
    latencies.push(Math.max(0, (miss ?? ackMs) - ackMs));
  }
  latencies.sort((a, b) => a - b);

  const problems: string[] = [];
  if (lost.length > 0)
    problems.push(
      `${lost.length} acknowledged values lost (on no node at the end): ${listed(lost)}`,
    );
  for (const { value, missingOn } of neverVisible.slice(0, 10)) {
    problems.push(`acknowledged value ${value} never became visible on ${missingOn.join(', ')}`);
  }
  if (neverVisible.length > 10)
    problems.push(`… ${neverVisible.length} values missing on some node in all`);
  if (failedButVisible.length > 0)
    problems.push(`failed adds visible in reads: ${listed(failedButVisible)}`);
  if (phantom.length > 0) problems.push(`values read that nobody added: ${listed(phantom)}`);

  return {
    ok: problems.length === 0,
    acknowledged: acked.length,
    indeterminate: adds.filter((a) => a.outcome === 'info').length,
    failed: failed.length,
    lost,
    neverVisible,
    failedButVisible,
    phantom,
    stableLatencyMs:
      latencies.length === 0
        ? undefined
        : {
            median: quantile(latencies, 0.5),
            p99: quantile(latencies, 0.99),
            max: latencies[latencies.length - 1]!,
          },
    problems,
  };
}
