/**
 * Gossip broadcast. `broadcast(value)` is acknowledged once the value is durable on this
 * node's disk; from then on every node must eventually hold it, despite loss, partitions,
 * crashes and pauses. Two mechanisms:
 * - push: a node that first sees a value forwards it to `fanout` random peers (fast, lossy);
 * - anti-entropy: every `antiEntropyIntervalMs` a node sends its digest to one random peer,
 *   which answers with the values the sender lacks and, if it lacks some itself, its own
 *   digest (push-pull), so every pair converges once the network lets them talk.
 * Every value (own or received) is appended to a log of CRC-framed records; own values are
 * acknowledged only after the fsync that covers them (group commit: one fsync for all the
 * values that arrived meanwhile). Any disk error stops the process (FatalError): after an
 * fsync failure the page cache cannot be trusted, and recovery from the log is the safe path.
 */
import { concatBytes } from '../core/bytes.js';
import { assert } from '../core/assert.js';
import { decode, encode } from '../core/codec.js';
import { ChorusError, FatalError, describeError } from '../core/errors.js';
import { encodeFrame, FrameDecoder } from '../core/frame.js';
import type { NodeId } from '../core/ids.js';
import type { DiskFile, Env } from '../env/env.js';
import {
  antiEntropyIntervalMs,
  fanout,
  logFileName,
  pendingBroadcastsMax,
  pushItemsMax,
  valueSizeBytesMax,
} from './constants.js';
import { ValueStore, type Digest, type GossipValue, type Item } from './store.js';

export type { GossipValue } from './store.js';

type Message = { t: 'push'; items: Item[] } | { t: 'digest'; digest: Digest; reply: boolean };

/**
 * Deliberate bugs, for proving that the simulator and checker catch them. Never set in
 * production: each one breaks the broadcast guarantee.
 * - ack-before-fsync: acknowledge a broadcast before its record is durable;
 * - share-before-fsync: expose an own item to peers before it is durable (the bug the first
 *   campaign found: a crash then reuses its sequence number for another value).
 */
export const gossipBugs = ['ack-before-fsync', 'share-before-fsync'] as const;
export type GossipBug = (typeof gossipBugs)[number];

export interface GossipOptions {
  bug?: GossipBug;
}

export type BroadcastDone = (error: ChorusError | undefined) => void;

export interface GossipCounters {
  pushesSent: number;
  digestsSent: number;
  malformed: number;
  recoveredValues: number;
  truncatedLogBytes: number;
}

export class GossipNode {
  readonly counters: GossipCounters = {
    pushesSent: 0,
    digestsSent: 0,
    malformed: 0,
    recoveredValues: 0,
    truncatedLogBytes: 0,
  };
  private readonly store = new ValueStore();
  private log: DiskFile | undefined;
  private nextSeq = 1;
  /** Encoded records not yet handed to the disk. */
  private unwritten: Uint8Array[] = [];
  /** Acknowledgements waiting for the fsync in flight or the next one. */
  private waiting: BroadcastDone[] = [];
  private flushing = false;
  private stopped = false;

  constructor(
    private readonly env: Env,
    private readonly options: GossipOptions = {},
  ) {
    env.net.onMessage((from, payload) => this.onMessage(from, payload));
    this.recover();
  }

  get ready(): boolean {
    return this.log !== undefined;
  }

  /** Number of values held. */
  get size(): number {
    return this.store.size;
  }

  has(value: GossipValue): boolean {
    return this.store.has(value);
  }

  values(): GossipValue[] {
    return this.store.values();
  }

  /** Stores `value` durably, then acknowledges; dissemination continues in the background. */
  broadcast(value: GossipValue, done: BroadcastDone): void {
    if (this.stopped) return done(new ChorusError('closed', 'node stopped'));
    if (this.waiting.length >= pendingBroadcastsMax) {
      return done(new ChorusError('queue-full', `${pendingBroadcastsMax} broadcasts await fsync`));
    }
    if (typeof value === 'string' && value.length > valueSizeBytesMax) {
      return done(
        new ChorusError('bad-input', `value of ${value.length} bytes exceeds ${valueSizeBytesMax}`),
      );
    }
    if (this.store.has(value)) {
      // Already held (perhaps received, not yet durable): acknowledge after the next fsync.
      this.waiting.push(done);
      this.flush();
      return;
    }
    // The item joins the store (and so digests and reads) only once durable: were it shared
    // before its fsync and then lost in a crash, its sequence number would be reused for a
    // different value that peers would then wrongly believe they already hold.
    const item: Item = [this.env.net.self, this.nextSeq++, value];
    this.unwritten.push(encodeFrame(encode(item)));
    if (this.options.bug === 'share-before-fsync') this.store.add(...item);
    if (this.options.bug === 'ack-before-fsync') {
      this.store.add(...item);
      this.push([item], undefined);
      done(undefined);
      this.flush();
      return;
    }
    this.waiting.push((error) => {
      if (error === undefined) {
        this.store.add(...item);
        this.push([item], undefined);
      }
      done(error);
    });
    this.flush();
  }

  stop(): void {
    this.stopped = true;
    this.env.net.close();
  }

  // --- durability -------------------------------------------------------------------------

  private recover(): void {
    const { disk } = this.env;
    disk.readFile(logFileName, (error, bytes) => {
      if (error !== undefined && error.code !== 'not-found')
        throw new FatalError('read gossip log', { cause: error });
      const validBytes = bytes === undefined ? 0 : this.replay(bytes);
      disk.open(logFileName, (openError, file) => {
        if (openError !== undefined || file === undefined)
          throw new FatalError('open gossip log', { cause: openError });
        const ready = (): void => {
          this.log = file;
          this.env.log.info('gossip log recovered', { values: this.store.size, bytes: validBytes });
          this.env.timers.set(this.env.random.between(0, antiEntropyIntervalMs), () =>
            this.antiEntropy(),
          );
          this.flush();
        };
        // A torn or corrupt tail is cut off; then the directory entry is made durable, so a
        // log that was just created survives a crash together with its first fsynced record.
        const afterTruncate = (truncateError: Error | undefined): void => {
          if (truncateError !== undefined)
            throw new FatalError('truncate gossip log', { cause: truncateError });
          disk.syncDir('', (syncError) => {
            if (syncError !== undefined)
              throw new FatalError('sync data directory', { cause: syncError });
            ready();
          });
        };
        if (file.size() > validBytes) {
          this.counters.truncatedLogBytes += file.size() - validBytes;
          this.env.log.warn('truncating gossip log tail', { validBytes, size: file.size() });
          file.truncate(validBytes, (e) => (e ? afterTruncate(e) : file.sync(afterTruncate)));
        } else {
          afterTruncate(undefined);
        }
      });
    });
  }

  /** Loads every valid record; returns the length of the valid prefix. */
  private replay(bytes: Uint8Array): number {
    const decoder = new FrameDecoder();
    let valid = 0;
    // Feed frame by frame so the valid prefix length is known exactly.
    for (const payload of decoder.push(bytes)) {
      const item = decode(payload) as Item;
      assert(Array.isArray(item) && item.length === 3, 'gossip log record shape');
      this.store.add(item[0], item[1], item[2]);
      if (item[0] === this.env.net.self) this.nextSeq = Math.max(this.nextSeq, item[1] + 1);
      this.counters.recoveredValues++;
      valid += 8 + payload.length;
    }
    return valid;
  }

  private persist(items: Item[]): void {
    for (const item of items) this.unwritten.push(encodeFrame(encode(item)));
    this.flush();
  }

  /** Group commit: one append and one fsync cover every record queued meanwhile. */
  private flush(): void {
    const file = this.log;
    if (file === undefined || this.flushing) return;
    if (this.unwritten.length === 0 && this.waiting.length === 0) return;
    this.flushing = true;
    const records = this.unwritten;
    const acks = this.waiting;
    this.unwritten = [];
    this.waiting = [];
    const batch = records.length === 1 ? records[0]! : concatBytes(records);
    file.append(batch, (writeError) => {
      if (writeError !== undefined)
        throw new FatalError('append gossip log', { cause: writeError });
      file.sync((syncError) => {
        if (syncError !== undefined) throw new FatalError('fsync gossip log', { cause: syncError });
        this.flushing = false;
        for (const ack of acks) ack(undefined);
        this.flush();
      });
    });
  }

  // --- dissemination ----------------------------------------------------------------------

  private push(items: Item[], except: NodeId | undefined, encoded?: Uint8Array): void {
    const peers = this.env.net.peers().filter((p) => p !== except);
    const targets = this.env.random.shuffle(peers).slice(0, fanout);
    if (targets.length === 0) return;
    const payload = encoded ?? encode({ t: 'push', items } satisfies Message);
    for (const peer of targets) {
      this.env.net.send(peer, payload);
      this.counters.pushesSent++;
    }
  }

  private antiEntropy(): void {
    if (this.stopped) return;
    const peers = this.env.net.peers();
    if (peers.length > 0) {
      this.sendDigest(this.env.random.pick(peers), false);
    }
    this.env.timers.set(antiEntropyIntervalMs, () => this.antiEntropy());
  }

  private sendDigest(to: NodeId, reply: boolean): void {
    this.env.net.send(
      to,
      encode({ t: 'digest', digest: this.store.digest(), reply } satisfies Message),
    );
    this.counters.digestsSent++;
  }

  private onMessage(from: NodeId, payload: Uint8Array): void {
    if (this.stopped || this.log === undefined) return; // Not recovered yet: the peer will retry.
    let message: Message;
    try {
      message = parseMessage(decode(payload));
    } catch (error) {
      this.counters.malformed++;
      this.env.log.warn('dropping malformed gossip message', {
        from,
        reason: describeError(error),
      });
      return;
    }
    switch (message.t) {
      case 'push': {
        const fresh = message.items.filter((item) => this.store.add(...item));
        if (fresh.length > 0) {
          this.persist(fresh);
          // When every item was new, forward the bytes as received instead of re-encoding.
          this.push(fresh, from, fresh.length === message.items.length ? payload : undefined);
        }
        break;
      }
      case 'digest': {
        const missing = this.store.missingFrom(message.digest, pushItemsMax);
        if (missing.length > 0) {
          this.env.net.send(from, encode({ t: 'push', items: missing } satisfies Message));
          this.counters.pushesSent++;
        }
        if (!message.reply && this.store.lacksSomethingIn(message.digest))
          this.sendDigest(from, true);
        break;
      }
    }
  }
}

function isItem(value: unknown): value is Item {
  return (
    Array.isArray(value) &&
    value.length === 3 &&
    typeof value[0] === 'string' &&
    Number.isSafeInteger(value[1]) &&
    (value[1] as number) > 0 &&
    (typeof value[2] === 'number' || typeof value[2] === 'string')
  );
}

/** Validates an untrusted message; throws with the reason when it is malformed. */
function parseMessage(raw: unknown): Message {
  if (typeof raw !== 'object' || raw === null) throw new Error('not an object');
  const m = raw as Record<string, unknown>;
  if (m['t'] === 'push') {
    const items = m['items'];
    if (!Array.isArray(items) || items.length > pushItemsMax || !items.every(isItem))
      throw new Error('bad push items');
    return { t: 'push', items };
  }
  if (m['t'] === 'digest') {
    const digest = m['digest'];
    if (typeof digest !== 'object' || digest === null) throw new Error('bad digest');
    for (const entry of Object.values(digest)) {
      if (
        !Array.isArray(entry) ||
        entry.length !== 2 ||
        !Number.isSafeInteger(entry[0]) ||
        !Array.isArray(entry[1]) ||
        !(entry[1] as unknown[]).every((s) => Number.isSafeInteger(s))
      ) {
        throw new Error('bad digest entry');
      }
    }
    return { t: 'digest', digest: digest as Digest, reply: m['reply'] === true };
  }
  throw new Error(`unknown message type ${JSON.stringify(m['t'])}`);
}
