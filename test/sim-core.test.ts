// Goal: the simulator's building blocks behave as their contracts say — events run in
// (time, sequence) order, fault rates match their settings within statistical tolerance,
// every partition shape cuts exactly the links it should, clocks drift and jump as told, and
// processes crash, pause and restart with the right effects on timers and messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../src/core/prng.js';
import { EventQueue } from '../src/sim/queue.js';
import { World } from '../src/sim/world.js';
import { SimNetwork, quietNetwork } from '../src/sim/network.js';
import { applyPartition } from '../src/sim/partition.js';
import { Cluster } from '../src/sim/cluster.js';
import { FatalError } from '../src/core/errors.js';
import type { Env } from '../src/env/env.js';

test('event queue: ordered by time, ties in insertion order', () => {
  const q = new EventQueue();
  const order: string[] = [];
  const random = seededRandom(1);
  const expected: [number, number, string][] = [];
  for (let i = 0; i < 2000; i++) {
    const time = random.int(50);
    const name = `e${i}`;
    expected.push([time, i, name]);
    q.push(time, () => order.push(name));
  }
  while (q.size > 0) q.pop()!.run();
  expected.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  assert.deepEqual(
    order,
    expected.map((e) => e[2]),
  );
});

test('world: time jumps to the next event; cancelled events do not run', () => {
  const world = new World(seededRandom(1));
  const seen: number[] = [];
  world.after(10_000, () => seen.push(world.now));
  const cancelled = world.after(5, () => seen.push(-1));
  cancelled.cancelled = true;
  world.after(3, () => seen.push(world.now));
  world.runUntil(60_000);
  assert.deepEqual(seen, [3, 10_000]);
  assert.equal(world.now, 60_000);
});

function network(
  size: number,
  seed = 7,
): { world: World; net: SimNetwork; got: [number, number][] } {
  const world = new World(seededRandom(seed));
  const got: [number, number][] = [];
  const net = new SimNetwork(world, seededRandom(seed).fork('net'), size, (to, from) => {
    got.push([from, to]);
    return true;
  });
  return { world, net, got };
}

test('network: loss and duplication rates within tolerance, latency mean as set', () => {
  const { world, net, got } = network(2);
  net.faults = {
    ...quietNetwork,
    lossRate: 0.2,
    dupRate: 0.1,
    latencyMsMin: 1,
    latencyMsTailMean: 4,
  };
  const n = 50_000;
  for (let i = 0; i < n; i++) net.send(0, 1, new Uint8Array(1));
  world.runUntil(10_000);
  const lossRate = net.counters.lost / n;
  const dupRate = net.counters.duplicated / (n - net.counters.lost);
  // Three standard deviations of a binomial proportion.
  assert.ok(Math.abs(lossRate - 0.2) < 3 * Math.sqrt((0.2 * 0.8) / n), `loss ${lossRate}`);
  assert.ok(Math.abs(dupRate - 0.1) < 3 * Math.sqrt((0.1 * 0.9) / n), `dup ${dupRate}`);
  assert.equal(got.length, n - net.counters.lost + net.counters.duplicated);
});

test('network: latency is floor plus exponential tail, and reorders messages', () => {
  const { world, net } = network(2, 9);
  net.faults = { ...quietNetwork, latencyMsMin: 2, latencyMsTailMean: 3 };
  const arrivals: number[] = [];
  const order: number[] = [];
  const net2 = new SimNetwork(world, seededRandom(9), 2, (_to, _from, payload) => {
    arrivals.push(world.now);
    order.push(payload[0]! | (payload[1]! << 8));
    return true;
  });
  net2.faults = net.faults;
  const n = 20_000;
  for (let i = 0; i < n; i++) net2.send(0, 1, new Uint8Array([i & 0xff, i >> 8]));
  world.runUntil(1000);
  const mean = arrivals.reduce((s, t) => s + t, 0) / n;
  assert.ok(Math.min(...arrivals) >= 2);
  assert.ok(Math.abs(mean - 5) < 0.15, `mean latency ${mean}`);
  assert.ok(
    order.some((v, i) => i > 0 && v < order[i - 1]!),
    'some messages overtook others',
  );
});

test('partitions: every shape cuts exactly the links it names', () => {
  for (let seed = 1; seed <= 30; seed++) {
    for (const n of [3, 5, 7]) {
      const random = seededRandom(seed);
      const connected = (net: SimNetwork, a: number, b: number): boolean => !net.isCut(a, b);
      {
        const { net } = network(n);
        applyPartition(net, random, 'isolate');
        const alone = [...Array(n).keys()].filter((a) =>
          [...Array(n).keys()].every((b) => a === b || net.isCut(a, b)),
        );
        assert.equal(alone.length, 1);
        assert.equal(net.cutLinks().length, 2 * (n - 1));
      }
      {
        const { net } = network(n);
        applyPartition(net, random, 'majority');
        const sides = [...Array(n).keys()].map(
          (a) => [...Array(n).keys()].filter((b) => connected(net, a, b)).length,
        );
        const majority = Math.floor(n / 2) + 1;
        assert.ok(
          sides.some((s) => s >= majority),
          'one side keeps a majority',
        );
        assert.ok(
          sides.some((s) => s < majority),
          'the other side is a minority',
        );
      }
      if (n >= 5) {
        const { net } = network(n);
        applyPartition(net, random, 'ring');
        const views = [...Array(n).keys()].map((a) =>
          [...Array(n).keys()].filter((b) => a === b || connected(net, a, b)).join(','),
        );
        const majority = Math.floor(n / 2) + 1;
        for (const v of views)
          assert.ok(v.split(',').length >= majority, `ring view ${v} is a majority`);
        assert.equal(new Set(views).size, n, 'no two nodes see the same majority');
        for (let a = 0; a < n; a++)
          for (let b = 0; b < n; b++) assert.equal(net.isCut(a, b), net.isCut(b, a));
      }
      {
        const { net } = network(n);
        applyPartition(net, random, 'bridge');
        const bridges = [...Array(n).keys()].filter((a) =>
          [...Array(n).keys()].every((b) => !net.isCut(a, b) && !net.isCut(b, a)),
        );
        assert.equal(bridges.length, 1, 'exactly one node talks to everyone');
      }
      {
        const { net } = network(n);
        applyPartition(net, random, 'one-way');
        const cut = net.cutLinks().map((l) => l.split('->').map(Number) as [number, number]);
        assert.ok(cut.length > 0);
        for (const [a, b] of cut) assert.ok(!net.isCut(b, a), `one-way: ${b}->${a} still flows`);
      }
    }
  }
});

test('partition blocks only cut links; clog holds then releases; heal restores', () => {
  const { world, net, got } = network(3);
  net.cut(0, 1);
  net.clog(0, 2);
  net.send(0, 1, new Uint8Array(1));
  net.send(1, 0, new Uint8Array(1));
  net.send(0, 2, new Uint8Array(1));
  world.runUntil(100);
  assert.deepEqual(got, [[1, 0]]);
  net.unclog(0, 2);
  world.runUntil(200);
  assert.deepEqual(got, [
    [1, 0],
    [0, 2],
  ]);
  net.heal();
  net.send(0, 1, new Uint8Array(1));
  world.runUntil(300);
  assert.equal(got.length, 3);
});

interface Probe {
  fired: number[];
  received: number;
  env: Env;
}

function probeCluster(size: number): Cluster<Probe> {
  const world = new World(seededRandom(3));
  return new Cluster<Probe>(world, seededRandom(3), size, {
    create(env) {
      const probe: Probe = { fired: [], received: 0, env };
      env.net.onMessage(() => probe.received++);
      return probe;
    },
  });
}

test('process: crash drops timers and messages, restart boots a new incarnation', () => {
  const cluster = probeCluster(2);
  cluster.bootAll();
  const world = cluster.world;
  const node = cluster.node(0);
  const first = node.app!;
  first.env.timers.set(100, () => first.fired.push(world.now));
  node.crash('test');
  world.runUntil(200);
  assert.deepEqual(first.fired, []);
  assert.equal(cluster.node(1).app!.env.net.send(node.id, new Uint8Array(1)), true);
  world.runUntil(300);
  assert.equal(first.received, 0);
  node.boot();
  assert.equal(node.incarnation, 2);
  assert.notEqual(node.app, first);
  // Sends of the dead incarnation are refused.
  assert.equal(first.env.net.send(cluster.ids[1]!, new Uint8Array(1)), false);
});

test('process: a pause defers timers and messages until resume', () => {
  const cluster = probeCluster(2);
  cluster.bootAll();
  const world = cluster.world;
  const node = cluster.node(0);
  const app = node.app!;
  app.env.timers.set(10, () => app.fired.push(world.now));
  node.pause();
  cluster.node(1).app!.env.net.send(node.id, new Uint8Array(1));
  world.runUntil(500);
  assert.deepEqual(app.fired, []);
  assert.equal(app.received, 0);
  node.resume();
  world.runUntil(600);
  assert.deepEqual(app.fired, [500]);
  assert.equal(app.received, 1);
});

test('process: a FatalError crashes the node and a supervisor restarts it', () => {
  const cluster = probeCluster(1);
  cluster.bootAll();
  const node = cluster.node(0);
  node.app!.env.timers.set(10, () => {
    throw new FatalError('fsync failed');
  });
  cluster.world.runUntil(20);
  assert.equal(node.status, 'crashed');
  cluster.world.runUntil(2000);
  assert.equal(node.status, 'up');
  assert.equal(node.incarnation, 2);
});

test('process: any other exception fails the run loudly', () => {
  const cluster = probeCluster(1);
  cluster.bootAll();
  cluster.node(0).app!.env.timers.set(10, () => {
    throw new Error('bug');
  });
  assert.throws(() => cluster.world.runUntil(20), /node n1 threw at 10\.000ms: Error: bug/);
});

test('clocks: drift scales monotonic time and timers; wall jumps leave monotonic alone', () => {
  const cluster = probeCluster(1);
  cluster.bootAll();
  const world = cluster.world;
  const node = cluster.node(0);
  const clock = node.clock;
  const mono0 = clock.monotonicMs();
  clock.setDriftPpm(1000); // 0.1% fast
  world.runUntil(10_000);
  assert.ok(Math.abs(clock.monotonicMs() - mono0 - 10_010) < 1e-6);
  const wall = clock.wallMs();
  const mono = clock.monotonicMs();
  clock.jumpWall(-30_000);
  assert.equal(clock.monotonicMs(), mono);
  assert.equal(clock.wallMs(), wall - 30_000);
  // A 1001 ms timer on a 0.1% fast clock fires after 1000 ms of true time.
  const app = node.app!;
  app.env.timers.set(1001, () => app.fired.push(world.now));
  world.runUntil(12_000);
  assert.ok(Math.abs(app.fired[0]! - 11_000) < 1e-6, `fired at ${app.fired[0]}`);
});
