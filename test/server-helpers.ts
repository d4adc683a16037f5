// Shared by the server tests: real `chorus server` processes on loopback with ephemeral
// ports, each started exactly as an operator would (node bin/chorus.js server …), and
// waits that are all bounded.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../src/cli/main.js';
import { tlsServerFlags } from '../src/server/tls.js';

export const chorusBin = fileURLToPath(new URL('../../bin/chorus.js', import.meta.url));

export interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  child: ChildProcess;
  /** The last lines the process wrote to stderr (its JSON log). */
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Cluster {
  root: string;
  members: Member[];
  initialCluster: string;
  endpoints: string[];
  /** Set when the client URLs are https://: the files a client needs (testTls). */
  tls?: TestTls;
}

/** The certificates of testdata/tls (scripts/gen-test-certs.sh makes them), as paths. */
export interface TestTls {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherClientCert: string;
  otherClientKey: string;
  /** A second CA, and a server certificate it signed (the same SANs as serverCert). */
  otherCa: string;
  otherServerCert: string;
  otherServerKey: string;
}

const tlsDir = fileURLToPath(new URL('../../testdata/tls/', import.meta.url));
export const testTls: TestTls = {
  ca: join(tlsDir, 'ca.crt'),
  serverCert: join(tlsDir, 'server.crt'),
  serverKey: join(tlsDir, 'server.key'),
  clientCert: join(tlsDir, 'client.crt'),
  clientKey: join(tlsDir, 'client.key'),
  otherClientCert: join(tlsDir, 'other-client.crt'),
  otherClientKey: join(tlsDir, 'other-client.key'),
  otherCa: join(tlsDir, 'other-ca.crt'),
  otherServerCert: join(tlsDir, 'other-server.crt'),
  otherServerKey: join(tlsDir, 'other-server.key'),
};

/** Ports that were free a moment ago (bound to port 0, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Which of a member's URLs are https://, with testdata/tls's certificates. */
export interface Secured {
  client?: boolean;
  peer?: boolean;
}

/**
 * The arguments of one member's `chorus server`. `secured.client`: the client URL is
 * https://, served with testdata/tls's server certificate, and clients must present one the
 * test CA signed (--client-cert-auth). `secured.peer`: the same between members; the peer
 * URL is https:// then, and so must `initialCluster`'s be.
 */
export function serverArgs(
  name: string,
  dataDir: string,
  clientPort: number,
  peerPort: number,
  initialCluster: string,
  secured: Secured = {},
): string[] {
  const scheme = secured.client === true ? 'https' : 'http';
  const peerScheme = secured.peer === true ? 'https' : 'http';
  const files = { ca: testTls.ca, cert: testTls.serverCert, key: testTls.serverKey };
  const tlsArgs = [
    ...(secured.client === true ? tlsServerFlags('client', files) : []),
    ...(secured.peer === true ? tlsServerFlags('peer', files) : []),
  ];
  return [
    chorusBin,
    'server',
    '--name',
    name,
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    `${scheme}://127.0.0.1:${clientPort}`,
    '--advertise-client-urls',
    `${scheme}://127.0.0.1:${clientPort}`,
    '--listen-peer-urls',
    `${peerScheme}://127.0.0.1:${peerPort}`,
    '--initial-cluster',
    initialCluster,
    // Faster elections than etcd's defaults keep the tests short.
    '--heartbeat-interval',
    '50',
    '--election-timeout',
    '500',
    ...tlsArgs,
  ];
}

/** Starts a process and keeps its last stderr lines. */
export function spawnChorus(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { child: ChildProcess; stderr: string[]; exited: Member['exited'] } {
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CHORUS_LOG: 'info', ...env },
  });
  const stderr: string[] = [];
  let partial = '';
  const keep = (chunk: Buffer): void => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    stderr.push(...lines);
    if (stderr.length > 400) stderr.splice(0, stderr.length - 400);
  };
  child.stderr.on('data', keep);
  child.stdout.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr, exited };
}

/**
 * `extraArgs`: more `chorus server` flags, the same for every member. `secured`: https://
 * client or peer URLs (see serverArgs).
 */
export async function startCluster(
  size: number,
  extraArgs: string[] = [],
  secured: Secured = {},
): Promise<Cluster> {
  const root = fs.mkdtempSync(join(tmpdir(), 'chorus-server-test-'));
  const ports = await freePorts(2 * size);
  const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const peerScheme = secured.peer === true ? 'https' : 'http';
  const initialCluster = names
    .map((n, i) => `${n}=${peerScheme}://127.0.0.1:${ports[2 * i + 1]}`)
    .join(',');
  const members = names.map((name, i): Member => {
    const clientPort = ports[2 * i]!;
    const peerPort = ports[2 * i + 1]!;
    const dataDir = join(root, name);
    const started = spawnChorus([
      ...serverArgs(name, dataDir, clientPort, peerPort, initialCluster, secured),
      ...extraArgs,
    ]);
    return { name, clientPort, peerPort, dataDir, ...started };
  });
  const cluster: Cluster = {
    root,
    members,
    initialCluster,
    endpoints: members.map((m) => `127.0.0.1:${m.clientPort}`),
    ...(secured.client === true ? { tls: testTls } : {}),
  };
  try {
    await waitForLeader(cluster, 20_000);
  } catch (error) {
    await stopCluster(cluster);
    throw error;
  }
  return cluster;
}

export interface Health {
  health: string;
  mode: string;
  leader: string;
  role: string;
  term: number;
}

export async function health(port: number, tls?: TestTls): Promise<Health | undefined> {
  try {
    if (tls !== undefined)
      return JSON.parse((await httpsRequest(port, 'GET', '/health', tls)).body) as Health;
    const response = await fetch(`http://127.0.0.1:${port}/health`, {
      signal: AbortSignal.timeout(1000),
    });
    return (await response.json()) as Health;
  } catch {
    return undefined;
  }
}

/**
 * One HTTP/1.1 request over TLS to a member's client port, verified with the test CA and
 * with the test client's certificate unless `clientCert` is false. Fails after 2 s.
 */
export function httpsRequest(
  port: number,
  method: 'GET' | 'POST',
  path: string,
  tls: TestTls,
  options: { body?: string; clientCert?: boolean } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        ca: fs.readFileSync(tls.ca),
        ...(options.clientCert === false
          ? {}
          : { cert: fs.readFileSync(tls.clientCert), key: fs.readFileSync(tls.clientKey) }),
        timeout: 2000,
        agent: false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        response.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(options.body);
  });
}

/** Waits until every member serves and names the same leader; returns its name. */
export async function waitForLeader(cluster: Cluster, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: (Health | undefined)[] = [];
  while (Date.now() < deadline) {
    last = await Promise.all(cluster.members.map((m) => health(m.clientPort, cluster.tls)));
    const leader = last[0]?.leader;
    if (
      leader !== undefined &&
      leader !== '' &&
      last.every((h) => h?.mode === 'serving' && h.leader === leader)
    )
      return leader;
    await sleep(100);
  }
  const logs = cluster.members.map((m) => `--- ${m.name}\n${m.stderr.slice(-15).join('\n')}`);
  throw new Error(`no leader within ${timeoutMs} ms: ${JSON.stringify(last)}\n${logs.join('\n')}`);
}

/** How a process ended, or 'still running' once `ms` have passed. */
export function exitWithin(m: Pick<Member, 'exited'>, ms: number): Promise<unknown> {
  return Promise.race([m.exited, sleep(ms).then(() => 'still running')]);
}

/** SIGTERM to every member still running; resolves with each exit. Kills what hangs. */
export async function stopCluster(
  cluster: Cluster,
  timeoutMs = 10_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }[]> {
  for (const m of cluster.members) if (m.child.exitCode === null) m.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const m of cluster.members) if (m.child.exitCode === null) m.child.kill('SIGKILL');
  }, timeoutMs);
  const exits = await Promise.all(cluster.members.map((m) => m.exited));
  clearTimeout(timer);
  fs.rmSync(cluster.root, { recursive: true, force: true });
  return exits;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end with `input` on stdin. `until` ends a long-running one (a watch)
 * with SIGINT once its output satisfies it; one that outlives `timeoutMs` is killed and
 * rejects with what it printed.
 */
export function runProcess(
  command: string,
  args: readonly string[],
  options: {
    env?: NodeJS.ProcessEnv;
    input?: string;
    timeoutMs?: number;
    until?: (stdout: string) => boolean;
  } = {},
): Promise<Ran> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    let ended = false;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (!ended && options.until?.(stdout) === true) {
        ended = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`${command} ${args.join(' ')} ran over ${timeoutMs} ms:\n${stdout}${stderr}`),
      );
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits without reading its input (etcdctl del) closes the pipe first:
    // the EPIPE of our write is no failure of the command.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** The environment etcdctl 3.4 needs for the v3 API. */
export const etcdctlEnv: NodeJS.ProcessEnv = { ...process.env, ETCDCTL_API: '3' };

/**
 * Why the etcdctl tests skip (etcdctl is not installed), or false when it runs: a value for
 * node:test's `skip` option.
 */
export const etcdctlMissing: string | false = (() => {
  const probe = spawnSync('etcdctl', ['version'], { env: etcdctlEnv, encoding: 'utf8' });
  return probe.error !== undefined || probe.status !== 0
    ? 'etcdctl is not installed: install Debian\'s "etcd-client" package (.ci/run does as root) to run the etcdctl compatibility tests'
    : false;
})();

export interface RanInProcess {
  code: number;
  out: string[];
  err: string[];
}

/** `chorus …args` in this process (src/cli/main.ts), its output lines collected. */
export async function chorusInProcess(...args: string[]): Promise<RanInProcess> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}
