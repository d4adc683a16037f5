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
import { describeSnapshot, snapshotTrailerBytes } from '../server/snapshot-file.js';
import { clientCommand, exitFailed, flagsOf, outputFormats, withClient } from './client-common.js';
import type { OutputFormat } from './client-common.js';
import { humanBytes, Printer } from './client-print.js';
import type { CliContext } from './context.js';

export function registerSnapshot(program: Command, ctx: CliContext): void {
  const snapshot = program.command('snapshot').description('snapshot commands: save, status');
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
