/** The disk's own limit, measured beside a benchmark so its figures can be read against it. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Appends of `bytes` bytes, each followed by fdatasync, in a fresh file under `dir`: per second. */
export function fsyncRate(dir: string, probeMs: number, bytes = 256): number {
  const file = path.join(dir, 'fsync-probe');
  const fd = fs.openSync(file, 'w');
  const data = Buffer.alloc(bytes, 0x5a);
  let count = 0;
  const started = performance.now();
  let elapsed = 0;
  try {
    while ((elapsed = performance.now() - started) < probeMs) {
      fs.writeSync(fd, data);
      fs.fdatasyncSync(fd);
      count++;
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return count / (elapsed / 1000);
}
