/**
 * The trace of a simulation: every event folds into a running 64-bit hash (two 32-bit
 * lanes), and, when a sink is given, is also written as one JSON line. Two runs of one seed
 * must end with the same hash; the determinism test compares them.
 */

export type TraceSink = (line: string) => void;

export class Trace {
  private h1 = 0x9747b28c;
  private h2 = 0x2545f491;
  private kindIds = new Map<string, number>();
  events = 0;

  constructor(private readonly sink: TraceSink | undefined) {}

  get enabled(): boolean {
    return this.sink !== undefined;
  }

  private kindId(kind: string): number {
    let id = this.kindIds.get(kind);
    if (id === undefined) {
      id = this.kindIds.size + 1;
      this.kindIds.set(kind, id);
    }
    return id;
  }

  /** Folds one event into the hash: its time, kind, node index and one number of detail. */
  record(
    timeMs: number,
    kind: string,
    node: number,
    detail: number,
    describe?: () => Record<string, unknown>,
  ): void {
    this.events++;
    const micros = Math.round(timeMs * 1000);
    this.mix(micros >>> 0);
    this.mix(Math.floor(micros / 4294967296));
    this.mix((this.kindId(kind) << 8) ^ (node & 0xff));
    this.mix(detail | 0);
    if (this.sink !== undefined) {
      this.sink(JSON.stringify({ t: timeMs, kind, node, detail, ...(describe ? describe() : {}) }));
    }
  }

  /** Folds a note (e.g. a workload operation) into the hash and the sink. */
  note(timeMs: number, kind: string, fields: Record<string, unknown>): void {
    const text = JSON.stringify(fields);
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0;
    this.record(timeMs, kind, 255, h, () => fields);
  }

  private mix(value: number): void {
    this.h1 = Math.imul(this.h1 ^ value, 0x5bd1e995);
    this.h1 ^= this.h1 >>> 15;
    this.h2 = Math.imul(this.h2 ^ value, 0x27d4eb2d) + 0x165667b1;
    this.h2 ^= this.h2 >>> 13;
  }

  /** Writes a log line to the sink only; logs do not change the hash. */
  log(
    timeMs: number,
    node: number,
    level: string,
    message: string,
    fields: Record<string, unknown>,
  ): void {
    this.sink?.(JSON.stringify({ t: timeMs, kind: 'log', node, level, message, ...fields }));
  }

  hash(): string {
    return (
      (this.h1 >>> 0).toString(16).padStart(8, '0') + (this.h2 >>> 0).toString(16).padStart(8, '0')
    );
  }
}
