/**
 * Verdicts in words a person can follow: for each failing partition, how far a legal order
 * got (the longest linearizable prefix), where it ran out, and why each operation that could
 * come next could not take effect.
 */
import { explainOperationsMax } from './constants.js';
import type { Operation } from './history.js';
import type { CheckResult, Failure, PartitionResult, Verdict } from './linearizability.js';
import type { AnyModel } from './models/index.js';

export function verdictText(verdict: Verdict): string {
  return verdict.replace('-', ' ');
}

/** "#12 process 3 read → 4 (ok, lines 25–31)". */
export function describeOperation(op: Operation, model: AnyModel): string {
  const where =
    op.callLine !== undefined
      ? op.returnLine === undefined
        ? `line ${op.callLine}, never completed`
        : `lines ${op.callLine}–${op.returnLine}`
      : op.returnIndex === undefined
        ? `event ${op.callIndex}, never completed`
        : `events ${op.callIndex}–${op.returnIndex}`;
  const status = op.status === 'info' ? 'indeterminate' : op.status;
  return `#${op.id} process ${String(op.process)} ${model.describeOperation(op)} (${status}, ${where})`;
}

function partitionName(partition: PartitionResult): string {
  return partition.key === undefined ? 'the history' : `key ${JSON.stringify(partition.key)}`;
}

function listed(
  ids: readonly number[],
  ops: readonly Operation[],
  model: AnyModel,
  indent: string,
): string[] {
  const lines = ids
    .slice(0, explainOperationsMax)
    .map((id) => `${indent}${describeOperation(ops[id]!, model)}`);
  if (ids.length > explainOperationsMax)
    lines.push(`${indent}… and ${ids.length - explainOperationsMax} more`);
  return lines;
}

export function explainFailure(
  partition: PartitionResult,
  failure: Failure,
  ops: readonly Operation[],
  model: AnyModel,
): string[] {
  const blocking = ops[failure.blocking]!;
  const lines = [
    `${partitionName(partition)} is not linearizable.`,
    `  The longest linearizable prefix places ${failure.prefix.length} of ${partition.searched} operations; after it ${failure.stateText}.`,
  ];
  if (failure.prefix.length > 0) {
    lines.push('  It ends with:', ...listed(failure.prefix.slice(-3), ops, model, '    '));
  }
  lines.push(
    `  Then ${describeOperation(blocking, model)} completed before any legal order could place it.`,
  );
  if (failure.unplaceable.length > 0) {
    lines.push('  These operations could not take effect next:');
    for (const { id, reason } of failure.unplaceable.slice(0, explainOperationsMax)) {
      lines.push(`    ${describeOperation(ops[id]!, model)}: ${reason}`);
    }
    if (failure.unplaceable.length > explainOperationsMax) {
      lines.push(`    … and ${failure.unplaceable.length - explainOperationsMax} more`);
    }
  }
  if (failure.deadEnds.length > 0) {
    lines.push(
      '  These could take effect next, but every order after them fails:',
      ...listed(failure.deadEnds, ops, model, '    '),
    );
  }
  return lines;
}

/** The whole result as lines of text, verdict first. */
export function explainResult(result: CheckResult, model: AnyModel): string[] {
  const counts = new Map<string, number>();
  for (const p of result.partitions) counts.set(p.verdict, (counts.get(p.verdict) ?? 0) + 1);
  const summary = [...counts].map(([verdict, n]) => `${n} ${verdict}`).join(', ');
  const lines = [
    `${verdictText(result.verdict)}: ${result.operations.length} operations, model ${result.model}, ${result.partitions.length} partition(s) (${summary}), ${result.steps} search steps`,
  ];
  for (const partition of result.partitions) {
    if (partition.failure !== undefined) {
      lines.push(...explainFailure(partition, partition.failure, result.operations, model));
    } else if (partition.verdict === 'unknown') {
      lines.push(`${partitionName(partition)} is unknown: ${partition.note ?? 'undecided'}.`);
    }
  }
  return lines;
}
