// Goal: faults on real `chorus server` processes lose no acknowledged write and serve no stale
// read. Eight clients get, put and compare-and-swap a few keys through random members of a
// 3-process loopback cluster while the leader is killed with -9 and restarted, stopped with
// SIGSTOP and continued (then a follower), a follower is killed while the others compact
// their logs past it (it catches up from a snapshot), and the whole cluster is restarted from
// its data directories. Members snapshot every 100 entries, so every case crosses snapshots. Every operation is recorded as a history and judged by the linearizability
// checker with the kv model; 'unknown' fails as 'not-linearizable' does. After each workload
// every member reads every key, so a lost write is a read the checker cannot place. A planted
// change to one read of a recorded history shows the judgment can fail.
//
// A history that is not linearizable is written to a .jsonl file named in the failure, for
// `npx chorus check FILE --model kv --html report.html`. CHORUS_LIVE_SEED changes the clients'
// choices (the fault timing is real, so a seed narrows a rerun but cannot replay one).
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { toJsonl, type HistoryEvent } from '../src/check/history.js';
import {
  call,
  clusterClient,
  describeVerdict,
  judge,
  KvWorkload,
  plant,
  type GrpcCluster,
} from './live-history.js';
import {
  eventually,
  freePorts,
  health,
  serverArgs,
  sleep,
  spawnChorus,
  startCluster,
  stopCluster,
  waitForLeader,
  type Cluster,
  type Member,
} from './server-helpers.js';

const seed = Number(process.env['CHORUS_LIVE_SEED'] ?? 6);
/**
 * Every member snapshots and compacts its log every this many entries (--snapshot-count,
 * through the environment, so restarts keep it): each case then crosses snapshots, and a
 * follower stopped for a few hundred writes must be sent one.
 */
const snapshotCount = 100;
process.env['CHORUS_SNAPSHOT_COUNT'] = String(snapshotCount);
// Few entries kept before a snapshot (5,000 by default), so a follower down for a few
// hundred writes needs the snapshot itself.
process.env['CHORUS_SNAPSHOT_CATCHUP_ENTRIES'] = '20';
const clients = 8;
const keysPerCase = 3;
/**
 * A hard bound on each history, whatever the phases take (a run has 400–800 operations); a
 * case that reaches it fails, rather than running its later faults without clients.
 */
const opsMax = 1_500;
const thinkMsMean = 25;
/**
 * Successful operations each phase waits for (between faults), and how long it may take at
 * most; fewer while a member is stopped, as a third of the requests then wait out their
 * deadline.
 */
const phaseOps = 80;
const stoppedPhaseOps = 30;
const phaseMsMax = 10_000;
const electionMsMax = 10_000;

/** Polls until every listed member serves and names the same leader among them. */
async function leaderAmong(members: readonly Member[], timeoutMs: number): Promise<Member> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const seen = await Promise.all(members.map((m) => health(m.clientPort)));
    const lead = seen[0]?.leader;
    const leader = members.find((m) => m.name === lead);
    if (leader !== undefined && seen.every((h) => h?.mode === 'serving' && h.leader === lead))
      return leader;
    await sleep(25);
  }
  throw new Error(`no common leader among ${members.map((m) => m.name).join(', ')}`);
}

/** Starts a member again on its data directory and ports. */
function restart(cluster: Cluster, m: Member): void {
  const args = serverArgs(m.name, m.dataDir, m.clientPort, m.peerPort, cluster.initialCluster);
  Object.assign(m, spawnChorus(args));
}

function running(m: Member): boolean {
  return m.child.exitCode === null && m.child.signalCode === null;
}

/** Undoes what a failed case may have left behind: a stopped member, a dead one. */
function heal(cluster: Cluster): void {
  for (const m of cluster.members) {
    if (running(m)) m.child.kill('SIGCONT');
    else restart(cluster, m);
  }
}

describe('live faults on a 3-process cluster, judged by the linearizability checker', () => {
  let cluster: Cluster | undefined;
  const workloads: KvWorkload[] = [];
  /** Recorded histories by case, for the planted-failure check. */
  const histories = new Map<string, HistoryEvent[]>();

  before(async () => {
    cluster = await startCluster(3);
  });

  after(async () => {
    // A case that timed out may have left its clients running; each stops within a deadline.
    await Promise.all(workloads.map((w) => w.stop()));
    for (const w of workloads) w.close();
    if (cluster === undefined) return;
    // A stopped process would hold its SIGTERM until continued.
    for (const m of cluster.members) if (running(m)) m.child.kill('SIGCONT');
    await stopCluster(cluster);
  });

  function live(): Cluster {
    assert.ok(cluster !== undefined, 'the cluster did not start');
    return cluster;
  }

  /**
   * Runs the workload around `faults`, then stops the clients, reads every key through every
   * running member, judges the history and reports the figures.
   */
  async function withWorkload(
    t: TestContext,
    name: string,
    faults: (w: KvWorkload) => Promise<void>,
    endpoints: () => readonly string[] = () => live().endpoints,
  ): Promise<void> {
    const c = live();
    heal(c);
    await waitForLeader(c, 20_000);
    const w = new KvWorkload({
      endpoints,
      keys: Array.from({ length: keysPerCase }, (_, i) => `${name}/k${i}`),
      clients,
      seed,
      thinkMsMean,
      opsMax,
    });
    workloads.push(w);
    w.start();
    try {
      await faults(w);
    } finally {
      await w.stop();
      histories.set(name, w.recorder.events);
      const s = w.recorder.summary();
      t.diagnostic(`${name}: ${s.ops} ops (${s.ok} ok, ${s.fail} fail, ${s.info} info)`);
      for (const [message, count] of w.errors) t.diagnostic(`  ${count} × ${message}`);
    }
    await waitForLeader(c, electionMsMax);
    await w.finalReads(c.members.filter(running).map((m) => `127.0.0.1:${m.clientPort}`));
    const result = judge(w.recorder.events, name);
    const s = w.recorder.summary();
    t.diagnostic(`${name}: with the final reads ${s.ops} ops; ${describeVerdict(result)}`);
    if (result.verdict !== 'linearizable') {
      const file = join(tmpdir(), `chorus-live-${name}-seed${seed}.jsonl`);
      fs.writeFileSync(file, toJsonl(w.recorder.events));
      assert.fail(
        `${describeVerdict(result)}\nhistory: ${file} (npx chorus check ${file} --model kv --html report.html)`,
      );
    }
    assert.ok(s.ok > 0, 'some operations succeeded');
  }

  /** Waits for the workload to move on; a stalled cluster fails the case. */
  async function phase(w: KvWorkload, what: string, okOps = phaseOps): Promise<void> {
    assert.ok(await w.progress(okOps, phaseMsMax), `the workload stalled ${what}`);
  }

  test('kill -9 of the leader during writes, then its restart', { timeout: 60_000 }, async (t) => {
    const c = live();
    await withWorkload(t, 'kill', async (w) => {
      await phase(w, 'before the kill');
      const old = await leaderAmong(c.members, electionMsMax);
      const killedAt = Date.now();
      old.child.kill('SIGKILL');
      assert.equal((await old.exited).signal, 'SIGKILL');
      const next = await leaderAmong(
        c.members.filter((m) => m !== old),
        electionMsMax,
      );
      t.diagnostic(`kill: ${next.name} leads ${Date.now() - killedAt} ms after ${old.name} died`);
      await phase(w, 'with the leader dead');
      restart(c, old);
      const rejoinFrom = Date.now();
      await waitForLeader(c, electionMsMax);
      t.diagnostic(`kill: ${old.name} serves again ${Date.now() - rejoinFrom} ms after restart`);
      await phase(w, 'after the restart');
    });
  });

  test('SIGSTOP / SIGCONT of the leader, then of a follower', { timeout: 60_000 }, async (t) => {
    const c = live();
    await withWorkload(t, 'stop', async (w) => {
      await phase(w, 'before the stop');
      const old = await leaderAmong(c.members, electionMsMax);
      const stoppedAt = Date.now();
      old.child.kill('SIGSTOP');
      try {
        const next = await leaderAmong(
          c.members.filter((m) => m !== old),
          electionMsMax,
        );
        t.diagnostic(
          `stop: ${next.name} leads ${Date.now() - stoppedAt} ms after ${old.name} stopped`,
        );
        await phase(w, 'with the leader stopped', stoppedPhaseOps);
      } finally {
        old.child.kill('SIGCONT');
      }
      const continuedAt = Date.now();
      await waitForLeader(c, electionMsMax);
      t.diagnostic(`stop: ${old.name} rejoins ${Date.now() - continuedAt} ms after SIGCONT`);
      await phase(w, 'after the leader continued');

      const leader = await leaderAmong(c.members, electionMsMax);
      const follower = c.members.find((m) => m !== leader)!;
      follower.child.kill('SIGSTOP');
      try {
        await phase(w, 'with a follower stopped', stoppedPhaseOps);
        // Long enough that the follower misses heartbeats and entries it must catch up on.
        await sleep(1_000);
      } finally {
        follower.child.kill('SIGCONT');
      }
      await waitForLeader(c, electionMsMax);
      await phase(w, 'after the follower continued');
    });
  });

  test(
    "a follower down while the log is compacted catches up from the leader's snapshot",
    { timeout: 60_000 },
    async (t) => {
      const c = live();
      let down: Member | undefined;
      const endpoints = (): string[] =>
        c.members.filter((m) => m !== down).map((m) => `127.0.0.1:${m.clientPort}`);
      await withWorkload(
        t,
        'snapshot',
        async (w) => {
          await phase(w, 'before the kill');
          const leader = await leaderAmong(c.members, electionMsMax);
          const follower = c.members.find((m) => m !== leader)!;
          // Killed, not stopped: appends in flight to a stopped process reach it when it
          // continues, and would carry every entry it missed.
          down = follower;
          const others = c.members.filter((m) => m !== follower);
          for (const m of others) m.stderr.length = 0;
          follower.child.kill('SIGKILL');
          await follower.exited;
          await phase(w, 'with a follower down');
          // Two snapshots on each live member after the kill: the second is at least
          // snapshotCount entries past the first, so its compaction (keeping 20 entries)
          // passes the follower's log whatever the phase of the snapshot cycle it died in.
          await eventually('two snapshots on the live members', 20_000, () =>
            Promise.resolve(
              others.every(
                (m) => m.stderr.filter((line) => line.includes('"snapshot saved"')).length >= 2,
              ) || undefined,
            ),
          );
          restart(c, follower);
          const restartedAt = Date.now();
          await eventually(`${follower.name} installs a snapshot`, electionMsMax, () =>
            Promise.resolve(
              follower.stderr.some((line) => line.includes('"snapshot installed"')) || undefined,
            ),
          );
          t.diagnostic(`snapshot: installed ${Date.now() - restartedAt} ms after the restart`);
          down = undefined;
          await phase(w, 'after the follower caught up');
        },
        endpoints,
      );
    },
  );

  test(
    'restart of the whole cluster in the middle of a workload',
    { timeout: 60_000 },
    async (t) => {
      const c = live();
      await withWorkload(t, 'restart', async (w) => {
        await phase(w, 'before the restart');
        for (const m of c.members) m.child.kill('SIGTERM');
        const exits = await Promise.all(c.members.map((m) => m.exited));
        assert.deepEqual(
          exits.map((e) => e.code),
          c.members.map(() => 0),
          JSON.stringify(exits),
        );
        const startedAt = Date.now();
        for (const m of c.members) restart(c, m);
        await waitForLeader(c, 20_000);
        t.diagnostic(`restart: all serve one leader ${Date.now() - startedAt} ms after the start`);
        await phase(w, 'after the restart');
      });
    },
  );

  test('a member removed and another added while writing', { timeout: 90_000 }, async (t) => {
    const c = live();
    await waitForLeader(c, electionMsMax);
    const admin = clusterClient(c.endpoints[0]!);
    try {
      await membershipCase(t, c, admin);
    } finally {
      admin.close();
    }
  });

  /**
   * etcd's procedure, under a recorded workload: remove a follower (it stops by itself),
   * then MemberAdd n4 as a learner, start it `existing` (it replays the log from the
   * founding entries), promote it once caught up, and check every member's view.
   */
  async function membershipCase(t: TestContext, c: Cluster, admin: GrpcCluster): Promise<void> {
    const endpoints = [...c.endpoints];
    await withWorkload(
      t,
      'membership',
      async (w) => {
        await phase(w, 'before the removal');
        const leader = await leaderAmong(c.members, electionMsMax);
        // Not the member the admin client talks to (c.endpoints[0]).
        const gone = c.members.find((m) => m !== leader && m !== c.members[0])!;
        const list = await call(admin.MemberList, admin, {});
        assert.ok('response' in list, 'MemberList');
        const members = list.response['members'] as { ID: string; name: string }[];
        const id = members.find((m) => m.name === gone.name)?.ID;
        assert.ok(id !== undefined, `${gone.name} in ${JSON.stringify(members)}`);
        const removed = await call(admin.MemberRemove, admin, { ID: id });
        assert.ok('response' in removed, `MemberRemove: ${JSON.stringify(removed)}`);
        endpoints.splice(endpoints.indexOf(`127.0.0.1:${gone.clientPort}`), 1);
        // A removed member stops by itself, exit code 0, as etcd's does.
        const exit = await Promise.race([gone.exited, sleep(10_000).then(() => undefined)]);
        assert.deepEqual(exit, { code: 0, signal: null }, gone.stderr.slice(-5).join('\n'));
        c.members.splice(c.members.indexOf(gone), 1);
        const again = await call(admin.MemberRemove, admin, { ID: id });
        assert.ok(
          'error' in again && again.error.code === grpc.status.NOT_FOUND,
          `removed twice: ${JSON.stringify(again)}`,
        );
        await phase(w, 'after the removal');

        const [clientPort, peerPort] = (await freePorts(2)) as [number, number];
        const peerUrl = `http://127.0.0.1:${peerPort}`;
        const added = await call(admin.MemberAdd, admin, { peerURLs: [peerUrl], isLearner: true });
        assert.ok('response' in added, `MemberAdd: ${JSON.stringify(added)}`);
        const member = added.response['member'] as { ID: string; isLearner: boolean };
        assert.equal(member.isLearner, true);
        const twice = await call(admin.MemberAdd, admin, { peerURLs: [peerUrl] });
        assert.ok(
          'error' in twice && twice.error.code === grpc.status.FAILED_PRECONDITION,
          `the same peer URL twice: ${JSON.stringify(twice)}`,
        );
        const initialCluster = [
          ...c.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`),
          `n4=${peerUrl}`,
        ].join(',');
        const dataDir = join(c.root, 'n4');
        const n4 = spawnChorus([
          ...serverArgs('n4', dataDir, clientPort, peerPort, initialCluster),
          '--initial-cluster-state',
          'existing',
        ]);
        c.members.push({ name: 'n4', clientPort, peerPort, dataDir, ...n4 });
        await waitForLeader(c, 20_000);
        // Promote once the learner has caught up (refused with "not in sync" until then).
        const promoted = await eventually('promoting n4', 20_000, async () => {
          const r = await call(admin.MemberPromote, admin, { ID: member.ID });
          return 'response' in r ? r : undefined;
        });
        assert.ok(promoted !== undefined);
        endpoints.push(`127.0.0.1:${clientPort}`);
        await phase(w, 'after the addition');
        // Every member, n4 included, lists the same three voters with names and client URLs.
        for (const m of c.members) {
          const client = clusterClient(`127.0.0.1:${m.clientPort}`);
          try {
            const view = await eventually(`MemberList on ${m.name}`, 10_000, async () => {
              const r = await call(client.MemberList, client, {});
              if (!('response' in r)) return undefined;
              const ms = r.response['members'] as {
                name: string;
                clientURLs: string[];
                isLearner: boolean;
              }[];
              const ok =
                ms.length === 3 &&
                ms.every((x) => x.name !== '' && x.clientURLs.length === 1 && !x.isLearner);
              return ok ? ms.map((x) => x.name).sort() : undefined;
            });
            assert.deepEqual(view, c.members.map((x) => x.name).sort());
          } finally {
            client.close();
          }
        }
      },
      () => endpoints,
    );
  }

  test('planted: one altered read makes a recorded history fail the check', () => {
    const recorded = [...histories.values()].find((events) => events.length > 0);
    assert.ok(recorded !== undefined, 'no live case recorded a history');
    assert.equal(judge(recorded, 'recorded').verdict, 'linearizable');
    for (const kind of ['lost-write', 'phantom'] as const) {
      const planted = plant(recorded, kind);
      assert.ok(planted !== undefined, `the history has a read to alter for ${kind}`);
      const result = judge(planted.events, `planted ${kind}`);
      assert.equal(result.verdict, 'not-linearizable', `${kind}: ${describeVerdict(result)}`);
    }
  });
});
