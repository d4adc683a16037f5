/**
 * The two clusters of the compare benchmark (bench/compare.ts), started the same way: three
 * members of one system on 127.0.0.1 with free ports, each with its own data directory under
 * one temporary directory, default Raft timing (100 ms heartbeat, 1 s election timeout) and
 * durable writes (both fsync their log before acknowledging; neither is given an unsafe flag).
 * Logs are kept at `warn` for both, so neither pays for chatter the other does not.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverNodeFlags } from '../src/server/constants.js';
import { tlsServerFlags } from '../src/server/tls.js';

export type SystemName = 'chorus' | 'etcd';

export interface BenchMember {
  name: string;
  clientPort: number;
  peerPort: number;
  child: ChildProcess;
  /** The last lines the process wrote, for the report when it fails. */
  logTail: string[];
  exited: Promise<void>;
}

export interface BenchCluster {
  system: SystemName;
  root: string;
  members: BenchMember[];
  /** host:port of every member's client port, in member order. */
  endpoints: string[];
  /** Clients and members speak TLS, with client certificates required (benchTls). */
  tls: boolean;
}

/**
 * The certificates of a TLS run (CHORUS_BENCH_COMPARE_TLS=1): the test CA's, made by
 * scripts/gen-test-certs.sh. Both systems get the same files and the same etcd flags.
 */
const tlsDir = fileURLToPath(new URL('../../testdata/tls/', import.meta.url));
export const benchTls = {
  ca: path.join(tlsDir, 'ca.crt'),
  cert: path.join(tlsDir, 'server.crt'),
  key: path.join(tlsDir, 'server.key'),
  clientCert: path.join(tlsDir, 'client.crt'),
  clientKey: path.join(tlsDir, 'client.key'),
};

/** etcd's TLS flags, which Chorus shares: https on both ports, certificates required. */
function tlsFlags(): string[] {
  return [...tlsServerFlags('client', benchTls), ...tlsServerFlags('peer', benchTls)];
}

export const clusterSize = 3;
const logTailLines = 40;
const stopGraceMs = 10_000;

const chorusBin = fileURLToPath(new URL('../../bin/chorus.js', import.meta.url));

/** Ports that were free a moment ago (bound to port 0, then released). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** Whether an executable named `command` is on PATH. */
export function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '')
    .split(path.delimiter)
    .some((dir) => dir !== '' && isExecutable(path.join(dir, command)));
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

interface Layout {
  scheme: 'http' | 'https';
  names: string[];
  clientPorts: number[];
  peerPorts: number[];
  initialCluster: string;
}

async function layout(prefix: string, tls: boolean): Promise<Layout> {
  const ports = await freePorts(2 * clusterSize);
  const names = Array.from({ length: clusterSize }, (_, i) => `${prefix}${i + 1}`);
  const clientPorts = names.map((_, i) => ports[2 * i]!);
  const peerPorts = names.map((_, i) => ports[2 * i + 1]!);
  const scheme = tls ? 'https' : 'http';
  const initialCluster = names
    .map((n, i) => `${n}=${scheme}://127.0.0.1:${peerPorts[i]}`)
    .join(',');
  return { names, clientPorts, peerPorts, initialCluster, scheme };
}

function spawnMember(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Pick<BenchMember, 'child' | 'logTail' | 'exited'> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const logTail: string[] = [];
  let partial = '';
  const keep = (chunk: Buffer): void => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    logTail.push(...lines);
    if (logTail.length > logTailLines) logTail.splice(0, logTail.length - logTailLines);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, logTail, exited };
}

/** CHORUS_BENCH_LOG_LEVEL=info keeps the members' info lines (e.g. snapshot timings) too. */
const chorusLogLevel = process.env['CHORUS_BENCH_LOG_LEVEL'] ?? 'warn';

/**
 * `bin`: another build's bin/chorus.js (bench/ab.ts compares two builds); this one's by default.
 * `settings`: CHORUS_* variables for the members (e.g. CHORUS_SNAPSHOT_COUNT), and their log
 * level (warn unless CHORUS_BENCH_LOG_LEVEL says otherwise).
 */
export async function startChorusCluster(
  root: string,
  bin = chorusBin,
  settings: { env?: NodeJS.ProcessEnv; logLevel?: string; tls?: boolean } = {},
): Promise<BenchCluster> {
  const logLevel = settings.logLevel ?? chorusLogLevel;
  const tls = settings.tls === true;
  const { names, clientPorts, peerPorts, initialCluster, scheme } = await layout('c', tls);
  const members = names.map((name, i): BenchMember => {
    const client = `${scheme}://127.0.0.1:${clientPorts[i]}`;
    const args = [
      ...serverNodeFlags,
      bin,
      'server',
      ...['--name', name, '--data-dir', path.join(root, name)],
      ...['--listen-client-urls', client, '--advertise-client-urls', client],
      ...['--listen-peer-urls', `${scheme}://127.0.0.1:${peerPorts[i]}`],
      ...['--initial-cluster', initialCluster, '--log-level', logLevel],
      ...(tls ? tlsFlags() : []),
    ];
    const env = { ...process.env, ...settings.env, CHORUS_LOG: logLevel };
    const started = spawnMember(process.execPath, args, env);
    return { name, clientPort: clientPorts[i]!, peerPort: peerPorts[i]!, ...started };
  });
  return {
    system: 'chorus',
    root,
    members,
    endpoints: clientPorts.map((p) => `127.0.0.1:${p}`),
    tls,
  };
}

export async function startEtcdCluster(root: string, tls = false): Promise<BenchCluster> {
  const { names, clientPorts, peerPorts, initialCluster, scheme } = await layout('e', tls);
  // etcd reads ETCD_* variables as flags: none from the caller's environment may leak in.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('ETCD_')),
  );
  const members = names.map((name, i): BenchMember => {
    const client = `${scheme}://127.0.0.1:${clientPorts[i]}`;
    const peer = `${scheme}://127.0.0.1:${peerPorts[i]}`;
    const args = [
      ...['--name', name, '--data-dir', path.join(root, name)],
      ...['--listen-client-urls', client, '--advertise-client-urls', client],
      ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer],
      ...['--initial-cluster', initialCluster, '--initial-cluster-state', 'new'],
      ...['--initial-cluster-token', 'chorus-bench-etcd'],
      ...['--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn'],
      ...(tls ? tlsFlags() : []),
    ];
    const started = spawnMember('etcd', args, env);
    return { name, clientPort: clientPorts[i]!, peerPort: peerPorts[i]!, ...started };
  });
  return {
    system: 'etcd',
    root,
    members,
    endpoints: clientPorts.map((p) => `127.0.0.1:${p}`),
    tls,
  };
}

/** SIGTERM to every member, SIGKILL to any still running after a grace period. */
export async function stopBenchCluster(cluster: BenchCluster): Promise<void> {
  for (const m of cluster.members) if (m.child.exitCode === null) m.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const m of cluster.members) if (m.child.exitCode === null) m.child.kill('SIGKILL');
  }, stopGraceMs);
  await Promise.all(cluster.members.map((m) => m.exited));
  clearTimeout(timer);
}

/** The end of every member's log, for an error message. */
export function describeLogs(cluster: BenchCluster): string {
  return cluster.members
    .map(
      (m) =>
        `--- ${cluster.system} ${m.name} (exit ${m.child.exitCode})\n${m.logTail.slice(-10).join('\n')}`,
    )
    .join('\n');
}
