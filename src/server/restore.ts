/**
 * `chorus snapshot restore`: makes a new data directory from a snapshot file, as `etcdctl
 * snapshot restore` (etcdutl) does for etcd. The directory holds the file's KV state — every
 * key's retained history, the revision, the compact revision, the leases — and a new
 * membership made of --initial-cluster; the membership of the cluster the file came from is
 * discarded.
 *
 * Every member of the new cluster is restored from the same file with the same flags (only
 * --name and --data-dir differ), and each must start from the same Raft state, or their
 * logs would disagree from the first entry. So everything written derives from the file and
 * the flags alone, as etcd's restore does:
 *
 * - the member table is what a new cluster with these flags builds from its founding
 *   entries (foundingMembers): node id = name, member id from the token and the name,
 *   cluster id from the token and the names;
 * - the Raft snapshot is at index n (the number of members) of term 1, where a new
 *   cluster's founding entries end, with the members as voters and, as data, the
 *   ClusterMachine snapshot [that table, the file's KV bytes unchanged];
 * - the hard state is term 1, no vote, commit n.
 *
 * The index is etcd's choice: the new cluster's log starts after its founding
 * configuration, not at the old cluster's index, which names entries of another log.
 * Nothing in the KV state refers to Raft indexes, so the revision continues unchanged: the
 * first write after the restore gets the snapshot's revision + 1.
 *
 * --bump-revision N with --mark-compacted (etcdutl's, both or neither, as etcd requires)
 * moves the restored store's revision N forward and compacts it there: the first write gets
 * revision + N + 1, and every revision below revision + N, the file's own included, is
 * compacted, so a client that read or watched the old cluster past the snapshot cannot take
 * the new cluster's revisions for the ones it saw. The KV state is then re-encoded (the same
 * layout, so HashKV and snapshots of the new cluster cover it as any other state); without
 * the options the file's KV bytes are kept unchanged.
 *
 * Nothing is written until the file has passed every check (SHA-256 trailer unless skipped,
 * layout, the KV state decoded and matching the metadata) and the flags agree. The
 * directory is then built beside its final place (`<dir>.restoring-XXXXXX`), read back and
 * compared, and renamed into place last, so a restore that fails or is killed midway never
 * leaves a directory that `chorus server` would start from (an empty raft/ folder would
 * make it bootstrap an empty cluster instead). A restore killed midway leaves its staging
 * directory behind; the next restore of the same target removes such leftovers first
 * (`removeStaleStaging`).
 */
import * as fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { assert } from '../core/assert.js';
import { concatBytes, joinedBytes } from '../core/bytes.js';
import { BadInputError } from '../core/errors.js';
import type { Logger } from '../env/env.js';
import { NodeDisk } from '../env/node/index.js';
import { LeaseTable } from '../kv/lease.js';
import { KvMachine } from '../kv/machine.js';
import type { ConfChange } from '../raft/raft.js';
import type { ConfState, HardState, Snapshot } from '../raft/types.js';
import { RaftStorage, type Recovered } from '../storage/index.js';
import {
  checkAdvertisedPeerUrls,
  ConfigError,
  namedMembers,
  parseUrl,
  type ClusterMember,
} from './config.js';
import { liveLockHolder, openDataDir, raftDirName, type MemberIdentity } from './datadir.js';
import { founderIdentity, hexId } from './ids.js';
import { encodeClusterSnapshot, foundingMembers, MemberTable } from './membership.js';
import {
  decodeSnapshotState,
  liveKeys,
  readSnapshotFile,
  type SnapshotMeta,
} from './snapshot-file.js';

/** What to restore, and as which member of which new cluster. */
export interface RestoreRequest {
  /** The whole snapshot file. */
  file: Uint8Array;
  /** Must not exist, or be an empty directory. */
  dataDir: string;
  name: string;
  initialCluster: readonly ClusterMember[];
  clusterToken: string;
  /**
   * --initial-advertise-peer-urls: when given, must be the URLs --initial-cluster gives this
   * member, as etcd checks the two agree (config.ts `checkAdvertisedPeerUrls`).
   */
  advertisePeerUrls?: readonly string[];
  /** Restore even if the SHA-256 trailer does not match. */
  skipHashCheck?: boolean;
  /** --bump-revision: revisions to add to the file's; > 0 only with `markCompacted`. */
  bumpRevision?: number;
  /** --mark-compacted: compact the restored store at its (bumped) revision. */
  markCompacted?: boolean;
}

/** Everything a restore writes, computed before anything is. */
export interface RestorePlan {
  meta: SnapshotMeta;
  /** The restored store's revision and compact revision: the file's, unless bumped. */
  revision: number;
  compactRevision: number;
  identity: MemberIdentity;
  clusterId: bigint;
  members: { name: string; id: bigint; peerUrl: string }[];
  snapshot: Snapshot;
  hardState: HardState;
  /** Of the restored state: keys alive at the revision, and leases. */
  keys: number;
  leases: number;
  /** Alarms active in the file's state, not carried into the new cluster. */
  alarmsCleared: string[];
}

export interface RestoreResult extends RestorePlan {
  /** The data directory, absolute. */
  dataDir: string;
  /** Staging directories of earlier restores of this target that were removed first. */
  removedStaging: string[];
}

/**
 * Checks the file and the flags and computes what to write; pure (no I/O). Bad flags throw
 * ConfigError, a bad file BadInputError.
 */
export function planRestore(request: RestoreRequest): RestorePlan {
  const own = checkFlags(request);
  const read = readSnapshotFile(request.file, { verifyHash: request.skipHashCheck !== true });
  const machine = decodeSnapshotState(read);
  const bump = request.bumpRevision ?? 0;
  // Alarms name members of the cluster the file came from; the new cluster starts without
  // them (its own quota decides anew), so the state is re-encoded without them.
  const alarmsCleared = machine.alarms.map((a) => `${a.alarm} of member ${a.member}`);
  machine.alarms = [];
  const kvBytes =
    bump > 0
      ? bumpAndCompact(machine, bump)
      : alarmsCleared.length > 0
        ? machine.snapshot()
        : read.machine;

  // In name order, so members given --initial-cluster in different orders still write the
  // same bytes (a new cluster's founding entries, by contrast, follow the flag's order).
  const byName = [...request.initialCluster].sort((a, b) => (a.name < b.name ? -1 : 1));
  const founders = foundingMembers(request.clusterToken, byName);
  const table = new MemberTable();
  for (const { node, context } of founders) {
    const change: ConfChange = { changes: [{ type: 'add-voter', node }], context };
    table.applyConfChange(change);
  }
  const index = founders.length;
  const term = 1;
  const confState: ConfState = {
    voters: founders.map((f) => f.node),
    learners: [],
    votersOutgoing: [],
    learnersNext: [],
    autoLeave: false,
  };
  const snapshot: Snapshot = {
    metadata: { index, term, confState },
    data: concatBytes(encodeClusterSnapshot(table.toStored(), [kvBytes])),
  };
  const members = table.list().map((m) => ({ name: m.name, id: m.id, peerUrl: m.peerUrls[0]! }));
  assert(members.length === namedMembers(request.initialCluster).size, 'one member per name');
  const identity = founderIdentity(request.clusterToken, own.name);
  assert(
    members.some((m) => m.id.toString() === identity.memberId),
    'this member is in its own table',
  );
  return {
    meta: read.meta,
    revision: machine.revision(),
    compactRevision: machine.compactRevision(),
    identity,
    clusterId: BigInt(table.clusterId),
    members,
    snapshot,
    hardState: { term, vote: '', commit: index },
    keys: liveKeys(machine),
    leases: machine.leases.ids().length,
    alarmsCleared,
  };
}

/**
 * This member in --initial-cluster, after checking --initial-advertise-peer-urls against it
 * (the same set of URLs, as etcd checks) and the revision options (both or neither, as
 * etcdutl requires). Every member is a founder here, so each is named.
 */
function checkFlags(request: RestoreRequest): ClusterMember {
  if (request.initialCluster.some((m) => m.name === ''))
    throw new ConfigError('--initial-cluster: every member of a restored cluster needs a name');
  const own = request.initialCluster.filter((m) => m.name === request.name);
  if (own.length === 0)
    throw new ConfigError(
      `--initial-cluster does not list this member's name ${JSON.stringify(request.name)}`,
    );
  const bump = request.bumpRevision ?? 0;
  if (!Number.isSafeInteger(bump) || bump < 0)
    throw new ConfigError(`--bump-revision must be a whole number, not ${String(bump)}`);
  if (bump > 0 !== (request.markCompacted === true))
    throw new ConfigError(
      '--mark-compacted is required with --bump-revision > 0, and allowed only with it (as etcdutl requires)',
    );
  const advertised = request.advertisePeerUrls;
  if (advertised !== undefined) {
    const given = [
      ...new Set(advertised.map((u) => parseUrl(u, 'initial-advertise-peer-urls').url)),
    ];
    checkAdvertisedPeerUrls(request.name, request.initialCluster, given);
  }
  return own[0]!;
}

/**
 * The KV bytes of the state moved `by` revisions forward and compacted there (etcdutl's
 * revision bump and scheduled compaction, done here before any member starts), re-encoded
 * and read back: the pair check of the change.
 */
function bumpAndCompact(machine: KvMachine, by: number): Uint8Array {
  assert(by > 0, 'a bump of at least one revision');
  const store = machine.store;
  const revision = store.revision + by;
  if (!Number.isSafeInteger(revision))
    throw new ConfigError(
      `--bump-revision ${by} takes revision ${store.revision} past ${Number.MAX_SAFE_INTEGER}, the largest revision Chorus serves exactly`,
    );
  const keys = liveKeys(machine);
  store.bumpRevision(by);
  store.compact(revision);
  const bytes = machine.snapshot();
  const check = new KvMachine(new LeaseTable(1));
  check.restore(bytes);
  assert(
    check.revision() === revision &&
      check.compactRevision() === revision &&
      liveKeys(check) === keys &&
      JSON.stringify(check.leases.snapshot()) === JSON.stringify(machine.leases.snapshot()),
    'the bumped state reads back as planned',
  );
  return bytes;
}

/**
 * Refuses a data directory that exists with anything in it: a restore never merges into or
 * overwrites a member's state.
 */
function checkTarget(dataDir: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(dataDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTDIR')
      throw new BadInputError(`--data-dir ${dataDir} exists and is not a directory`);
    throw new BadInputError(`--data-dir ${dataDir}: ${(error as Error).message}`);
  }
  if (entries.length > 0)
    throw new BadInputError(
      `--data-dir ${dataDir} already exists and is not empty (it holds ${entries.slice(0, 3).join(', ')}); ` +
        'restore writes a new data directory: choose another path or remove this one',
    );
}

/** A staging directory is the target's path, this, and mkdtemp's six random characters. */
const stagingInfix = '.restoring-';
/** Staging directories beside one target that one restore looks at; more is not a leftover. */
const stagingScannedMax = 1_000;

/**
 * Removes what restores of `target` killed midway left beside it: directories named as
 * `mkdtemp` names this restore's own staging directory (`<target>.restoring-` and six
 * letters or digits), nothing else. One whose LOCK names a live process other than this one
 * belongs to a restore of the same target still running, and is left to it (of the two, the
 * one that renames second fails, as the target is then not empty). Returns what it removed.
 */
function removeStaleStaging(target: string, log: Logger): string[] {
  const prefix = `${basename(target)}${stagingInfix}`;
  const pattern = new RegExp(`^${escapeRegExp(prefix)}[A-Za-z0-9]{6}$`);
  const parent = dirname(target);
  const candidates = fs
    .readdirSync(parent, { withFileTypes: true })
    .filter((e) => e.isDirectory() && pattern.test(e.name))
    .map((e) => join(parent, e.name));
  if (candidates.length > stagingScannedMax)
    throw new BadInputError(
      `${candidates.length} leftover staging directories beside ${target} (${prefix}*); remove them by hand`,
    );
  const removed: string[] = [];
  for (const dir of candidates) {
    const owner = liveLockHolder(dir);
    if (owner !== undefined) {
      log.warn('another restore of this data directory is under way', { staging: dir, pid: owner });
      continue;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
    log.info('removed the staging directory of an earlier restore', { staging: dir });
  }
  if (removed.length > 0) syncDirectory(parent);
  return removed;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Plans the restore, then writes the data directory (see the file comment). `done` gets the
 * plan once the directory is durable in its place, or why nothing was restored.
 */
export function restoreSnapshot(
  request: RestoreRequest,
  log: Logger,
  done: (error: Error | undefined, result: RestoreResult | undefined) => void,
): void {
  let plan: RestorePlan;
  const target = resolve(request.dataDir);
  let staging: string;
  let removedStaging: string[];
  try {
    plan = planRestore(request);
    checkTarget(target);
    fs.mkdirSync(dirname(target), { recursive: true });
    removedStaging = removeStaleStaging(target, log);
    staging = fs.mkdtempSync(`${target}${stagingInfix}`);
  } catch (error) {
    return done(error as Error, undefined);
  }
  const fail = (error: Error): void => {
    fs.rmSync(staging, { recursive: true, force: true });
    done(error, undefined);
  };
  writeDataDir(staging, request, plan, log, (error) => {
    if (error !== undefined) return fail(error);
    try {
      // Renaming over an empty directory replaces it; a non-empty one (made meanwhile) fails.
      fs.renameSync(staging, target);
      syncDirectory(dirname(target));
    } catch (renameError) {
      return fail(
        new BadInputError(
          `cannot move the restored directory into ${target}: ${(renameError as Error).message}`,
          { cause: renameError },
        ),
      );
    }
    log.info('restored snapshot', {
      dataDir: target,
      revision: plan.meta.revision,
      memberId: hexId(BigInt(plan.identity.memberId)),
      clusterId: hexId(plan.clusterId),
      raftIndex: plan.snapshot.metadata.index,
    });
    done(undefined, { ...plan, dataDir: target, removedStaging });
  });
}

/** version.json, then the Raft snapshot and hard state through storage, then read back. */
function writeDataDir(
  dir: string,
  request: RestoreRequest,
  plan: RestorePlan,
  log: Logger,
  done: (error: Error | undefined) => void,
): void {
  let release: () => void;
  let env: { disk: NodeDisk; log: Logger };
  try {
    const opened = openDataDir(dir, request.name, request.clusterToken);
    release = () => opened.release();
    opened.record(plan.identity);
    env = { disk: new NodeDisk(dir), log: log.child({ restoring: basename(dir) }) };
  } catch (error) {
    return done(error as Error);
  }
  const finish = (error: Error | undefined): void => {
    release();
    done(error);
  };
  RaftStorage.open(env, raftDirName, (openError, storage, recovered) => {
    if (openError !== undefined || storage === undefined || recovered === undefined)
      return finish(openError ?? new Error('cannot open Raft storage'));
    assert(
      recovered.snapshot === undefined && recovered.entries.length === 0,
      'a new storage is empty',
    );
    // The snapshot, then the hard state that commits it, then the close, each durable in turn.
    const closeAfter = (error: Error | undefined): void =>
      storage.close((closeError) => {
        if (error !== undefined || closeError !== undefined) return finish(error ?? closeError);
        readBack(env, plan, finish);
      });
    storage.saveSnapshot(plan.snapshot, (snapshotError) => {
      if (snapshotError !== undefined) return closeAfter(snapshotError);
      storage.save({ hardState: plan.hardState }, closeAfter);
    });
  });
}

/** Opens the written storage again and compares what it recovers with the plan. */
function readBack(
  env: { disk: NodeDisk; log: Logger },
  plan: RestorePlan,
  done: (error: Error | undefined) => void,
): void {
  RaftStorage.open(env, raftDirName, (error, storage, recovered) => {
    if (error !== undefined || storage === undefined || recovered === undefined)
      return done(error ?? new Error('cannot reopen Raft storage'));
    storage.close((closeError) => done(closeError ?? checkReadBack(plan, recovered)));
  });
}

/** What storage recovers is exactly what the plan wrote (a pair check of the write). */
function checkReadBack(plan: RestorePlan, recovered: Recovered): Error | undefined {
  const snapshot = recovered.snapshot;
  const same =
    snapshot !== undefined &&
    snapshot.metadata.index === plan.snapshot.metadata.index &&
    snapshot.metadata.term === plan.snapshot.metadata.term &&
    JSON.stringify(snapshot.metadata.confState) ===
      JSON.stringify(plan.snapshot.metadata.confState) &&
    Buffer.compare(joinedBytes(snapshot.data), joinedBytes(plan.snapshot.data)) === 0 &&
    recovered.entries.length === 0 &&
    recovered.hardState.term === plan.hardState.term &&
    recovered.hardState.vote === plan.hardState.vote &&
    recovered.hardState.commit === plan.hardState.commit;
  return same ? undefined : new Error('the restored Raft state did not read back as written');
}

function syncDirectory(path: string): void {
  const fd = fs.openSync(path, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
