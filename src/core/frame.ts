/**
 * Node-to-node frames: [payload length u32 LE][CRC32C of payload u32 LE][payload].
 * FrameDecoder is a byte-level state machine: feed it any split of the stream (one byte at
 * a time works) and it yields whole payloads, or stops for good at the first bad frame.
 */
import { readU32, writeU32 } from './bytes.js';
import { frameHeaderBytes, frameSizeBytesMax } from './constants.js';
import { crc32c } from './crc32c.js';
import { ChorusError } from './errors.js';

export function encodeFrame(payload: Uint8Array): Uint8Array {
  if (payload.length > frameSizeBytesMax) {
    throw new ChorusError(
      'frame-too-large',
      `frame of ${payload.length} bytes exceeds ${frameSizeBytesMax}`,
    );
  }
  const frame = new Uint8Array(frameHeaderBytes + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32c(payload), true);
  frame.set(payload, frameHeaderBytes);
  return frame;
}

/** Writes the header of a frame for `payload` into `target` at `offset` (no copy of payload). */
export function writeFrameHeader(target: Uint8Array, offset: number, payload: Uint8Array): void {
  if (payload.length > frameSizeBytesMax) {
    throw new ChorusError(
      'frame-too-large',
      `frame of ${payload.length} bytes exceeds ${frameSizeBytesMax}`,
    );
  }
  writeU32(target, offset, payload.length);
  writeU32(target, offset + 4, crc32c(payload));
}

export type FrameError = ChorusError & { code: 'frame-too-large' | 'checksum-mismatch' };

export class FrameDecoder {
  /** Bytes received and not yet consumed, as the chunks they came in (no copying until needed). */
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private failure: ChorusError | undefined;

  constructor(private readonly sizeBytesMax: number = frameSizeBytesMax) {}

  /** The first framing error seen; once set, the stream is unusable. */
  get error(): ChorusError | undefined {
    return this.failure;
  }

  /** Bytes held that do not yet make a whole frame (a truncated frame at close). */
  get pendingBytes(): number {
    return this.heldBytes;
  }

  /**
   * Appends bytes and returns every complete payload. Stops at the first bad frame. Payloads
   * may share memory with `chunk`; copy one before keeping it past the next push.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) return [];
    if (chunk.length === 0) return [];
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    const frames: Uint8Array[] = [];
    while (this.heldBytes >= frameHeaderBytes) {
      const head = this.contiguous(frameHeaderBytes);
      const length = readU32(head, 0);
      if (length > this.sizeBytesMax) {
        return this.fail(
          frames,
          new ChorusError('frame-too-large', `frame length ${length} exceeds ${this.sizeBytesMax}`),
        );
      }
      // A frame still arriving: wait, and copy nothing until it is whole.
      if (this.heldBytes < frameHeaderBytes + length) break;
      const data = this.contiguous(frameHeaderBytes + length);
      const expected = readU32(data, 4);
      const actual = crc32c(data, frameHeaderBytes, frameHeaderBytes + length);
      if (actual !== expected) {
        return this.fail(
          frames,
          new ChorusError(
            'checksum-mismatch',
            `frame checksum 0x${actual.toString(16)} != header 0x${expected.toString(16)}`,
          ),
        );
      }
      frames.push(data.subarray(frameHeaderBytes, frameHeaderBytes + length));
      this.consume(frameHeaderBytes + length);
    }
    return frames;
  }

  private fail(frames: Uint8Array[], error: ChorusError): Uint8Array[] {
    this.failure = error;
    this.held = [];
    this.heldBytes = 0;
    return frames;
  }

  /** The first `n` held bytes as one array (merging the first chunks only when they must be). */
  private contiguous(n: number): Uint8Array {
    const first = this.held[0]!;
    if (first.length >= n) return first;
    const merged = new Uint8Array(this.heldBytes);
    let offset = 0;
    for (const part of this.held) {
      merged.set(part, offset);
      offset += part.length;
    }
    this.held = [merged];
    return merged;
  }

  private consume(n: number): void {
    this.heldBytes -= n;
    while (n > 0) {
      const first = this.held[0]!;
      if (first.length <= n) {
        this.held.shift();
        n -= first.length;
      } else {
        this.held[0] = first.subarray(n);
        n = 0;
      }
    }
  }
}
