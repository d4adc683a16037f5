// Goal: RPC keeps its contract on any Env — every call ends exactly once with a reply, a typed
// remote error, TimeoutError at its deadline, CancelledError, or an at-once refusal (queue-full
// beyond the inflight bound, unreachable); malformed envelopes and late or misdirected replies
// are dropped and counted, never a crash. Checked over real TCP on 127.0.0.1 and over a tiny
// in-memory network in virtual time (deterministic, so deadlines are exact).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode } from '../src/core/codec.js';
import { CancelledError, ChorusError, TimeoutError } from '../src/core/errors.js';
import { nodeId, type NodeId, type TimerId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import type { Network, Timers } from '../src/env/env.js';
import type { TcpNetwork } from '../src/env/node/tcp.js';
import { RemoteError, Rpc, type Respond } from '../src/transport/rpc.js';
import { closeAll, recordingLogger, startCluster, waitFor } from './transport-helpers.js';

const testTimeoutMs = 20_000;

/** Calls and resolves with [error, reply] instead of rejecting, so tests can look at both. */
function settle(rpc: Rpc, to: NodeId, method: string, body: unknown, deadlineMs?: number) {
  return new Promise<[ChorusError | undefined, unknown]>((resolve) => {
    rpc.call(
      to,
      method,
      body,
      (error, reply) => resolve([error, reply]),
      deadlineMs === undefined ? {} : { deadlineMs },
    );
  });
}

/** Two RPC endpoints over real TCP. */
async function tcpPair(limits: { inflightMax?: number } = {}) {
  const log = recordingLogger();
  const networks = (await startCluster(['a', 'b'], { log })) as [TcpNetwork, TcpNetwork];
  const timers = realTimers();
  const make = (net: TcpNetwork) =>
    new Rpc({ net, timers, log, random: seededRandom(3).fork(net.self) }, limits);
  return {
    a: make(networks[0]),
    b: make(networks[1]),
    netA: networks[0],
    netB: networks[1],
    log,
    close: async () => {
      timers.cancelAll();
      await closeAll(networks);
    },
  };
}

/** Real timers that remember what is pending, so a test can leave nothing behind. */
function realTimers(): Timers & { cancelAll(): void } {
  const live = new Map<number, NodeJS.Timeout>();
  let next = 1;
  return {
    set(delayMs, fn) {
      const id = next++;
      live.set(
        id,
        setTimeout(() => {
          live.delete(id);
          fn();
        }, delayMs),
      );
      return id as TimerId;
    },
    cancel(id) {
      clearTimeout(live.get(id));
      live.delete(id);
    },
    cancelAll() {
      for (const handle of live.values()) clearTimeout(handle);
      live.clear();
    },
  };
}

test(
  'tcp: round trip, typed handler errors, unknown method',
  { timeout: testTimeoutMs },
  async () => {
    const { a, b, close } = await tcpPair();
    try {
      b.handle('echo', (from, body, respond) => respond(undefined, { from, body }));
      b.handle('fail', () => {
        throw new ChorusError('not-found', 'no such key');
      });
      b.handle('refuse', (_from, _body, respond) => respond(new ChorusError('queue-full', 'busy')));
      assert.deepEqual(await a.callAsync(nodeId('b'), 'echo', { n: 1, s: 'x' }), {
        from: 'a',
        body: { n: 1, s: 'x' },
      });

      const [thrown] = await settle(a, nodeId('b'), 'fail', null);
      assert.ok(thrown instanceof RemoteError);
      assert.equal(thrown.code, 'not-found');
      assert.equal(thrown.message, 'no such key');
      assert.equal(thrown.from, 'b');

      const [refused] = await settle(a, nodeId('b'), 'refuse', null);
      assert.ok(refused instanceof RemoteError && refused.code === 'queue-full');

      const [missing] = await settle(a, nodeId('b'), 'nope', null);
      assert.ok(missing instanceof RemoteError && missing.code === 'not-found');

      const results = await Promise.all(
        Array.from({ length: 500 }, (_, i) => a.callAsync(nodeId('b'), 'echo', i)),
      );
      assert.deepEqual(
        results.map((r) => (r as { body: number }).body),
        Array.from({ length: 500 }, (_, i) => i),
      );
      assert.equal(a.inflight(), 0);
      assert.equal(a.stats().remoteErrors, 3);
    } finally {
      await close();
    }
  },
);

test('tcp: a call without a reply fails at its deadline', { timeout: testTimeoutMs }, async () => {
  const { a, b, close } = await tcpPair();
  try {
    b.handle('silent', () => {});
    const started = Date.now();
    const [error] = await settle(a, nodeId('b'), 'silent', null, 150);
    const elapsedMs = Date.now() - started;
    assert.ok(error instanceof TimeoutError, String(error));
    assert.ok(elapsedMs >= 140 && elapsedMs < 2_000, `took ${elapsedMs} ms`);
    assert.equal(a.inflight(), 0);
    assert.equal(a.stats().timeouts, 1);
  } finally {
    await close();
  }
});

test(
  'tcp: cancel by the returned function and by an AbortSignal',
  { timeout: testTimeoutMs },
  async () => {
    const { a, b, close } = await tcpPair();
    try {
      let later: Respond | undefined;
      b.handle('slow', (_from, _body, respond) => {
        later = respond;
      });
      const outcome = new Promise<ChorusError | undefined>((resolve) => {
        const cancel = a.call(nodeId('b'), 'slow', null, (error) => resolve(error));
        setTimeout(cancel, 20);
      });
      assert.ok((await outcome) instanceof CancelledError);

      // The handler answers after the cancel: the reply is late, dropped and counted.
      await waitFor(() => later !== undefined, 'request at b');
      later!(undefined, 'too late');
      await waitFor(() => a.stats().dropped['late-reply'] === 1, 'late reply dropped');

      const controller = new AbortController();
      const aborted = a.callAsync(nodeId('b'), 'slow', null, { signal: controller.signal });
      setTimeout(() => controller.abort(), 20);
      await assert.rejects(aborted, CancelledError);

      // Already aborted: refused before anything is sent.
      await assert.rejects(
        a.callAsync(nodeId('b'), 'slow', null, { signal: controller.signal }),
        CancelledError,
      );
      assert.equal(a.inflight(), 0);
    } finally {
      await close();
    }
  },
);

test(
  'tcp: beyond the inflight bound a call fails at once with queue-full',
  { timeout: testTimeoutMs },
  async () => {
    const { a, b, close } = await tcpPair({ inflightMax: 2 });
    try {
      const held: Respond[] = [];
      b.handle('hold', (_from, body, respond) => {
        held.push(respond);
      });
      const first = settle(a, nodeId('b'), 'hold', 1);
      const second = settle(a, nodeId('b'), 'hold', 2);
      const started = Date.now();
      const [third] = await settle(a, nodeId('b'), 'hold', 3);
      assert.ok(third instanceof ChorusError && third.code === 'queue-full', String(third));
      assert.ok(Date.now() - started < 1_000, 'at once, not at a deadline');
      await waitFor(() => held.length === 2, 'two requests held');
      for (const respond of held) respond(undefined, 'ok');
      assert.deepEqual(await Promise.all([first, second]), [
        [undefined, 'ok'],
        [undefined, 'ok'],
      ]);
      // Room again.
      b.handle('ping', (_from, _body, respond) => respond(undefined, 'pong'));
      assert.equal(await a.callAsync(nodeId('b'), 'ping', null), 'pong');
    } finally {
      await close();
    }
  },
);

test(
  'tcp: malformed envelopes are dropped and logged, the endpoint keeps serving',
  { timeout: testTimeoutMs },
  async () => {
    const { a, b, netA, log, close } = await tcpPair();
    try {
      b.handle('ping', (_from, _body, respond) => respond(undefined, 'pong'));
      const bad = [
        new Uint8Array([0xc1]), // not msgpack
        encode({ not: 'an array' }),
        encode([0, -1, 'ping', null]), // negative id
        encode([0, 1, '', null]), // empty method
        encode([9, 1, 'ping']), // unknown kind
        encode([2, 1, 5, 'x']), // error code not a string
      ];
      for (const payload of bad) netA.send(nodeId('b'), payload);
      await waitFor(() => b.stats().dropped.malformed === bad.length, 'all malformed counted');
      assert.ok(log.lines.some((l) => l.level === 'warn' && l.fields['reason'] === 'malformed'));
      assert.equal(await a.callAsync(nodeId('b'), 'ping', null), 'pong');
    } finally {
      await close();
    }
  },
);

test('tcp: one-way messages reach their handler', { timeout: testTimeoutMs }, async () => {
  const { a, b, close } = await tcpPair();
  try {
    const got: unknown[] = [];
    b.on('gossip', (from, body) => got.push([from, body]));
    assert.equal(a.notify(nodeId('b'), 'gossip', 'hi'), true);
    a.notify(nodeId('b'), 'unheard', 'x');
    await waitFor(() => got.length === 1 && b.stats().dropped['unknown-method'] === 1, 'gossip');
    assert.deepEqual(got, [['a', 'hi']]);
  } finally {
    await close();
  }
});

// ---- The same contract over an in-memory network in virtual time. ----

/** Virtual time: timers fire in (time, creation) order when the test says so. */
class VirtualTimers implements Timers {
  nowMs = 0;
  private next = 1;
  private readonly queue = new Map<number, { atMs: number; fn: () => void }>();

  set(delayMs: number, fn: () => void): TimerId {
    const id = this.next++;
    this.queue.set(id, { atMs: this.nowMs + Math.max(0, delayMs), fn });
    return id as TimerId;
  }

  cancel(id: TimerId): void {
    this.queue.delete(id);
  }

  /** Runs every timer due by `nowMs + ms`, in order; a bound stops a runaway loop. */
  advance(ms: number): void {
    const untilMs = this.nowMs + ms;
    for (let step = 0; step < 100_000; step++) {
      let due: [number, { atMs: number; fn: () => void }] | undefined;
      for (const entry of this.queue)
        if (entry[1].atMs <= untilMs && (!due || entry[1].atMs < due[1].atMs)) due = entry;
      if (!due) {
        this.nowMs = untilMs;
        return;
      }
      this.queue.delete(due[0]);
      this.nowMs = due[1].atMs;
      due[1].fn();
    }
    throw new Error('virtual timers did not settle');
  }
}

/** Nodes on one hub; every message takes 1 ms of virtual time; `cut` drops a node's traffic. */
class FakeHub {
  readonly timers = new VirtualTimers();
  readonly handlers = new Map<NodeId, (from: NodeId, payload: Uint8Array) => void>();
  readonly cut = new Set<NodeId>();

  network(self: NodeId): Network {
    const { handlers, timers, cut } = this;
    return {
      self,
      send(to, payload) {
        if (!handlers.has(to)) return false;
        const copy = payload.slice();
        timers.set(1, () => {
          if (!cut.has(to) && !cut.has(self)) handlers.get(to)?.(self, copy);
        });
        return true;
      },
      onMessage(handler) {
        handlers.set(self, handler);
      },
      peers: () => [...handlers.keys()].filter((id) => id !== self),
      close() {
        handlers.delete(self);
      },
    };
  }

  endpoint(name: string, limits: { inflightMax?: number } = {}): { rpc: Rpc; net: Network } {
    const net = this.network(nodeId(name));
    const rpc = new Rpc(
      { net, timers: this.timers, log: recordingLogger(), random: seededRandom(5).fork(name) },
      limits,
    );
    return { rpc, net };
  }
}

function record(outcomes: unknown[]) {
  return (error: ChorusError | undefined, reply: unknown) =>
    outcomes.push(error ? `${error.name}:${error.code}` : reply);
}

test('fake env: round trip takes two hops of virtual time; handler errors are typed', () => {
  const hub = new FakeHub();
  const { rpc: a } = hub.endpoint('a');
  const { rpc: b } = hub.endpoint('b');
  b.handle('add', (_from, body, respond) => {
    const [x, y] = body as [number, number];
    respond(undefined, x + y);
  });
  b.handle('bad', () => {
    throw new ChorusError('bad-input', 'nope');
  });
  const outcomes: unknown[] = [];
  a.call(nodeId('b'), 'add', [2, 3], record(outcomes));
  a.call(nodeId('b'), 'bad', null, record(outcomes));
  hub.timers.advance(1);
  assert.deepEqual(outcomes, [], 'the reply is not back after one hop');
  hub.timers.advance(1);
  assert.deepEqual(outcomes, [5, 'RemoteError:bad-input']);
});

test('fake env: deadline fires exactly on time, and a reply after it is dropped as late', () => {
  const hub = new FakeHub();
  const { rpc: a } = hub.endpoint('a');
  const { rpc: b } = hub.endpoint('b');
  let respond: Respond | undefined;
  b.handle('slow', (_from, _body, r) => {
    respond = r;
  });
  const outcomes: unknown[] = [];
  a.call(nodeId('b'), 'slow', null, record(outcomes), { deadlineMs: 100 });
  hub.timers.advance(99);
  assert.deepEqual(outcomes, []);
  hub.timers.advance(1);
  assert.deepEqual(outcomes, ['TimeoutError:timeout']);
  respond!(undefined, 'late');
  hub.timers.advance(10);
  assert.deepEqual(outcomes, ['TimeoutError:timeout'], 'exactly one outcome');
  assert.equal(a.stats().dropped['late-reply'], 1);
});

test('fake env: cancel ends the call once; inflight bound refuses at once; unreachable fails fast', () => {
  const hub = new FakeHub();
  const { rpc: a } = hub.endpoint('a', { inflightMax: 2 });
  const { rpc: b } = hub.endpoint('b');
  b.handle('hold', () => {});
  const outcomes: unknown[] = [];
  const cancel = a.call(nodeId('b'), 'hold', 1, record(outcomes));
  a.call(nodeId('b'), 'hold', 2, record(outcomes), { deadlineMs: 50 });
  a.call(nodeId('b'), 'hold', 3, record(outcomes));
  assert.deepEqual(outcomes, [], 'never inside call()');
  hub.timers.advance(0);
  assert.deepEqual(outcomes, ['ChorusError:queue-full']);
  cancel();
  cancel();
  assert.deepEqual(outcomes, ['ChorusError:queue-full', 'CancelledError:cancelled']);
  hub.timers.advance(50);
  assert.deepEqual(outcomes, [
    'ChorusError:queue-full',
    'CancelledError:cancelled',
    'TimeoutError:timeout',
  ]);
  assert.equal(a.inflight(), 0);

  a.call(nodeId('nobody'), 'hold', null, record(outcomes));
  hub.timers.advance(0);
  assert.equal(outcomes.at(-1), 'ChorusError:unreachable');
  assert.deepEqual(
    { timeouts: a.stats().timeouts, cancelled: a.stats().cancelled, refused: a.stats().refused },
    { timeouts: 1, cancelled: 1, refused: 2 },
  );
});

test('fake env: a reply from the wrong node is dropped; close fails pending calls', () => {
  const hub = new FakeHub();
  const { rpc: a, net: netA } = hub.endpoint('a');
  const { rpc: b } = hub.endpoint('b');
  const { net: netC } = hub.endpoint('c');
  b.handle('hold', () => {});
  const outcomes: unknown[] = [];
  a.call(nodeId('b'), 'hold', null, record(outcomes));
  // c forges a reply to a's call, with the right id (sniffed on the hub) but from the wrong node.
  let sniffed: Uint8Array | undefined;
  const deliverToB = hub.handlers.get(nodeId('b'))!;
  hub.handlers.set(nodeId('b'), (from, payload) => {
    sniffed = payload;
    deliverToB(from, payload);
  });
  hub.timers.advance(1);
  assert.ok(sniffed);
  const [, id] = decode(sniffed) as [number, number];
  netC.send(nodeId('a'), encode([1, id, 'forged']));
  hub.timers.advance(1);
  assert.deepEqual(outcomes, []);
  assert.equal(a.stats().dropped['wrong-peer'], 1);
  a.close();
  assert.deepEqual(outcomes, ['ChorusError:closed']);
  assert.equal(netA.send(nodeId('b'), new Uint8Array([1])), true);
});
