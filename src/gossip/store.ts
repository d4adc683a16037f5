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
  /** The highest seq held; above `contiguous` only when some seq is missing. */
  max = 0;

  add(seq: number, value: GossipValue): boolean {
    if (this.bySeq.has(seq)) return false;
    this.bySeq.set(seq, value);
    if (seq > this.max) this.max = seq;
    while (this.bySeq.has(this.contiguous + 1)) this.contiguous++;
    return true;
  }

  /** Held seqs above the contiguous prefix, lowest first, at most digestExtrasMax. */
  extras(): number[] {
    const result: number[] = [];
    for (let seq = this.contiguous + 2; seq <= this.max && result.length < digestExtrasMax; seq++) {
      if (this.bySeq.has(seq)) result.push(seq);
    }
    return result;
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
      if (upTo >= log.max) continue; // The common case once converged: nothing to send.
      const extras = new Set(theirs?.[1] ?? []);
      // Walk seqs above their prefix; our seqs are dense, so this visits what they lack.
      for (let seq = upTo + 1; seq <= log.max; seq++) {
        const value = log.bySeq.get(seq);
        if (value === undefined || extras.has(seq)) continue;
        items.push([origin, seq, value]);
        if (items.length >= limit) return items;
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
