/**
 * The one error of storage that must never be papered over: bytes on disk that passed
 * their fsync are damaged, and a valid record follows the damage (or the damage is in a
 * file that is never torn), so cutting it away could drop committed entries. The node must
 * stop and an operator must act (restore the node from its peers).
 */
import { ChorusError } from '../core/errors.js';

export class StorageCorruptError extends ChorusError {
  override name = 'StorageCorruptError';
  /** Path of the damaged file, relative to the disk root. */
  readonly file: string;
  /** Byte offset of the first damaged record in that file. */
  readonly offset: number;

  constructor(file: string, offset: number, reason: string, options?: { cause?: unknown }) {
    super('storage-corrupt', `storage corrupt: ${file} at offset ${offset}: ${reason}`, options);
    this.file = file;
    this.offset = offset;
  }
}
