/**
 * The linearizability checker: the Wing & Gong search as improved by Lowe ("just-in-time
 * linearization") with memoisation of configurations, run per key (P-compositionality:
 * a history is linearizable iff each object's sub-history is).
 *
 * The search walks a list of call and return entries in real-time order. At a call it tries
 * to linearize that operation now: the model must accept it in the current state, and the
 * configuration (set of linearized operations, model state) must be new — one seen before
 * already failed, which is the memoisation that makes the search practical. At a return it
 * has found an operation that completed before being linearized, so it backtracks.
 */
import { assert } from '../core/assert.js';
import { seededRandom } from '../core/prng.js';
import { clockCheckEverySteps, searchCacheEntriesMax, searchSliceSteps } from './constants.js';
import type { History, Operation } from './history.js';
import { badInput, pairOperations } from './history.js';
import type { AnyModel } from './models/index.js';

export type Verdict = 'linearizable' | 'not-linearizable' | 'unknown';

export interface CheckOptions {
  /** Milliseconds from any fixed origin; injected so the checker itself never reads a clock. */
  clock?: () => number;
  /** Time budget for the whole check; past it the verdict is `unknown`. Needs `clock`. */
  timeoutMs?: number;
  /** Stop at the first partition found not linearizable; the rest are `skipped`. */
  stopAtFirstViolation?: boolean;
}

export interface Unplaceable {
  id: number;
  reason: string;
}

/** Why a partition is not linearizable, from the deepest point the search reached. */
export interface Failure {
  /** The longest linearizable prefix found, in linearization order (operation ids). */
  prefix: number[];
  /** The model state after that prefix, in words. */
  stateText: string;
  /** The operation that completed before it could be placed: where every order ran out. */
  blocking: number;
  /** Operations that could not take effect next, each with the model's reason. */
  unplaceable: Unplaceable[];
  /** Operations that could be placed next, but every continuation after them failed. */
  deadEnds: number[];
}

export interface PartitionResult {
  /** The key shared by the partition's operations; undefined for operations without one. */
  key: string | undefined;
  verdict: Verdict | 'skipped';
  /** Every operation of the partition (ids), including failed ones. */
  operations: number[];
  /** Operations the search had to place (ok ones, and indeterminate ones that may write). */
  searched: number;
  steps: number;
  /** A witness order when linearizable. */
  linearization?: number[];
  failure?: Failure;
  /** Why the verdict is unknown or skipped. */
  note?: string;
}

export interface CheckResult {
  verdict: Verdict;
  model: string;
  operations: Operation[];
  partitions: PartitionResult[];
  steps: number;
}

/** Pairs, validates and checks a history. Malformed operations are BadInputError with the line. */
export function checkHistory(
  history: History,
  model: AnyModel,
  options: CheckOptions = {},
): CheckResult {
  const operations = pairOperations(history);
  for (const op of operations) {
    const reason = model.validate(op);
    if (reason !== undefined) throw badInput(history.source, op.callLine ?? op.returnLine, reason);
  }
  return checkOperations(operations, model, options);
}

export function checkOperations(
  operations: Operation[],
  model: AnyModel,
  options: CheckOptions = {},
): CheckResult {
  assert(
    options.timeoutMs === undefined || options.clock !== undefined,
    'a time budget needs a clock',
  );
  const deadline =
    options.clock !== undefined && options.timeoutMs !== undefined
      ? options.clock() + options.timeoutMs
      : Infinity;
  const budget: Budget = { clock: options.clock, deadline };
  const stopAtFirstViolation = options.stopAtFirstViolation ?? true;
  const runs = [...partitionByKey(operations)].map(
    ([key, ops]) => new PartitionRun(key, ops, model, budget),
  );
  // Partitions take turns in slices of steps, so one hard partition cannot hide a violation
  // that another shows at once (Porcupine gets the same effect from parallel goroutines).
  let stop: string | undefined;
  let active = runs;
  while (active.length > 0 && stop === undefined) {
    for (const run of active) {
      run.advance(searchSliceSteps);
      if (run.result?.verdict === 'unknown') stop = 'not checked: the search budget was spent';
      if (run.result?.verdict === 'not-linearizable' && stopAtFirstViolation) {
        stop = 'not checked: another partition is already not linearizable';
      }
      if (stop !== undefined) break;
    }
    active = active.filter((run) => run.result === undefined);
  }
  const partitions = runs.map((run) => run.result ?? run.abandon(stop!));
  const steps = runs.reduce((sum, run) => sum + run.search.steps, 0);
  return { verdict: overall(partitions), model: model.name, operations, partitions, steps };
}

function overall(partitions: readonly PartitionResult[]): Verdict {
  if (partitions.some((p) => p.verdict === 'not-linearizable')) return 'not-linearizable';
  if (partitions.some((p) => p.verdict !== 'linearizable')) return 'unknown';
  return 'linearizable';
}

/** Operations grouped by key, keys in sorted order (undefined first), each group in call order. */
export function partitionByKey(
  operations: readonly Operation[],
): Map<string | undefined, Operation[]> {
  const groups = new Map<string | undefined, Operation[]>();
  for (const op of operations) {
    const group = groups.get(op.key);
    if (group === undefined) groups.set(op.key, [op]);
    else group.push(op);
  }
  const keys = [...groups.keys()].sort((a, b) =>
    a === b ? 0 : a === undefined ? -1 : b === undefined ? 1 : a < b ? -1 : 1,
  );
  return new Map(keys.map((k) => [k, groups.get(k)!]));
}

interface Budget {
  clock: (() => number) | undefined;
  deadline: number;
}

/** One call or return in the doubly linked list the search edits in place. */
interface Entry {
  /** Index into the partition's searched operations. */
  slot: number;
  call: boolean;
  prev: Entry | undefined;
  next: Entry | undefined;
  /** For a call, its return entry. */
  match: Entry | undefined;
}

function buildList(ops: readonly Operation[]): Entry {
  const points: { position: number; tie: number; entry: Entry }[] = [];
  ops.forEach((op, slot) => {
    const ret: Entry = { slot, call: false, prev: undefined, next: undefined, match: undefined };
    const call: Entry = { slot, call: true, prev: undefined, next: undefined, match: ret };
    // An indeterminate operation may take effect at any later point: its return is at infinity.
    const returns = op.status === 'ok' ? op.returnIndex! : Infinity;
    points.push(
      { position: op.callIndex, tie: slot, entry: call },
      { position: returns, tie: slot, entry: ret },
    );
  });
  points.sort((a, b) => a.position - b.position || a.tie - b.tie);
  const head: Entry = { slot: -1, call: false, prev: undefined, next: undefined, match: undefined };
  let last = head;
  for (const { entry } of points) {
    last.next = entry;
    entry.prev = last;
    last = entry;
  }
  return head;
}

/** Takes a call and its return out of the list (the operation is linearized). */
function lift(call: Entry): void {
  call.prev!.next = call.next;
  if (call.next !== undefined) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next !== undefined) ret.next.prev = ret.prev;
}

/** Puts them back, in the reverse order of `lift`. */
function unlift(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next !== undefined) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next !== undefined) call.next.prev = call;
}

/**
 * Memo of configurations seen: an open-addressing hash table over typed arrays, so adding a
 * configuration allocates nothing but, now and then, a new chunk of bitset storage. The hash
 * is the Zobrist hash of the linearized set mixed with the state's interned id; a hit is
 * confirmed by comparing the state id and every word of the bitset, so a collision never
 * prunes a live branch.
 */
class ConfigurationCache {
  size = 0;
  /**
   * Slots of four words, so a probe reads one cache line: the configuration's hash, its entry
   * number plus one (0 is an empty slot), its state id, and one word of padding.
   */
  private slots = new Int32Array(4 * 1024);
  private mask = 1023;
  /** The entries' bitsets, `chunkEntries` to a chunk, in the order they were added. */
  private readonly chunks: Uint32Array[] = [];
  private readonly chunkEntries: number;

  constructor(private readonly words: number) {
    // About 64 KiB a chunk, at least one entry.
    this.chunkEntries = Math.max(1, Math.floor(16384 / Math.max(1, words)));
  }

  /** Adds the configuration; false when it was already present. */
  add(hash: number, bits: Uint32Array, state: number): boolean {
    const { slots, mask, words, chunkEntries } = this;
    const signed = hash | 0;
    let i = hash & mask;
    for (let e = slots[4 * i + 1]!; e !== 0; e = slots[4 * i + 1]!) {
      if (slots[4 * i] === signed && slots[4 * i + 2] === state) {
        const n = e - 1;
        const chunk = this.chunks[(n / chunkEntries) | 0]!;
        const at = (n % chunkEntries) * words;
        let w = 0;
        while (w < words && chunk[at + w] === bits[w]) w++;
        if (w === words) return false;
      }
      i = (i + 1) & mask;
    }
    const n = this.size++;
    if (n % chunkEntries === 0) this.chunks.push(new Uint32Array(chunkEntries * words));
    this.chunks[(n / chunkEntries) | 0]!.set(bits, (n % chunkEntries) * words);
    slots[4 * i] = signed;
    slots[4 * i + 1] = n + 1;
    slots[4 * i + 2] = state;
    if (this.size * 2 > mask) this.grow();
    return true;
  }

  /** Doubles the table, keeping the load factor at most one half. */
  private grow(): void {
    const old = this.slots;
    const capacity = (old.length / 4) * 2;
    const mask = capacity - 1;
    const slots = new Int32Array(4 * capacity);
    for (let j = 0; j < old.length; j += 4) {
      if (old[j + 1] === 0) continue;
      let i = old[j]! & mask;
      while (slots[4 * i + 1] !== 0) i = (i + 1) & mask;
      slots[4 * i] = old[j]!;
      slots[4 * i + 1] = old[j + 1]!;
      slots[4 * i + 2] = old[j + 2]!;
    }
    this.slots = slots;
    this.mask = mask;
  }
}

/**
 * Dense ids for model states: equal state keys get equal ids, so the memo compares one number.
 * A primitive state (a register's number, a kv string) is looked up by value first, which
 * skips building its key; that is sound because a state's key is a function of the state.
 */
class StateIds {
  private readonly byKey = new Map<string, number>();
  private readonly byPrimitive = new Map<unknown, number>();

  constructor(private readonly stateKey: (state: unknown) => string) {}

  id(state: unknown): number {
    const primitive = state === null || typeof state !== 'object';
    if (primitive) {
      const known = this.byPrimitive.get(state);
      if (known !== undefined) return known;
    }
    const key = this.stateKey(state);
    let id = this.byKey.get(key);
    if (id === undefined) {
      id = this.byKey.size;
      this.byKey.set(key, id);
    }
    if (primitive) this.byPrimitive.set(state, id);
    return id;
  }
}

/** Spreads a state id over 32 bits before it is mixed into the set's Zobrist hash. */
function mixState(id: number): number {
  let h = Math.imul(id + 1, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

/** One partition's search, resumable slice by slice, and its result once decided. */
class PartitionRun {
  readonly search: Search;
  result: PartitionResult | undefined;
  private readonly base: Pick<PartitionResult, 'key' | 'operations' | 'searched'>;

  constructor(key: string | undefined, all: readonly Operation[], model: AnyModel, budget: Budget) {
    // A failed operation never took effect; an indeterminate read constrains nothing.
    const ops = all.filter(
      (op) => op.status !== 'fail' && !(op.status === 'info' && model.readOnly(op)),
    );
    this.base = { key, operations: all.map((o) => o.id), searched: ops.length };
    this.search = new Search(ops, model, budget);
  }

  advance(steps: number): void {
    assert(this.result === undefined, 'a decided partition is not advanced');
    const outcome = this.search.run(steps);
    const common = { ...this.base, steps: this.search.steps };
    if (outcome === 'paused') return;
    if (outcome === 'linearizable') {
      this.result = { ...common, verdict: outcome, linearization: this.search.stackIds() };
    } else if (outcome === 'not-linearizable') {
      this.result = { ...common, verdict: outcome, failure: this.search.explainFailure() };
    } else {
      this.result = { ...common, verdict: 'unknown', note: outcome.note };
    }
  }

  /** The result of a partition left undecided because the check stopped for `note`. */
  abandon(note: string): PartitionResult {
    const verdict = note.includes('budget') ? 'unknown' : 'skipped';
    return { ...this.base, steps: this.search.steps, verdict, note };
  }
}

class Search {
  steps = 0;
  private readonly head: Entry;
  private readonly zobrist: Uint32Array;
  private readonly bits: Uint32Array;
  /** The current linearization: each placed call and the state before it, `depth` deep. */
  private readonly stackCalls: Entry[] = [];
  private readonly stackStates: unknown[] = [];
  private readonly stackStateIds: number[] = [];
  private depth = 0;
  private readonly cache: ConfigurationCache;
  private readonly stateIds: StateIds;
  private bestPrefix: number[] = [];
  private bestState: unknown;
  /** Where the search stands between slices. */
  private state: unknown;
  private stateId: number;
  private setHash = 0;
  private entry: Entry | undefined;

  constructor(
    private readonly ops: readonly Operation[],
    private readonly model: AnyModel,
    private readonly budget: Budget,
  ) {
    this.head = buildList(ops);
    const random = seededRandom(ops.length);
    this.zobrist = Uint32Array.from(ops, () => random.u32());
    this.bits = new Uint32Array(Math.ceil(ops.length / 32));
    this.cache = new ConfigurationCache(this.bits.length);
    this.stateIds = new StateIds((state) => model.stateKey(state));
    this.bestState = model.initial();
    this.state = model.initial();
    this.stateId = this.stateIds.id(this.state);
    this.entry = this.head.next;
  }

  /** Runs at most `stepLimit` more steps; `paused` when the answer is not known yet. */
  run(stepLimit: number): 'paused' | 'linearizable' | 'not-linearizable' | { note: string } {
    const { model, head, bits, zobrist, stackCalls, stackStates, stackStateIds, ops, cache } = this;
    const stateIds = this.stateIds;
    let { state, stateId, setHash, entry, depth, steps } = this;
    const stepEnd = steps + stepLimit;
    let outcome: 'paused' | 'linearizable' | 'not-linearizable' | { note: string } = 'paused';
    while (entry !== undefined) {
      if (steps >= stepEnd) break;
      if (++steps % clockCheckEverySteps === 0) {
        this.steps = steps;
        const note = this.overBudget();
        if (note !== undefined) {
          outcome = { note };
          break;
        }
      }
      if (entry.call) {
        const slot = entry.slot;
        const next = model.step(state, ops[slot]!);
        if (next !== undefined) {
          const word = slot >>> 5;
          const bit = 1 << (slot & 31);
          bits[word]! |= bit;
          const nextId = next === state ? stateId : stateIds.id(next);
          const nextSetHash = (setHash ^ zobrist[slot]!) >>> 0;
          if (cache.add((nextSetHash ^ mixState(nextId)) >>> 0, bits, nextId)) {
            stackCalls[depth] = entry;
            stackStates[depth] = state;
            stackStateIds[depth] = stateId;
            depth++;
            setHash = nextSetHash;
            state = next;
            stateId = nextId;
            lift(entry);
            if (depth > this.bestPrefix.length) this.recordBest(depth, state);
            entry = head.next;
            continue;
          }
          bits[word]! &= ~bit;
        }
        entry = entry.next;
        continue;
      }
      // A return: its operation completed without being linearized. Undo the last choice.
      if (depth === 0) {
        outcome = 'not-linearizable';
        break;
      }
      depth--;
      const call = stackCalls[depth]!;
      const slot = call.slot;
      state = stackStates[depth];
      stateId = stackStateIds[depth]!;
      stackStates[depth] = undefined;
      bits[slot >>> 5]! &= ~(1 << (slot & 31));
      setHash = (setHash ^ zobrist[slot]!) >>> 0;
      unlift(call);
      entry = call.next;
    }
    Object.assign(this, { state, stateId, setHash, entry, depth, steps });
    if (entry === undefined) {
      assert(depth === ops.length, 'an empty list means every operation is linearized');
      return 'linearizable';
    }
    return outcome;
  }

  private overBudget(): string | undefined {
    if (this.cache.size > searchCacheEntriesMax) {
      return `the search memo reached ${searchCacheEntriesMax} configurations after ${this.steps} steps`;
    }
    if (this.budget.clock !== undefined && this.budget.clock() > this.budget.deadline) {
      return `the time budget ran out after ${this.steps} search steps`;
    }
    return undefined;
  }

  private recordBest(depth: number, state: unknown): void {
    this.depth = depth;
    this.bestPrefix = this.stackIds();
    this.bestState = state;
  }

  /** Operation ids of the current linearization, in order. */
  stackIds(): number[] {
    const ids: number[] = [];
    for (let i = 0; i < this.depth; i++) ids.push(this.ops[this.stackCalls[i]!.slot]!.id);
    return ids;
  }

  explainFailure(): Failure {
    const { model, ops } = this;
    const placed = new Set(this.bestPrefix);
    const remaining = ops.filter((op) => !placed.has(op.id));
    assert(remaining.length > 0, 'a failed search leaves operations unplaced');
    const returns = (op: Operation): number => (op.status === 'ok' ? op.returnIndex! : Infinity);
    const blocking = remaining.reduce((a, b) => (returns(b) < returns(a) ? b : a));
    const candidates = remaining.filter((op) => op.callIndex < returns(blocking));
    const unplaceable: Unplaceable[] = [];
    const deadEnds: number[] = [];
    for (const op of candidates) {
      if (model.step(this.bestState, op) === undefined) {
        unplaceable.push({ id: op.id, reason: model.explain(this.bestState, op) });
      } else {
        deadEnds.push(op.id);
      }
    }
    return {
      prefix: this.bestPrefix,
      stateText: model.describeState(this.bestState),
      blocking: blocking.id,
      unplaceable,
      deadEnds,
    };
  }
}
