/**
 * `chorus dev --nodes N`: a local cluster of N `chorus server` child processes on
 * 127.0.0.1, laid out like etcd's local Procfile (infra1 on 2379/2380, infra2 on
 * 22379/22380, infra3 on 32379/32380, …), with data and logs under ./.chorus-dev/. It waits
 * until every member knows the leader, prints the endpoints and example commands, and on
 * Ctrl-C stops every node gracefully (SIGTERM, then SIGKILL for one that hangs).
 *
 * With --tls the client and peer URLs are https://, with a CA and certificates that
 * scripts/gen-test-certs.sh makes (openssl) under <data-dir>/tls/, and clients must present
 * the client certificate made there (docs/security.md).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { serverNodeFlags } from '../server/constants.js';
import { tlsServerFlags } from '../server/tls.js';

/** etcd's Procfile ports go 2379, 22379, 32379: the sixth member is the last that fits. */
export const devNodesMax = 6;
const leaderWaitMs = 30_000;
const stopWaitMs = 10_000;
const pollMs = 200;

export interface DevMember {
  name: string;
  clientPort: number;
  peerPort: number;
}

export function devMembers(nodes: number): DevMember[] {
  return Array.from({ length: nodes }, (_, i) => ({
    name: `infra${i + 1}`,
    clientPort: i === 0 ? 2379 : (i + 1) * 10_000 + 2379,
    peerPort: i === 0 ? 2380 : (i + 1) * 10_000 + 2380,
  }));
}

interface DevOptions {
  nodes: string;
  dataDir: string;
  clean?: boolean;
  tls?: boolean;
}

/** The files of a --tls cluster, under <data-dir>/tls/. */
export interface DevTls {
  ca: string;
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
}

function devTlsFiles(dir: string): DevTls {
  return {
    ca: join(dir, 'ca.crt'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
}

/** The CA and certificates of a --tls cluster: kept from an earlier run, else made now. */
function makeDevTls(root: string): DevTls | string {
  const dir = join(root, 'tls');
  const files = devTlsFiles(dir);
  const { ca, cert, key, clientCert, clientKey } = files;
  if ([ca, cert, key, clientCert, clientKey].every((f) => fs.existsSync(f))) return files;
  const script = fileURLToPath(new URL('../../../scripts/gen-test-certs.sh', import.meta.url));
  const made = spawnSync('sh', [script, dir], { encoding: 'utf8' });
  if (made.error !== undefined || made.status !== 0)
    return `cannot make the certificates with openssl (${script}): ${(made.stderr || String(made.error)).trim()}`;
  return files;
}

export function registerDev(program: Command, ctx: CliContext): void {
  program
    .command('dev')
    .description('run a local cluster of chorus server processes on 127.0.0.1 until Ctrl-C')
    .option('--nodes <n>', `members, 1 to ${devNodesMax}`, '3')
    .option('--data-dir <dir>', 'where each member keeps its data and log', '.chorus-dev')
    .option('--clean', 'remove the data of a previous run first')
    .option(
      '--tls',
      'https:// client and peer URLs, with a CA and certificates made by openssl under <data-dir>/tls',
    )
    .action(async (options: DevOptions) => {
      const nodes = Number(options.nodes);
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > devNodesMax) {
        ctx.err(`chorus dev: --nodes must be 1 to ${devNodesMax}`);
        ctx.exitCode = 2;
        return;
      }
      ctx.exitCode = await runDevCluster(
        nodes,
        options.dataDir,
        options.clean === true,
        ctx,
        options.tls === true,
      );
    });
}

/** The `chorus` launcher next to the compiled CLI (dist/src/cli → bin/chorus.js). */
function chorusBin(): string {
  return fileURLToPath(new URL('../../../bin/chorus.js', import.meta.url));
}

export async function runDevCluster(
  nodes: number,
  dataDir: string,
  clean: boolean,
  ctx: CliContext,
  secure = false,
): Promise<number> {
  const members = devMembers(nodes);
  const root = resolve(dataDir);
  if (clean) fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  let tls: DevTls | undefined;
  if (secure) {
    const made = makeDevTls(root);
    if (typeof made === 'string') {
      ctx.err(`chorus dev --tls: ${made}`);
      return 1;
    }
    tls = made;
  }
  const scheme = tls === undefined ? 'http' : 'https';
  const initialCluster = members
    .map((m) => `${m.name}=${scheme}://127.0.0.1:${m.peerPort}`)
    .join(',');
  const endpoints = members.map((m) => `127.0.0.1:${m.clientPort}`).join(',');
  const tlsArgs =
    tls === undefined ? [] : [...tlsServerFlags('client', tls), ...tlsServerFlags('peer', tls)];
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  const exited = new Map<string, number | string>();

  for (const m of members) {
    const logPath = join(root, `${m.name}.log`);
    const logFd = fs.openSync(logPath, 'a');
    const child = spawn(
      process.execPath,
      [
        ...serverNodeFlags,
        chorusBin(),
        'server',
        '--name',
        m.name,
        '--data-dir',
        join(root, m.name),
        '--listen-client-urls',
        `${scheme}://127.0.0.1:${m.clientPort}`,
        '--advertise-client-urls',
        `${scheme}://127.0.0.1:${m.clientPort}`,
        '--listen-peer-urls',
        `${scheme}://127.0.0.1:${m.peerPort}`,
        '--initial-advertise-peer-urls',
        `${scheme}://127.0.0.1:${m.peerPort}`,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-state',
        'new',
        ...tlsArgs,
      ],
      { stdio: ['ignore', logFd, logFd] },
    );
    fs.closeSync(logFd);
    children.set(m.name, child);
    child.on('exit', (code, signal) => {
      exited.set(m.name, code ?? signal ?? 'unknown');
      if (!stopping)
        ctx.err(
          `${m.name} exited (${code ?? signal}) — its log: ${logPath}${code === 1 ? ' (last lines below)' : ''}`,
        );
      if (!stopping && code === 1) for (const line of tail(logPath, 5)) ctx.err(`  ${line}`);
    });
  }

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const child of children.values()) if (child.exitCode === null) child.kill('SIGTERM');
    const deadline = Date.now() + stopWaitMs;
    while ([...children.values()].some((c) => c.exitCode === null && c.signalCode === null)) {
      if (Date.now() > deadline) {
        for (const c of children.values()) if (c.exitCode === null) c.kill('SIGKILL');
        break;
      }
      await sleep(50);
    }
  };

  const interrupted = new Promise<void>((done) => {
    process.once('SIGINT', () => done());
    process.once('SIGTERM', () => done());
  });
  let signalled = false;
  void interrupted.then(() => (signalled = true));

  const leader = await waitForLeader(members, () => signalled || exited.size > 0, tls);
  if (leader === undefined) {
    ctx.err(
      signalled
        ? 'interrupted before the cluster elected a leader'
        : `the cluster did not elect a leader${exited.size > 0 ? ' (a member exited)' : ` within ${leaderWaitMs / 1000} s`}; logs in ${root}`,
    );
    await stopAll();
    return signalled ? 0 : 1;
  }
  ctx.out(`Chorus: a ${nodes}-member cluster is serving (leader ${leader}).`);
  ctx.out('');
  ctx.out('  member   client (gRPC + JSON + /health + /metrics)   peer');
  for (const m of members)
    ctx.out(
      `  ${m.name.padEnd(8)} ${scheme}://127.0.0.1:${String(m.clientPort).padEnd(tls === undefined ? 29 : 28)} ${scheme}://127.0.0.1:${m.peerPort}`,
    );
  ctx.out('');
  ctx.out(`  data and logs: ${root}`);
  // etcdctl, chorus and curl name the TLS files with the same flags.
  const clientTls =
    tls === undefined ? '' : ` --cacert ${tls.ca} --cert ${tls.clientCert} --key ${tls.clientKey}`;
  if (tls !== undefined) {
    ctx.out(`  TLS: CA ${tls.ca}; clients must present ${tls.clientCert}`);
  }
  ctx.out('');
  ctx.out('Try:');
  ctx.out(`  etcdctl --endpoints=${endpoints}${clientTls} put greeting hello`);
  ctx.out(`  npx chorus get greeting --endpoints ${endpoints}${clientTls}`);
  ctx.out(`  npx chorus endpoint status --endpoints ${endpoints}${clientTls} -w table`);
  ctx.out(
    `  curl -s${clientTls} -X POST ${scheme}://127.0.0.1:${members[0]!.clientPort}/v3/kv/range -d '{"key":"Z3JlZXRpbmc="}'`,
  );
  ctx.out('');
  ctx.out('Ctrl-C stops every member.');
  await interrupted;
  ctx.out('stopping…');
  await stopAll();
  const codes = members.map((m) => `${m.name}: ${String(exited.get(m.name) ?? 'running')}`);
  ctx.out(`stopped (${codes.join(', ')})`);
  return 0;
}

async function waitForLeader(
  members: DevMember[],
  abandon: () => boolean,
  tls: DevTls | undefined,
): Promise<string | undefined> {
  const deadline = Date.now() + leaderWaitMs;
  while (Date.now() < deadline && !abandon()) {
    const leaders = await Promise.all(members.map((m) => healthLeader(m.clientPort, tls)));
    const first = leaders[0];
    if (first !== undefined && first !== '' && leaders.every((l) => l === first)) return first;
    await sleep(pollMs);
  }
  return undefined;
}

async function healthLeader(port: number, tls: DevTls | undefined): Promise<string | undefined> {
  try {
    const text =
      tls === undefined
        ? await (
            await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) })
          ).text()
        : await httpsHealth(port, tls);
    const body = JSON.parse(text) as { leader?: unknown; mode?: unknown };
    return body.mode === 'serving' && typeof body.leader === 'string' ? body.leader : undefined;
  } catch {
    return undefined;
  }
}

/** GET /health over TLS with the cluster's CA and client certificate; fails after 1 s. */
function httpsHealth(port: number, tls: DevTls): Promise<string> {
  return new Promise((done, fail) => {
    const request = https.get(
      {
        host: '127.0.0.1',
        port,
        path: '/health',
        ca: fs.readFileSync(tls.ca),
        cert: fs.readFileSync(tls.clientCert),
        key: fs.readFileSync(tls.clientKey),
        timeout: 1000,
        agent: false,
      },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        response.on('end', () => done(text));
        response.on('error', fail);
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', fail);
  });
}

function tail(path: string, lines: number): string[] {
  try {
    return fs.readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines);
  } catch {
    return [];
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
