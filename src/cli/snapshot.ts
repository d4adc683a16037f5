/**
 * `chorus snapshot save <file>`: streams Maintenance.Snapshot from one member into
 * `<file>.part`, checks the SHA-256 trailer the stream ends with, fsyncs the file and renames
 * it to `<file>`, so a file of that name is always a whole snapshot. A progress bar on stderr
 * (when it is a terminal) shows the bytes received against the total the server announces.
 * Like etcdctl, it asks exactly one endpoint: a snapshot is one member's state, and "any of
 * these" would make the file's origin a guess.
 *
 * `chorus snapshot status <file>`: verifies a saved Chorus snapshot (trailer, layout, and the
 * whole KV state decoded) and prints etcdctl's columns: hash, revision, total keys, size.
 *
 * `chorus snapshot restore <file>`: makes a new data directory for one member of a new
 * cluster from a saved snapshot, with etcdctl's flags (src/server/restore.ts). Run once per
 * member with the same file and flags but its own --name and --data-dir, then start each
 * member with `chorus server` and the same --name, --data-dir, --initial-cluster and token.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { status as Status } from '@grpc/grpc-js';
import cliProgress from 'cli-progress';
import { Option, type Command } from 'commander';
import type { EtcdClient } from '../client/client.js';
import { snapshotChunksMax } from '../client/constants.js';
import { ClientInputError, EtcdClientError, fromGrpcError } from '../client/errors.js';
import type { SnapshotResponse } from '../client/types.js';
import { isNodeId } from '../core/ids.js';
import { nodeLogger } from '../env/node/index.js';
import { ConfigError, nonNegativeInteger, parseInitialCluster } from '../server/config.js';
import { hexId } from '../server/ids.js';
import { restoreSnapshot, type RestoreRequest, type RestoreResult } from '../server/restore.js';
import { describeSnapshot, snapshotTrailerBytes } from '../server/snapshot-file.js';
import {
  clientCommand,
  exitFailed,
  exitUsage,
  flagsOf,
  outputFormats,
  withClient,
} from './client-common.js';
import type { OutputFormat } from './client-common.js';
import { humanBytes, Printer } from './client-print.js';
import type { CliContext } from './context.js';

export function registerSnapshot(program: Command, ctx: CliContext): void {
  const snapshot = program
    .command('snapshot')
    .description('snapshot commands: save, status, restore')
    .addHelpText(
      'after',
      `
A snapshot is one member's KV state (every key's retained history, revision, compact
revision, leases) in a Chorus snapshot file, not etcd's bbolt database. To move a cluster's
data into a new cluster: save, restore once per new member, start the members.`,
    );
  snapshot
    .command('status <file>')
    .description('verify a saved Chorus snapshot and print its hash, revision, keys and size')
    .addOption(
      new Option('-w, --write-out <format>', 'output format')
        .choices(outputFormats)
        .default('simple'),
    )
    .action((file: string, options: { writeOut: OutputFormat }) => {
      try {
        const status = describeSnapshot(fs.readFileSync(file));
        new Printer(ctx, options.writeOut).snapshotStatus(status);
      } catch (error) {
        ctx.err(`Error: ${error instanceof Error ? error.message : String(error)}`);
        ctx.exitCode = exitFailed;
      }
    });
  registerRestore(snapshot, ctx);
  clientCommand(snapshot, 'save <file>', "save one member's snapshot to a file").action(
    async (file: string, _o, command: Command) => {
      const flags = flagsOf(command);
      await withClient(ctx, flags, async (client) => {
        if (client.endpoints.length !== 1)
          throw new ClientInputError(
            `snapshot must be requested to one selected node, not multiple [${client.endpoints.join(' ')}]`,
          );
        const version = await saveSnapshot(client, file);
        ctx.out(`Snapshot saved at ${file}`);
        if (version !== '') ctx.out(`Server version ${version}`);
      });
    },
  );
}

interface RestoreFlags {
  dataDir?: string;
  name: string;
  initialCluster?: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls?: string;
  skipHashCheck: boolean;
  bumpRevision?: string;
  markCompacted: boolean;
}

const restoreHelp = `
Every member of the new cluster is restored from the same file with the same
--initial-cluster and --initial-cluster-token; only --name and --data-dir differ. The old
cluster's membership is discarded: the new one is exactly --initial-cluster, with the
member ids a new cluster with these flags would have. Then start each member with
chorus server and the same --name, --data-dir, --initial-cluster and
--initial-cluster-token (--initial-cluster-state new, the default; a data directory that
holds state ignores it). New writes continue from the snapshot's revision, or, with
--bump-revision N --mark-compacted (both or neither, as etcdutl requires), from the
snapshot's revision + N, with every revision below that compacted: clients that read or
watched the old cluster past the snapshot get "compacted" instead of new data under
revisions they already saw.

A restore killed midway leaves <data-dir>.restoring-XXXXXX beside the data directory; the
next restore of the same data directory removes it first.

Example, member n1 of three:
  chorus snapshot restore backup.snap --name n1 --data-dir ./n1 \\
    --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2480,n3=http://127.0.0.1:2580 \\
    --initial-cluster-token restored-1 --initial-advertise-peer-urls http://127.0.0.1:2380`;

function registerRestore(snapshot: Command, ctx: CliContext): void {
  snapshot
    .command('restore <file>')
    .description(
      "make a new member's data directory from a snapshot file, for a new cluster of --initial-cluster",
    )
    .option('--data-dir <dir>', 'the data directory to create (default: <name>.chorus)')
    .option('--name <name>', "this member's name in --initial-cluster", 'default')
    .option(
      '--initial-cluster <name=url,…>',
      'every member of the new cluster and its peer URL (default: <name>=http://localhost:2380)',
    )
    .option(
      '--initial-cluster-token <token>',
      'the new cluster token (member and cluster ids derive from it)',
      'etcd-cluster',
    )
    .option(
      '--initial-advertise-peer-urls <urls>',
      "this member's peer URLs; must be what --initial-cluster gives it (default: the URLs given there)",
    )
    .option('--skip-hash-check', "restore even if the file's SHA-256 trailer does not match", false)
    .option(
      '--bump-revision <n>',
      "how much to increase the snapshot's revision by (requires --mark-compacted)",
    )
    .option(
      '--mark-compacted',
      'compact the restored store at its revision, the bumped one (required if --bump-revision > 0, disallowed otherwise)',
      false,
    )
    .addHelpText('after', restoreHelp)
    .action(async (file: string, flags: RestoreFlags) => {
      let request: RestoreRequest;
      try {
        request = restoreRequest(file, flags);
      } catch (error) {
        ctx.err(`Error: ${error instanceof Error ? error.message : String(error)}`);
        ctx.exitCode = error instanceof ConfigError ? exitUsage : exitFailed;
        return;
      }
      const log = nodeLogger({ command: 'snapshot restore' }, 'warn');
      const result = await new Promise<RestoreResult | Error>((resolve) =>
        restoreSnapshot(request, log, (error, restored) => resolve(error ?? restored!)),
      );
      if (result instanceof Error) {
        ctx.err(`Error: ${result.message}`);
        ctx.exitCode = result instanceof ConfigError ? exitUsage : exitFailed;
        return;
      }
      printRestored(ctx, file, request, result);
    });
}

function restoreRequest(file: string, flags: RestoreFlags): RestoreRequest {
  if (!isNodeId(flags.name))
    throw new ConfigError(`--name ${JSON.stringify(flags.name)}: use 1-64 of [A-Za-z0-9_.-]`);
  const dataDir = flags.dataDir ?? `${flags.name}.chorus`;
  if (dataDir.trim() === '') throw new ConfigError('--data-dir must not be empty');
  const initialCluster = parseInitialCluster(
    flags.initialCluster ?? `${flags.name}=http://localhost:2380`,
  );
  const advertised = flags.initialAdvertisePeerUrls
    ?.split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  const bump = nonNegativeInteger(flags.bumpRevision ?? '0', 'bump-revision');
  return {
    file: fs.readFileSync(file),
    dataDir,
    name: flags.name,
    initialCluster,
    clusterToken: flags.initialClusterToken,
    ...(advertised === undefined ? {} : { advertisePeerUrls: advertised }),
    skipHashCheck: flags.skipHashCheck,
    bumpRevision: bump,
    markCompacted: flags.markCompacted,
  };
}

function printRestored(
  ctx: CliContext,
  file: string,
  request: RestoreRequest,
  r: RestoreResult,
): void {
  const leases = r.leases === 1 ? '1 lease' : `${r.leases} leases`;
  for (const dir of r.removedStaging)
    ctx.out(`Removed ${dir}, left by an earlier restore of ${r.dataDir} that did not finish`);
  ctx.out(
    `Restored snapshot ${file} into ${r.dataDir}: revision ${r.meta.revision} (compacted at ${r.meta.compactRevision}), ${r.keys} keys, ${leases}`,
  );
  if (r.alarmsCleared.length > 0)
    ctx.out(`Alarms not carried into the new cluster: ${r.alarmsCleared.join(', ')}`);
  if (r.revision !== r.meta.revision)
    ctx.out(
      `Revision bumped by ${r.revision - r.meta.revision} to ${r.revision} and compacted there: the first write gets ${r.revision + 1}`,
    );
  ctx.out(
    `Member ${request.name} (id ${hexId(BigInt(r.identity.memberId))}) of cluster ${hexId(r.clusterId)}; members: ${r.members.map((m) => `${m.name}=${m.peerUrl}`).join(',')}`,
  );
  ctx.out(
    `Start it with: chorus server --name ${request.name} --data-dir ${r.dataDir} --initial-cluster ${request.initialCluster.map((m) => `${m.name}=${m.peerUrl}`).join(',')} --initial-cluster-token ${request.clusterToken} (and its listen and advertise URLs)`,
  );
}

/** Streams the snapshot into `<file>.part`, then fsync and rename; returns the server's version. */
async function saveSnapshot(client: EtcdClient, file: string): Promise<string> {
  const endpoint = await client.reachable();
  const partPath = `${file}.part`;
  const fd = fs.openSync(partPath, 'w', 0o600);
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          format: 'snapshot [{bar}] {percentage}% {received} of {size}',
          stream: process.stderr,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let renamed = false;
  try {
    const trailer = new TrailerCheck();
    const version = await receive(client, endpoint, (chunk, received, total) => {
      fs.writeSync(fd, chunk);
      trailer.push(chunk);
      const labels = { received: humanBytes(received), size: humanBytes(total) };
      if (bar === undefined) return;
      if (bar.getTotal() !== total) bar.start(total, received, labels);
      else bar.update(received, labels);
    });
    trailer.check(endpoint);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(partPath, file);
    renamed = true;
    return version;
  } finally {
    bar?.stop();
    if (!renamed) {
      try {
        fs.closeSync(fd);
      } catch {
        // Already closed after the fsync; only the rename failed.
      }
      fs.rmSync(partPath, { force: true });
    }
  }
}

function receive(
  client: EtcdClient,
  endpoint: string,
  write: (chunk: Buffer, receivedBytes: number, totalBytes: number) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = client.snapshot(endpoint);
    let received = 0;
    let chunks = 0;
    let version = '';
    let remaining = -1;
    const failWith = (error: unknown): void => {
      stream.cancel();
      reject(error instanceof Error ? error : new Error(String(error)));
    };
    stream.on('data', (r: SnapshotResponse) => {
      if (++chunks > snapshotChunksMax)
        return failWith(
          new Error(`the snapshot stream sent more than ${snapshotChunksMax} chunks`),
        );
      received += r.blob.length;
      remaining = Number(r.remainingBytes);
      if (r.version !== '') version = r.version;
      try {
        write(r.blob, received, received + remaining);
      } catch (error) {
        failWith(error);
      }
    });
    stream.on('error', (error) => {
      const failure = fromGrpcError(error, endpoint);
      if (failure.code !== Status.UNIMPLEMENTED) return reject(failure);
      reject(
        new EtcdClientError(
          failure.code,
          `${endpoint} does not implement snapshots yet (${failure.message})`,
          endpoint,
          { cause: failure, local: true },
        ),
      );
    });
    stream.on('end', () => {
      if (remaining !== 0)
        return reject(
          new EtcdClientError(Status.DATA_LOSS, 'the snapshot stream ended early', endpoint, {
            local: true,
          }),
        );
      resolve(version);
    });
  });
}

/**
 * The stream ends with the SHA-256 of every byte before it (etcd's convention, which Chorus
 * keeps): hashes all but the last 32 bytes seen so far, and compares them at the end.
 */
class TrailerCheck {
  private readonly hash = createHash('sha256');
  private held: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): void {
    const all = Buffer.concat([this.held, chunk]);
    const keep = Math.min(all.length, snapshotTrailerBytes);
    this.hash.update(all.subarray(0, all.length - keep));
    this.held = all.subarray(all.length - keep);
  }

  check(endpoint: string): void {
    const computed = this.hash.digest();
    if (this.held.length === snapshotTrailerBytes && computed.equals(this.held)) return;
    throw new EtcdClientError(
      Status.DATA_LOSS,
      'the snapshot stream failed its SHA-256 check (its last 32 bytes are not the hash of the rest)',
      endpoint,
      { local: true },
    );
  }
}
