/**
 * The real disk: node:fs with callbacks, rooted at one directory. `sync` is fsync of the
 * file; `syncDir` opens the directory and fsyncs it, which is what makes a create or a
 * rename durable on Linux.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DiskError } from '../../core/errors.js';
import type { Disk, DiskFile, Done, DoneWith } from '../env.js';

/**
 * Writes up to this size go to the page cache synchronously (fs.writeSync), completing on the
 * next tick; larger ones (snapshot files) go to libuv's thread pool. A small write to the
 * page cache takes microseconds, while a thread-pool round trip takes 0.1–0.5 ms on a busy
 * machine — and every WAL save is a write followed by an fsync, so the round trip delayed
 * the fsync, on the leader and on every follower, on each write's critical path.
 */
export const syncWriteBytesMax = 64 * 1024;

function wrap(error: NodeJS.ErrnoException, what: string): DiskError {
  const code =
    error.code === 'ENOSPC' ? 'disk-full' : error.code === 'ENOENT' ? 'not-found' : 'disk-io';
  return new DiskError(code, `${what}: ${error.code ?? error.message}`, { cause: error });
}

class NodeFile implements DiskFile {
  constructor(
    readonly path: string,
    private readonly fd: number,
    private bytes: number,
  ) {}

  size(): number {
    return this.bytes;
  }

  append(data: Uint8Array, done: Done): void {
    this.write(this.bytes, data, done);
  }

  write(offset: number, data: Uint8Array, done: Done): void {
    this.bytes = Math.max(this.bytes, offset + data.length);
    if (data.length <= syncWriteBytesMax) {
      const error = writeAllSync(this.fd, data, offset);
      process.nextTick(() => done(error ? wrap(error, `write ${this.path}`) : undefined));
      return;
    }
    writeAll(this.fd, data, 0, offset, (error) =>
      done(error ? wrap(error, `write ${this.path}`) : undefined),
    );
  }

  read(offset: number, length: number, done: DoneWith<Uint8Array>): void {
    const target = Buffer.alloc(length);
    fs.read(this.fd, target, 0, length, offset, (error, bytesRead) => {
      if (error) done(wrap(error, `read ${this.path}`), undefined);
      else done(undefined, target.subarray(0, bytesRead));
    });
  }

  truncate(size: number, done: Done): void {
    this.bytes = size;
    fs.ftruncate(this.fd, size, (error) =>
      done(error ? wrap(error, `truncate ${this.path}`) : undefined),
    );
  }

  sync(done: Done): void {
    fs.fdatasync(this.fd, (error) => done(error ? wrap(error, `fsync ${this.path}`) : undefined));
  }

  close(done: Done): void {
    fs.close(this.fd, (error) => done(error ? wrap(error, `close ${this.path}`) : undefined));
  }
}

function writeAll(
  fd: number,
  data: Uint8Array,
  from: number,
  position: number,
  done: (error: NodeJS.ErrnoException | null) => void,
): void {
  fs.write(fd, data, from, data.length - from, position, (error, written) => {
    if (error) return done(error);
    if (from + written < data.length)
      return writeAll(fd, data, from + written, position + written, done);
    done(null);
  });
}

function writeAllSync(
  fd: number,
  data: Uint8Array,
  position: number,
): NodeJS.ErrnoException | undefined {
  try {
    for (let from = 0; from < data.length;) {
      from += fs.writeSync(fd, data, from, data.length - from, position + from);
    }
    return undefined;
  } catch (error) {
    return error as NodeJS.ErrnoException;
  }
}

export class NodeDisk implements Disk {
  readonly root: string;

  constructor(root: string) {
    // Absolute, so the containment check below compares like with like.
    this.root = path.resolve(root);
    fs.mkdirSync(this.root, { recursive: true });
  }

  private resolve(relative: string): string {
    const full = path.resolve(this.root, relative);
    if (full !== this.root && !full.startsWith(this.root + path.sep)) {
      throw new DiskError('disk-io', `path ${relative} escapes the data directory`);
    }
    return full;
  }

  open(file: string, done: DoneWith<DiskFile>): void {
    fs.open(this.resolve(file), 'a+', (error, fd) => {
      if (error) return done(wrap(error, `open ${file}`), undefined);
      // 'a+' would force appends; reopen r+ so positional writes land where asked.
      fs.close(fd, () => {
        fs.open(this.resolve(file), 'r+', (error2, fd2) => {
          if (error2) return done(wrap(error2, `open ${file}`), undefined);
          fs.fstat(fd2, (error3, stat) => {
            if (error3) return done(wrap(error3, `stat ${file}`), undefined);
            done(undefined, new NodeFile(file, fd2, stat.size));
          });
        });
      });
    });
  }

  readFile(file: string, done: DoneWith<Uint8Array>): void {
    fs.readFile(this.resolve(file), (error, data) => {
      if (error) done(wrap(error, `read ${file}`), undefined);
      else done(undefined, data);
    });
  }

  list(dir: string, done: DoneWith<string[]>): void {
    fs.readdir(this.resolve(dir), (error, names) => {
      if (error) done(wrap(error, `list ${dir}`), undefined);
      else done(undefined, names.sort());
    });
  }

  mkdir(dir: string, done: Done): void {
    fs.mkdir(this.resolve(dir), { recursive: true }, (error) =>
      done(error ? wrap(error, `mkdir ${dir}`) : undefined),
    );
  }

  rename(from: string, to: string, done: Done): void {
    fs.rename(this.resolve(from), this.resolve(to), (error) =>
      done(error ? wrap(error, `rename ${from} ${to}`) : undefined),
    );
  }

  remove(file: string, done: Done): void {
    fs.rm(this.resolve(file), { force: true, recursive: true }, (error) =>
      done(error ? wrap(error, `remove ${file}`) : undefined),
    );
  }

  syncDir(dir: string, done: Done): void {
    fs.open(this.resolve(dir), 'r', (error, fd) => {
      if (error) return done(wrap(error, `open dir ${dir}`));
      fs.fsync(fd, (error2) => {
        fs.close(fd, () => done(error2 ? wrap(error2, `fsync dir ${dir}`) : undefined));
      });
    });
  }
}
