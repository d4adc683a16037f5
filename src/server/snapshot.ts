/**
 * Maintenance.Snapshot, independent of the protocol that carries it: streams this member's
 * KV state as a snapshot file (snapshot-file.ts) in SnapshotResponse chunks.
 *
 * 1. At the request the state is fixed: the KV machine's snapshot job clones the store
 *    copy-on-write (O(1)), and the applied Raft index, its term and the revision are read in
 *    the same turn of the event loop, so they describe exactly that state. No read barrier
 *    comes first, as in etcd: it is this member's state, whatever it has applied.
 * 2. The job encodes one step per turn of the event loop, so other clients (and Raft) are
 *    served meanwhile.
 * 3. The file goes out in `snapshotChunkBytes` blobs, straight from the encoded parts (one
 *    copy of the state is held, never a second one for the file). `remaining_bytes` counts
 *    the bytes still to come after each blob, trailer included; the first response carries
 *    the header (the snapshot's revision). The last response is the 32-byte SHA-256 of all
 *    bytes before it, as etcd sends (etcd's own remaining_bytes leaves its checksum out).
 * 4. Backpressure: writing stops when the sink says its buffer is full and resumes when it
 *    drains; at most `snapshotChunksPerTurn` chunks go out per turn. A client that goes away
 *    (or a stopping server) closes the stream, and the copy of the state is released.
 */
import { createHash } from 'node:crypto';
import { assert } from '../core/assert.js';
import type { Header, Wire } from './convert.js';
import { invalidArgument } from './errors.js';
import type { ServiceContext } from './service.js';
import {
  snapshotLayout,
  snapshotTrailerBytes,
  type SnapshotLayout,
  type SnapshotMeta,
} from './snapshot-file.js';
import type { RequestStream, StreamSink } from './streams.js';
import { etcdVersion, snapshotChunkBytes, snapshotChunksPerTurn } from './constants.js';

/** Runs `fn` on a later turn of the event loop. */
export type Later = (fn: () => void) => void;

const nextTurn: Later = (fn) => void setImmediate(fn);

export class SnapshotStream implements RequestStream {
  private phase: 'waiting' | 'encoding' | 'sending' | 'done' = 'waiting';
  private closed = false;
  private layout: SnapshotLayout | undefined;
  private header: Header | undefined;
  /** Where sending is: the part, the offset in it, and the body bytes sent so far. */
  private part = 0;
  private partOffset = 0;
  private sentBytes = 0;
  private readonly hash = createHash('sha256');
  /** True while a full sink holds the next write back until it drains. */
  private waitingDrain = false;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly sink: StreamSink,
    private readonly later: Later = nextTurn,
  ) {
    sink.onDrain(() => {
      if (!this.waitingDrain) return;
      this.waitingDrain = false;
      this.guarded(() => this.send());
    });
  }

  /** The one SnapshotRequest (an empty message) starts the snapshot. */
  request(_message: Wire): void {
    if (this.phase !== 'waiting') throw invalidArgument('a snapshot stream takes one request');
    this.phase = 'encoding';
    const { driver, machine } = this.ctx.kv;
    const appliedIndex = driver.appliedIndex;
    const appliedTerm = driver.node.raft.log.term(appliedIndex);
    assert(appliedTerm !== undefined, 'the applied entry is still in the log or its snapshot');
    const revision = machine.revision();
    const header = this.ctx.header(revision);
    const meta: SnapshotMeta = {
      member: this.ctx.memberName,
      memberId: header.memberId,
      clusterId: header.clusterId,
      raftAppliedIndex: appliedIndex,
      raftAppliedTerm: appliedTerm,
      revision,
      compactRevision: machine.compactRevision(),
      takenAtMs: this.ctx.wallMs(),
      etcdVersion,
    };
    this.header = header;
    const job = machine.snapshotJob();
    const step = (): void => {
      if (this.closed) return;
      if (!job.step()) return this.later(() => this.guarded(step));
      this.layout = snapshotLayout(meta, job.result());
      this.phase = 'sending';
      this.send();
    };
    this.later(() => this.guarded(step));
  }

  close(): void {
    this.closed = true;
    this.layout = undefined;
  }

  private send(): void {
    const layout = this.layout;
    if (this.closed || layout === undefined) return;
    for (let n = 0; n < snapshotChunksPerTurn; n++) {
      if (this.sentBytes === layout.bodyBytes) return this.finish();
      const first = this.sentBytes === 0;
      const blob = this.nextChunk(layout);
      this.hash.update(blob);
      this.sentBytes += blob.length;
      const room = this.sink.write({
        ...(first ? { header: this.header } : {}),
        remainingBytes: layout.bodyBytes - this.sentBytes + snapshotTrailerBytes,
        blob,
        version: etcdVersion,
      });
      // The sink may have ended the stream (the client left) inside that write.
      if (this.closed) return;
      if (!room) {
        this.waitingDrain = true;
        return;
      }
    }
    this.later(() => this.guarded(() => this.send()));
  }

  /**
   * Runs work of a later turn, outside the dispatcher's try: whatever it throws ends this
   * stream (a bug answers INTERNAL and is logged there), never the process.
   */
  private guarded(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.close();
      this.sink.end(error);
    }
  }

  /** The next blob: up to `snapshotChunkBytes`, a view unless it spans two parts. */
  private nextChunk(layout: SnapshotLayout): Uint8Array {
    const pieces: Uint8Array[] = [];
    let size = 0;
    while (size < snapshotChunkBytes && this.part < layout.parts.length) {
      const part = layout.parts[this.part]!;
      const take = Math.min(snapshotChunkBytes - size, part.length - this.partOffset);
      if (take > 0) pieces.push(part.subarray(this.partOffset, this.partOffset + take));
      size += take;
      this.partOffset += take;
      if (this.partOffset === part.length) {
        this.part++;
        this.partOffset = 0;
      }
    }
    assert(size > 0, 'a chunk is taken only while body bytes remain');
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  private finish(): void {
    this.phase = 'done';
    this.layout = undefined;
    this.sink.write({ remainingBytes: 0, blob: this.hash.digest(), version: etcdVersion });
    this.sink.end();
  }
}
