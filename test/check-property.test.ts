// Goal: the checker is right on histories whose answer is known by construction. A random
// sequential run, stretched into random overlapping intervals around each operation's
// linearization point, must pass (with some writes made indeterminate and some failed
// operations added that never took effect). Changing one read to a value no one wrote must
// fail. Each failure prints fast-check's seed and path to rerun it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { HistoryEvent, Value } from '../src/check/history.js';
import { checkHistory } from '../src/check/linearizability.js';
import { models, type ModelName } from '../src/check/models/index.js';

interface Planned {
  f: string;
  key: string | undefined;
  input: Value;
  output: Value;
  /** How it ends; `fail` operations never took effect and get no linearization point. */
  end: 'ok' | 'info' | 'fail';
  /** Distances of invocation before and completion after the linearization point. */
  before: number;
  after: number;
}

type Command = {
  kind: 'read' | 'write' | 'cas';
  key: number;
  value: number;
  from: number;
  end: 'ok' | 'info' | 'fail';
};

const commandArb: fc.Arbitrary<Command> = fc.record({
  kind: fc.constantFrom('read' as const, 'write' as const, 'cas' as const),
  key: fc.integer({ min: 0, max: 2 }),
  value: fc.integer({ min: 0, max: 4 }),
  from: fc.integer({ min: 0, max: 4 }),
  end: fc.constantFrom(
    'ok' as const,
    'ok' as const,
    'ok' as const,
    'ok' as const,
    'info' as const,
    'fail' as const,
  ),
});

/** Runs the commands one at a time against a map of registers, recording what each returned. */
function plan(
  commands: readonly Command[],
  spans: readonly [number, number][],
  model: ModelName,
): Planned[] {
  const state = new Map<number, Value>();
  return commands.map((c, i) => {
    const [before, after] = spans[i]!;
    const key = model === 'kv' ? String(c.key) : undefined;
    const slot = model === 'kv' ? c.key : 0;
    const current = state.get(slot) ?? (model === 'kv' ? '' : null);
    const write = model === 'kv' ? `v${c.value}` : c.value;
    const from = model === 'kv' ? `v${c.from}` : c.from;
    // Reads never fail or go indeterminate here: only writes may have an unknown outcome.
    const end = c.kind === 'read' ? 'ok' : c.end;
    const base = { key, end, before, after } as const;
    if (c.kind === 'read')
      return { ...base, f: model === 'kv' ? 'get' : 'read', input: null, output: current };
    if (c.kind === 'write') {
      if (end !== 'fail') state.set(slot, write);
      return { ...base, f: model === 'kv' ? 'put' : 'write', input: write, output: write };
    }
    const applied = current === from;
    if (applied && end !== 'fail') state.set(slot, write);
    return { ...base, f: 'cas', input: [from, write], output: end === 'ok' ? applied : null };
  });
}

/**
 * Operation i takes effect at time 10·i; it is invoked `before` earlier and completes `after`
 * later. Each operation gets the first process that is idle by its invocation.
 */
function toEvents(planned: readonly Planned[]): HistoryEvent[] {
  const raw: { time: number; event: Omit<HistoryEvent, 'index' | 'time'> }[] = [];
  const busyUntil: number[] = [];
  planned.forEach((p, i) => {
    const call = 10 * i - p.before;
    const ret = 10 * i + p.after;
    let process = busyUntil.findIndex((t) => t < call);
    if (process < 0) process = busyUntil.length;
    busyUntil[process] = ret;
    const base = { process, f: p.f, ...(p.key === undefined ? {} : { key: p.key }) };
    raw.push({ time: call, event: { ...base, type: 'invoke', value: p.input } });
    const value =
      p.end === 'ok' ? (p.f === 'cas' ? (p.output === false ? false : true) : p.output) : null;
    raw.push({ time: ret, event: { ...base, type: p.end, value } });
  });
  raw.sort((a, b) => a.time - b.time);
  return raw.map((r, index) => ({ ...r.event, time: r.time + 1_000_000, index }));
}

const historyArb = fc.array(commandArb, { minLength: 1, maxLength: 40 }).chain((commands) =>
  fc.tuple(
    fc.constant(commands),
    fc.array(fc.tuple(fc.integer({ min: 1, max: 45 }), fc.integer({ min: 1, max: 45 })), {
      minLength: commands.length,
      maxLength: commands.length,
    }),
  ),
);

function check(events: HistoryEvent[], model: ModelName): string {
  return checkHistory({ source: 'generated', timeUnit: 'ns', events }, models[model]).verdict;
}

for (const model of ['register', 'kv'] as const) {
  test(`${model}: histories linearizable by construction pass`, () => {
    fc.assert(
      fc.property(historyArb, ([commands, spans]) => {
        assert.equal(check(toEvents(plan(commands, spans, model)), model), 'linearizable');
      }),
      { numRuns: 300 },
    );
  });

  test(`${model}: one read made impossible fails`, () => {
    fc.assert(
      fc.property(historyArb, fc.nat(), ([commands, spans], pick) => {
        const planned = plan(commands, spans, model);
        const reads = planned.filter((p) => p.f === 'read' || p.f === 'get');
        fc.pre(reads.length > 0);
        // No one ever writes 99: a read of it cannot be placed anywhere.
        reads[pick % reads.length]!.output = model === 'kv' ? 'v99' : 99;
        assert.equal(check(toEvents(planned), model), 'not-linearizable');
      }),
      { numRuns: 300 },
    );
  });
}
