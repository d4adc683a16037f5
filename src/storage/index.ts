/** Durable Raft state: WAL segments, hard state and snapshot files, crash recovery. */
export {
  RaftStorage,
  type OpenDone,
  type Recovered,
  type SaveUpdate,
  type StorageCounters,
  type StorageDone,
  type StorageEnv,
  type StorageOptions,
} from './storage.js';
export { StorageCorruptError } from './errors.js';
