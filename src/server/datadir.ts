/**
 * The data directory: an exclusive lock, so two processes never write one WAL, and a format
 * version, so a future layout is never misread by this binary (or the reverse).
 *
 *   <dir>/LOCK          the pid of the process that holds the directory
 *   <dir>/version.json  {"format": 2, "name", "clusterToken", "nodeId", "memberId"}
 *   <dir>/raft/         the Raft WAL, hard state and snapshot (src/storage)
 *
 * The lock is a file created exclusively (O_EXCL) holding the owner's pid. A lock whose pid
 * no longer runs is stale (the owner was killed with -9 or the machine rebooted) and is
 * taken over; a lock whose pid runs makes the second process refuse with a clear message.
 * (A pid reused by an unrelated process after a reboot makes the lock look held: the
 * message names the pid so an operator can check and remove LOCK by hand.)
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { assert } from '../core/assert.js';
import { isNodeId, type NodeId } from '../core/ids.js';
import { dataDirFilesScannedMax, dataDirFormatVersion } from './constants.js';

export class DataDirError extends Error {
  override name = 'DataDirError';
}

export const lockFileName = 'LOCK';
export const versionFileName = 'version.json';
export const raftDirName = 'raft';

/** Who this member is in Raft and to etcd clients: fixed when its data directory is created. */
export interface MemberIdentity {
  nodeId: NodeId;
  /** Decimal uint64. */
  memberId: string;
}

export interface DataDir {
  path: string;
  /** True when this member had no state before (a new member). */
  fresh: boolean;
  /**
   * The identity recorded at creation (a restart keeps it even if flags changed since);
   * undefined while the directory is fresh, until `record`.
   */
  identity: MemberIdentity | undefined;
  /** Takes a stale lock over from this pid, if it did. */
  tookOverFrom: number | undefined;
  /** Writes the identity of a fresh directory into version.json (durably), once. */
  record(identity: MemberIdentity): MemberIdentity;
  release(): void;
}

interface VersionFile extends Partial<MemberIdentity> {
  format: number;
  name: string;
  clusterToken: string;
}

/**
 * Locks the directory (creating it) and checks its format version. One with state returns
 * the identity it recorded; a fresh one has none until the caller, who may first have to ask
 * the cluster who this member is, calls `record`.
 */
export function openDataDir(path: string, name: string, clusterToken: string): DataDir {
  try {
    fs.mkdirSync(path, { recursive: true });
  } catch (error) {
    throw new DataDirError(`cannot create data directory ${path}: ${(error as Error).message}`);
  }
  const tookOverFrom = lock(path);
  const release = (): void => unlock(path);
  try {
    const { fresh, recorded } = checkVersion(path, name, clusterToken);
    const dataDir: DataDir = {
      path,
      fresh,
      identity: recorded,
      tookOverFrom,
      record(identity) {
        assert(dataDir.fresh && dataDir.identity === undefined, 'record the identity once, fresh');
        writeVersion(path, { format: dataDirFormatVersion, name, clusterToken, ...identity });
        dataDir.identity = { ...identity };
        return dataDir.identity;
      },
      release,
    };
    return dataDir;
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * The pid of another running process that holds `dir`'s lock, if one does (a restore uses it
 * to leave a staging directory still being written alone).
 */
export function liveLockHolder(dir: string): number | undefined {
  const owner = readPid(join(dir, lockFileName));
  return owner !== undefined && owner !== process.pid && alive(owner) ? owner : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lock(dir: string): number | undefined {
  const file = join(dir, lockFileName);
  let tookOverFrom: number | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o644);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      // Two processes taking over one stale lock at once: only one finds its own pid.
      if (readPid(file) !== process.pid)
        throw new DataDirError(`data directory ${dir} was locked by another process just now`);
      return tookOverFrom;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        if (error instanceof DataDirError) throw error;
        throw new DataDirError(`cannot lock data directory ${dir}: ${(error as Error).message}`);
      }
    }
    const owner = readPid(file);
    if (owner !== undefined && owner !== process.pid && alive(owner)) {
      throw new DataDirError(
        `data directory ${dir} is in use by another Chorus process (pid ${owner}); ` +
          `stop it or choose another --data-dir (if no such process exists, remove ${file})`,
      );
    }
    tookOverFrom = owner ?? -1;
    try {
      fs.unlinkSync(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new DataDirError(`cannot remove stale lock ${file}: ${(error as Error).message}`);
    }
  }
  throw new DataDirError(`cannot lock data directory ${dir}: the lock keeps changing hands`);
}

function readPid(file: string): number | undefined {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

function unlock(dir: string): void {
  const file = join(dir, lockFileName);
  if (readPid(file) === process.pid) fs.rmSync(file, { force: true });
}

/** Whether the directory is fresh (no state yet), and the identity it holds if not. */
function checkVersion(
  dir: string,
  name: string,
  clusterToken: string,
): { fresh: boolean; recorded: MemberIdentity | undefined } {
  const file = join(dir, versionFileName);
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new DataDirError(`cannot read ${file}: ${(error as Error).message}`);
  }
  if (text === undefined) {
    const others = fs.readdirSync(dir).filter((f) => f !== lockFileName);
    if (others.length > 0)
      throw new DataDirError(
        `data directory ${dir} is not empty and has no ${versionFileName}: not a Chorus data directory (found ${others.slice(0, 3).join(', ')})`,
      );
    return { fresh: true, recorded: undefined };
  }
  let version: VersionFile;
  try {
    version = JSON.parse(text) as VersionFile;
  } catch {
    throw new DataDirError(`${file} is corrupt (not JSON)`);
  }
  if (typeof version.format !== 'number' || version.format > dataDirFormatVersion)
    throw new DataDirError(
      `${file}: format ${String(version.format)} is newer than this binary reads (${dataDirFormatVersion})`,
    );
  if (version.name !== name)
    throw new DataDirError(
      `data directory ${dir} belongs to member ${JSON.stringify(version.name)}, not ${JSON.stringify(name)}`,
    );
  if (version.clusterToken !== clusterToken)
    throw new DataDirError(
      `data directory ${dir} belongs to cluster token ${JSON.stringify(version.clusterToken)}, not ${JSON.stringify(clusterToken)}`,
    );
  const fresh = !fs.existsSync(join(dir, raftDirName));
  // No state yet (an earlier start failed early): the identity is chosen again.
  if (fresh) return { fresh, recorded: undefined };
  if (version.format < dataDirFormatVersion || !isNodeId(version.nodeId))
    throw new DataDirError(
      `data directory ${dir} has format ${version.format}, written by an older Chorus whose ` +
        `log does not record the membership; this binary cannot continue it (start the member ` +
        `with a new --data-dir, or restore from a snapshot)`,
    );
  return {
    fresh,
    recorded: { nodeId: version.nodeId, memberId: String(version.memberId) },
  };
}

function writeVersion(dir: string, version: VersionFile): void {
  const file = join(dir, versionFileName);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  fs.writeSync(fd, JSON.stringify(version) + '\n');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  const dirFd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Bytes under the data directory's raft/ folder: what Status reports as dbSize. */
export function raftBytes(dir: string): number {
  let total = 0;
  let scanned = 0;
  const walk = (path: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (++scanned > dataDirFilesScannedMax) return;
      const full = join(path, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        try {
          total += fs.statSync(full).size;
        } catch {
          // Removed by compaction while we looked: it no longer counts.
        }
      }
    }
  };
  walk(join(dir, raftDirName));
  return total;
}
