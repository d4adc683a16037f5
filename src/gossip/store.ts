/**
 * The values one node holds, by origin and per-origin sequence number, with the digest that
 * anti-entropy exchanges: per origin the highest contiguous sequence held and the few held
 * beyond it.
 */
import { digestExtrasMax } from './constants.js';

export type GossipValue = number | string;
export type Item = [origin: string, seq: number, value: GossipValue];
/** origin → [contiguous max, extras beyond it]. */
export type Digest = Record<string, [number, number[]]>;

class OriginLog {
  readonly bySeq = new Map<number, GossipValue>();
  /** Every seq in 1..contiguous is held. */
  contiguous = 0;

  add(seq: number, value: GossipValue): boolean {
    if (this.bySeq.has(seq)) return false;
    this.bySeq.set(seq, value);
    while (this.bySeq.has(this.contiguous + 1)) this.contiguous++;
    return true;
  }

  extras(): number[] {
    const result: number[] = [];
    for (const seq of this.bySeq.keys()) if (seq > this.contiguous) result.push(seq);
    return result.sort((a, b) => a - b).slice(0, digestExtrasMax);
  }
}

export class ValueStore {
  private readonly origins = new Map<string, OriginLog>();
  private readonly present = new Set<GossipValue>();

  get size(): number {
    return this.present.size;
  }

  has(value: GossipValue): boolean {
    return this.present.has(value);
  }

  values(): GossipValue[] {
    return [...this.present];
  }

  /** Adds an item; false if it was already held. */
  add(origin: string, seq: number, value: GossipValue): boolean {
    let log = this.origins.get(origin);
    if (log === undefined) {
      log = new OriginLog();
      this.origins.set(origin, log);
    }
    if (!log.add(seq, value)) return false;
    this.present.add(value);
    return true;
  }

  highestSeq(origin: string): number {
    const log = this.origins.get(origin);
    if (log === undefined) return 0;
    let max = 0;
    for (const seq of log.bySeq.keys()) max = Math.max(max, seq);
    return max;
  }

  digest(): Digest {
    const digest: Digest = {};
    for (const [origin, log] of this.origins) digest[origin] = [log.contiguous, log.extras()];
    return digest;
  }

  /** Items held here that a peer with `digest` lacks, at most `limit`. */
  missingFrom(digest: Digest, limit: number): Item[] {
    const items: Item[] = [];
    for (const [origin, log] of this.origins) {
      const theirs = digest[origin];
      const upTo = theirs?.[0] ?? 0;
      const extras = new Set(theirs?.[1] ?? []);
      for (const [seq, value] of log.bySeq) {
        if (seq > upTo && !extras.has(seq)) {
          items.push([origin, seq, value]);
          if (items.length >= limit) return items;
        }
      }
    }
    return items;
  }

  /** True when the peer's digest shows something this store lacks. */
  lacksSomethingIn(digest: Digest): boolean {
    for (const [origin, [upTo, extras]] of Object.entries(digest)) {
      const log = this.origins.get(origin);
      if (log === undefined) {
        if (upTo > 0 || extras.length > 0) return true;
        continue;
      }
      if (upTo > log.contiguous) return true;
      for (const seq of extras) if (!log.bySeq.has(seq)) return true;
    }
    return false;
  }
}
