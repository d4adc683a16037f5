/**
 * A fast seeded PRNG (sfc32: 128 bits of state, passes PractRand to 2^40+ bytes) with
 * labelled sub-streams. `fork(label)` derives a child from the parent's seed path and the
 * label alone, never from how much the parent has drawn, so adding one draw in one
 * subsystem does not perturb any other subsystem's stream.
 */
import { assert } from './assert.js';

export interface Random {
  /** The seed path, e.g. "42/node-3/timers", for logs and reproduction. */
  readonly path: string;
  /** A uniform unsigned 32-bit integer. */
  u32(): number;
  /** A uniform float in [0, 1). */
  float(): number;
  /** A uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number;
  /** A uniform integer in [min, max], both inclusive. */
  between(min: number, max: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** An exponentially distributed float with the given mean. */
  exponential(mean: number): number;
  pick<T>(items: readonly T[]): T;
  shuffle<T>(items: readonly T[]): T[];
  fork(label: string): Random;
}

/** 32-bit FNV-1a then a murmur3 finaliser: a stable string hash for seed derivation. */
export function hashString(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

class Sfc32 implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(
    readonly path: string,
    private readonly key: number,
  ) {
    // Four independent words from the key; then warm up so close keys diverge.
    this.a = fmix32(key ^ 0x9e3779b9);
    this.b = fmix32(key ^ 0x243f6a88);
    this.c = fmix32(key ^ 0xb7e15162);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  float(): number {
    return this.u32() / 4294967296;
  }

  int(maxExclusive: number): number {
    assert(
      maxExclusive > 0 && maxExclusive <= 4294967296,
      () => `int(${maxExclusive}) out of range`,
    );
    return Math.floor(this.float() * maxExclusive);
  }

  between(min: number, max: number): number {
    assert(max >= min, () => `between(${min}, ${max})`);
    return min + this.int(max - min + 1);
  }

  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  exponential(mean: number): number {
    return -mean * Math.log(1 - this.float());
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, 'pick from an empty list');
    return items[this.int(items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const result = items.slice();
    for (let i = result.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const held = result[i]!;
      result[i] = result[j]!;
      result[j] = held;
    }
    return result;
  }

  fork(label: string): Random {
    return new Sfc32(`${this.path}/${label}`, hashString(label, this.key ^ 0x5bd1e995));
  }
}

/** A generator for a seed (any safe integer). The same seed always gives the same streams. */
export function seededRandom(seed: number): Random {
  assert(Number.isSafeInteger(seed), () => `seed must be a safe integer, got ${seed}`);
  const key = fmix32((seed >>> 0) ^ fmix32(Math.floor(seed / 4294967296)));
  return new Sfc32(String(seed), key);
}
