/**
 * Node-to-node frames: [payload length u32 LE][CRC32C of payload u32 LE][payload].
 * FrameDecoder is a byte-level state machine: feed it any split of the stream (one byte at
 * a time works) and it yields whole payloads, or stops for good at the first bad frame.
 */
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
  const view = new DataView(target.buffer, target.byteOffset + offset, frameHeaderBytes);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32c(payload), true);
}

export type FrameError = ChorusError & { code: 'frame-too-large' | 'checksum-mismatch' };

export class FrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0);
  private failure: ChorusError | undefined;

  constructor(private readonly sizeBytesMax: number = frameSizeBytesMax) {}

  /** The first framing error seen; once set, the stream is unusable. */
  get error(): ChorusError | undefined {
    return this.failure;
  }

  /** Bytes held that do not yet make a whole frame (a truncated frame at close). */
  get pendingBytes(): number {
    return this.buffer.length;
  }

  /** Appends bytes and returns every complete payload. Stops at the first bad frame. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) return [];
    const data = this.buffer.length === 0 ? chunk : concat(this.buffer, chunk);
    const frames: Uint8Array[] = [];
    let offset = 0;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    while (data.length - offset >= frameHeaderBytes) {
      const length = view.getUint32(offset, true);
      if (length > this.sizeBytesMax) {
        this.failure = new ChorusError(
          'frame-too-large',
          `frame length ${length} exceeds ${this.sizeBytesMax}`,
        );
        this.buffer = new Uint8Array(0);
        return frames;
      }
      if (data.length - offset - frameHeaderBytes < length) break;
      const expected = view.getUint32(offset + 4, true);
      const start = offset + frameHeaderBytes;
      const actual = crc32c(data, start, start + length);
      if (actual !== expected) {
        this.failure = new ChorusError(
          'checksum-mismatch',
          `frame checksum 0x${actual.toString(16)} != header 0x${expected.toString(16)}`,
        );
        this.buffer = new Uint8Array(0);
        return frames;
      }
      frames.push(data.subarray(start, start + length));
      offset = start + length;
    }
    // Keep the tail; copy it so the caller's chunk can be reused.
    this.buffer = offset === data.length ? new Uint8Array(0) : data.slice(offset);
    return frames;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const result = new Uint8Array(a.length + b.length);
  result.set(a, 0);
  result.set(b, a.length);
  return result;
}
