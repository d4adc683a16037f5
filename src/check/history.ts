/**
 * Histories in the Jepsen style: a flat list of events, each the invocation or completion of
 * one operation by one process. `pairOperations` turns events into operations (one call, at
 * most one completion) and rejects a malformed history with the line and the reason.
 *
 * Semantics of a completion type:
 * - `ok`: the operation took effect, exactly once, between its invocation and completion.
 * - `fail`: the operation definitely did not take effect.
 * - `info`, or no completion at all: indeterminate. It may have taken effect at any point
 *   after its invocation (even after the `info` line), or never.
 */
import { assert } from '../core/assert.js';
import { BadInputError } from '../core/errors.js';
import { historyEventsMax, historyProcessesMax } from './constants.js';

/** A JSON value, as operations carry them. */
export type Value = null | boolean | number | string | readonly Value[];

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';
export type ProcessId = number | string;

export interface HistoryEvent {
  process: ProcessId;
  type: EventType;
  /** The function: read, write, cas, get, put, append, add, enqueue, acquire... */
  f: string;
  /** The object the operation acts on; operations on different keys are independent. */
  key?: string;
  value: Value;
  /** When it happened: nanoseconds for recorded histories, the event's position otherwise. */
  time: number;
  /** Position in the history, 0-based; the order of events is the real-time order. */
  index: number;
  /** 1-based line in the source file, for error messages. */
  line?: number;
}

export interface History {
  /** Where the history came from (a file name), for messages. */
  source: string;
  /** `ns` when the events carry recorded times; `event` when time is only the position. */
  timeUnit: 'ns' | 'event';
  events: HistoryEvent[];
}

/** How an operation ended. `info` covers both an `info` completion and none at all. */
export type OperationStatus = 'ok' | 'fail' | 'info';

export interface Operation {
  /** Dense id, the position of the operation in invocation order. */
  id: number;
  process: ProcessId;
  f: string;
  key: string | undefined;
  /** The invocation's value (what was asked). */
  input: Value;
  /** The `ok` completion's value (what was observed); undefined when unknown. */
  output: Value | undefined;
  status: OperationStatus;
  /** Event positions. `returnIndex` is undefined when the operation never completed. */
  callIndex: number;
  returnIndex: number | undefined;
  callTime: number;
  returnTime: number | undefined;
  callLine: number | undefined;
  returnLine: number | undefined;
}

/** `source:line: reason`, the shape of every bad-input message. */
export function badInput(source: string, line: number | undefined, reason: string): BadInputError {
  return new BadInputError(
    line === undefined ? `${source}: ${reason}` : `${source}:${line}: ${reason}`,
  );
}

function where(event: HistoryEvent): string {
  return event.line === undefined ? `event ${event.index}` : `line ${event.line}`;
}

/**
 * Pairs each invocation with its process's next completion. A process runs one operation at
 * a time: a second invocation before the first completes, a completion with nothing
 * outstanding, or a completion of a different function is bad input.
 */
export function pairOperations(history: History): Operation[] {
  const { events, source } = history;
  if (events.length > historyEventsMax) {
    throw badInput(
      source,
      undefined,
      `${events.length} events exceed the limit of ${historyEventsMax}`,
    );
  }
  const operations: Operation[] = [];
  const outstanding = new Map<ProcessId, Operation>();
  const processes = new Set<ProcessId>();
  for (const event of events) {
    processes.add(event.process);
    if (processes.size > historyProcessesMax) {
      throw badInput(source, event.line, `more than ${historyProcessesMax} processes`);
    }
    const open = outstanding.get(event.process);
    if (event.type === 'invoke') {
      if (open !== undefined) {
        throw badInput(
          source,
          event.line,
          `process ${String(event.process)} invokes ${event.f} while its ${open.f} from ${open.callLine === undefined ? `event ${open.callIndex}` : `line ${open.callLine}`} has not completed`,
        );
      }
      const operation: Operation = {
        id: operations.length,
        process: event.process,
        f: event.f,
        key: event.key,
        input: event.value,
        output: undefined,
        status: 'info',
        callIndex: event.index,
        returnIndex: undefined,
        callTime: event.time,
        returnTime: undefined,
        callLine: event.line,
        returnLine: undefined,
      };
      operations.push(operation);
      outstanding.set(event.process, operation);
      continue;
    }
    if (open === undefined) {
      throw badInput(
        source,
        event.line,
        `${event.type} ${event.f} by process ${String(event.process)}, which has no invocation outstanding`,
      );
    }
    if (open.f !== event.f) {
      throw badInput(
        source,
        event.line,
        `completion of ${event.f} does not match the invocation of ${open.f} (${where(event)})`,
      );
    }
    if (event.key !== undefined && open.key !== undefined && event.key !== open.key) {
      throw badInput(
        source,
        event.line,
        `completion for key ${JSON.stringify(event.key)} does not match the invocation's key ${JSON.stringify(open.key)}`,
      );
    }
    open.status = event.type;
    open.output = event.type === 'ok' ? event.value : undefined;
    open.returnIndex = event.index;
    open.returnTime = event.time;
    open.returnLine = event.line;
    outstanding.delete(event.process);
  }
  assert(
    operations.every((op, i) => op.id === i),
    'operation ids are dense',
  );
  return operations;
}

/** One JSON object per line, the format `chorus check --format jsonl` reads back. */
export function toJsonl(events: readonly HistoryEvent[]): string {
  return events
    .map((e) =>
      JSON.stringify({
        process: e.process,
        type: e.type,
        f: e.f,
        ...(e.key === undefined ? {} : { key: e.key }),
        value: e.value,
        time: e.time,
        index: e.index,
      }),
    )
    .join('\n')
    .concat(events.length > 0 ? '\n' : '');
}
