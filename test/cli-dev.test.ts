// Goal: the main job works as the README says. `chorus start` (what `npm start` runs) starts
// three `chorus server` processes on etcd's local ports (2379/2380, 22379/22380,
// 32379/32380), waits for a leader, prints the endpoints and example commands, serves, and
// on Ctrl-C stops every member with exit 0; `chorus dev --nodes 5` starts another size. The
// ports are fixed, so each run gets a network namespace of its own (`unshare -n`, root
// only): nothing else on the machine can hold them, and the cluster is reachable only from
// inside (`nsenter`). Where namespaces cannot be had the tests skip, saying why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverNodeFlags } from '../src/server/constants.js';
import { chorusBin, eventually, runProcess } from './server-helpers.js';

const namespacesMissing: string | false = (() => {
  const probe = spawnSync('unshare', ['-n', '--', 'ip', 'link', 'set', 'lo', 'up'], {
    encoding: 'utf8',
  });
  return probe.error !== undefined || probe.status !== 0
    ? `network namespaces are not available (unshare -n and ip, as root): ${(probe.stderr ?? String(probe.error)).trim()}`
    : false;
})();

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** `chorus <args>` as the only process of a new network namespace with loopback up. */
function inNamespace(args: string[]): Running {
  const quoted = [process.execPath, chorusBin, ...args].map((a) => `'${a}'`).join(' ');
  const child = spawn(
    'unshare',
    ['-n', '--', 'bash', '-c', `ip link set lo up && exec ${quoted}`],
    // Its own process group, which the members join: a failed check kills them all.
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** `chorus <args>` inside the namespace of `pid`. */
function chorusIn(pid: number, args: string[]): ReturnType<typeof runProcess> {
  return runProcess('nsenter', [
    '-t',
    String(pid),
    '-n',
    '--',
    process.execPath,
    chorusBin,
    ...args,
  ]);
}

/** The command lines of `pid`'s children (the members). */
function childCommandLines(pid: number): string[][] {
  const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return children === ''
    ? []
    : children
        .split(/\s+/)
        .map((child) =>
          fs.readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean),
        );
}

/** `tls`: the cluster runs with --tls; clients use the certificates it made. */
async function checkLocalCluster(args: string[], ports: number[], tls = false): Promise<void> {
  const dataDir = fs.mkdtempSync(join(tmpdir(), 'chorus-dev-'));
  const scheme = tls ? 'https' : 'http';
  const tlsDir = join(dataDir, 'tls');
  const clientTls = tls
    ? [
        ...['--cacert', join(tlsDir, 'ca.crt')],
        ...['--cert', join(tlsDir, 'client.crt'), '--key', join(tlsDir, 'client.key')],
      ]
    : [];
  const running = inNamespace([...args, '--data-dir', dataDir]);
  const pid = running.child.pid!;
  try {
    // The banner's last line: its lines are separate writes, and may arrive apart.
    await eventually('the cluster serving', 40_000, () =>
      Promise.resolve(/Ctrl-C stops every member\./.test(running.output()) || undefined),
    );
    assert.match(running.output(), /is serving \(leader infra\d\)/);
    const printed = running.output();
    for (const port of ports) {
      assert.match(
        printed,
        new RegExp(`${scheme}://127\\.0\\.0\\.1:${port} `),
        `client port ${port}`,
      );
      assert.match(
        printed,
        new RegExp(`${scheme}://127\\.0\\.0\\.1:${port + 1}\\b`),
        `peer ${port + 1}`,
      );
    }
    assert.match(printed, /etcdctl --endpoints=127\.0\.0\.1:2379,/);
    assert.match(printed, /Ctrl-C stops every member\./);

    // Every member runs with the launcher's node flags.
    const members = childCommandLines(pid);
    assert.equal(members.length, ports.length);
    for (const argv of members) {
      for (const flag of serverNodeFlags) assert.ok(argv.includes(flag), argv.join(' '));
      assert.ok(argv.includes('server'));
    }

    // It serves: a put through two members, read back from the last one.
    const endpoints = ports
      .slice(0, 2)
      .map((p) => `127.0.0.1:${p}`)
      .join(',');
    const put = await chorusIn(pid, [
      'put',
      'greeting',
      'hello',
      '--endpoints',
      endpoints,
      ...clientTls,
    ]);
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stdout.trim(), 'OK');
    const get = await chorusIn(pid, [
      'get',
      'greeting',
      '--endpoints',
      `127.0.0.1:${ports[ports.length - 1]}`,
      '--consistency',
      'l',
      ...clientTls,
    ]);
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(get.stdout.trim().split('\n'), ['greeting', 'hello']);
    if (tls) {
      // The banner's commands carry the TLS flags; a client without them gets nothing.
      assert.match(printed, /--cacert \S+ca\.crt --cert \S+client\.crt --key \S+client\.key/);
      const plain = await chorusIn(pid, [
        ...['get', 'greeting', '--endpoints', endpoints, '--dial-timeout', '1s'],
      ]);
      assert.notEqual(plain.code, 0);
    }

    // Ctrl-C: every member stops cleanly, and so does the launcher.
    running.child.kill('SIGINT');
    assert.equal(await running.exited, 0, running.output());
    const stopped = ports.map((_, i) => `infra${i + 1}: 0`).join(', ');
    assert.match(running.output(), new RegExp(`stopped \\(${stopped}\\)`));
    for (let i = 1; i <= ports.length; i++)
      assert.ok(fs.existsSync(join(dataDir, `infra${i}.log`)), `infra${i}.log`);
  } finally {
    // A failed check leaves the launcher and its members running: the whole group goes.
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

test(
  "chorus start (npm start): 3 members on etcd's local ports, serving, stopped by Ctrl-C",
  { skip: namespacesMissing, timeout: 90_000 },
  async () => {
    await checkLocalCluster(['start'], [2379, 22379, 32379]);
  },
);

test(
  'chorus dev --nodes 5: five members, the next ports of the same layout',
  { skip: namespacesMissing, timeout: 90_000 },
  async () => {
    await checkLocalCluster(['dev', '--nodes', '5'], [2379, 22379, 32379, 42379, 52379]);
  },
);

test(
  'chorus dev --tls: https:// client and peer URLs with certificates it makes; clients need them',
  { skip: namespacesMissing, timeout: 90_000 },
  async () => {
    await checkLocalCluster(['dev', '--tls'], [2379, 22379, 32379], true);
  },
);
