/**
 * The Raft driver: connects a RawNode to Env timers, durable storage, the transport (RPC
 * over Env.net) and a state machine. It runs the Ready loop:
 *
 *   ready → send `messages` at once (a leader's appends go out while its own fsync runs;
 *           its new commit index too: forwarding followers answer from their own apply)
 *         → persist snapshot, hard state and entries (one group-committed save)
 *         → send `messagesAfterPersist` → restore/apply → serve reads → advance
 *
 * The leader's own entries count toward commitment only after this node's fsync (advance
 * reports them persisted). Proposals on the leader are gathered until the loop's next turn
 * (while an fsync runs, that is after it) and appended together, so each follower gets one
 * append per turn rather than one per proposal.
 *
 * A proposal on a follower is forwarded to the leader, which answers at once with where it
 * appended it (index and term), in the same write as the append that carries the entry. The
 * follower then waits for its own apply of that index, as the leader does for its own
 * proposals: the entry found there in that term is the proposal (Log Matching), and its
 * result is this node's state machine's, the same as the leader's. So the leader never sends
 * results back, and a proposal that commits is answered even if the leader dies right
 * after (etcd's followers, too, learn their proposals' fate from their own apply). Any
 * storage error stops the process (FatalError): durable state can no longer be trusted.
 */
import { assert } from '../core/assert.js';
import { joinInSteps, joinedBytes, type ByteSource } from '../core/bytes.js';
import { pauseAfterStepMs } from '../core/constants.js';
import { ChorusError, FatalError, asChorusError } from '../core/errors.js';
import type { NodeId, TimerId } from '../core/ids.js';
import { runInSteps, type StepJob } from '../core/job.js';
import type { Env } from '../env/env.js';
import { RemoteError, Rpc } from '../transport/rpc.js';
import {
  proposalsPendingMax,
  snapshotCatchUpBytesDefault,
  snapshotCatchUpEntriesDefault,
  snapshotLogBytesDefault,
  snapshotJoinBytesPerStep,
} from './constants.js';
import { fromWire, toWire, type Message } from './messages.js';
import type { ConfChange, RaftConfig, RestoredState } from './raft.js';
import { RawNode, type Ready } from './rawnode.js';
import type { Entry, HardState, Snapshot, SnapshotMetadata } from './types.js';

/** The durable store the driver needs (src/storage implements it). */
export interface RaftStore {
  /**
   * Durable when `done` runs; entries may overwrite a suffix from their first index. With
   * `mustSync: false` (an update of the commit index alone) `done` may run before it is.
   */
  save(
    update: { hardState?: HardState; entries?: Entry[]; mustSync?: boolean },
    done: (error: Error | undefined) => void,
  ): void;
  saveSnapshot(snapshot: Snapshot, done: (error: Error | undefined) => void): void;
  /**
   * Optional: a snapshot of this log's own committed entries that does not hold up the
   * saves issued after it (RaftStorage.saveSnapshotOfLog), its data given as the pieces of a
   * SnapshotJob; `done` gets the snapshot with the data joined. saveSnapshot otherwise.
   */
  saveSnapshotOfLog?(
    metadata: SnapshotMetadata,
    data: readonly Uint8Array[],
    done: (error: Error | undefined, snapshot: Snapshot | undefined) => void,
  ): void;
  /** Frees log storage at or below `index` (covered by a saved snapshot). */
  compact(index: number, done: (error: Error | undefined) => void): void;
}

/** The replicated state machine. Deterministic: the same entries give the same state. */
export interface StateMachine {
  /** Applies committed entries in order; returns one result per entry (undefined for none). */
  apply(entries: readonly Entry[]): unknown[];
  snapshot(): Uint8Array;
  /**
   * Optional: a snapshot of the state as it is now, encoded in steps so a large state does
   * not stall the node (the driver runs one step per turn of the event loop and keeps
   * applying entries meanwhile — the state must be fixed at the call, e.g. by a
   * copy-on-write clone).
   */
  snapshotJob?(): SnapshotJob;
  restore(data: Uint8Array): void;
  /**
   * Optional: `restore` in steps, reading the bytes where they lie (pieces are not joined),
   * so that installing a large snapshot does not stall the node: the driver runs one step
   * per turn of the event loop, applying nothing meanwhile. The state is replaced in the
   * step that answers true; until then the machine keeps serving its old state.
   */
  restoreJob?(data: ByteSource): { step(): boolean };
}

/**
 * A snapshot encoded in steps. Its result is the snapshot as pieces whose concatenation is
 * its bytes (what `snapshot()` would return): each layer frames the one inside it without
 * copying, and the driver joins the pieces in steps (a 100 MB snapshot copied three times in
 * one turn stalled the node 1.6 s).
 */
export type SnapshotJob = StepJob<Uint8Array[]>;

export interface DriverOptions {
  raft: Omit<RaftConfig, 'random' | 'id'>;
  store: RaftStore;
  recovered: RestoredState;
  stateMachine: StateMachine;
  /** Milliseconds per Raft tick. */
  tickMs: number;
  /** Take a snapshot and compact the log every this many applied entries (0: never). */
  snapshotEveryEntries: number;
  /**
   * Entries kept before a snapshot's index when the log is compacted to it, so that a
   * follower that installs an older snapshot continues with entries (snapshotCatchUpEntries
   * by default).
   */
  snapshotCatchUpEntries?: number;
  /** Bytes those catch-up entries may hold at most (snapshotCatchUpBytesDefault). */
  snapshotCatchUpBytes?: number;
  /**
   * Take a snapshot once the entries applied since the last one hold this many bytes, even
   * before snapshotEveryEntries (snapshotLogBytesDefault).
   */
  snapshotLogBytes?: number;
  /** Deadline of a proposal or read forwarded to the leader. */
  forwardDeadlineMs: number;
  /** Deliberately skip the fsync before acknowledging (tests that prove the campaign sees it). */
  bugSkipPersist?: boolean;
  /** Deliberately read received conf-change entries as normal ones (a wire-codec bug, ditto). */
  bugEntryKindLost?: boolean;
}

export type ApplyDone = (error: ChorusError | undefined, result: unknown) => void;

interface PendingProposal {
  term: number;
  done: ApplyDone;
  /**
   * A proposal of another term waiting on the same index (this node led then, or was told
   * so by an earlier leader). Only the entry that commits there decides between them: an
   * entry that one leader appended and a later one overwrote may still commit under a third.
   */
  older?: PendingProposal;
}

/** Where the leader appended a proposal: its index and term, or why it did not. */
type Placed = (error: ChorusError | undefined, index?: number, term?: number) => void;

/** A proposal made on or forwarded to the leader, waiting for the loop's next turn. */
interface QueuedProposal {
  data: Uint8Array;
  placed: Placed;
  /** Set by proposeInTerm: appended only while this node leads that term. */
  term?: number;
}

const raftMethod = 'raft';
const proposeMethod = 'propose';
const readMethod = 'read';

export class RaftDriver {
  readonly node: RawNode;
  readonly rpc: Rpc;
  /** Appended proposals by index until applied. Invariant: with `queued`, at most proposalsPendingMax. */
  private readonly proposals = new Map<number, PendingProposal>();
  /** Proposals gathered since the last append; the loop appends them together. */
  private queued: QueuedProposal[] = [];
  private readonly reads = new Map<string, (error: ChorusError | undefined) => void>();
  /** Reads whose index is known, waiting for apply: [index, done]. */
  private readsWaitingApply: [number, (error: ChorusError | undefined) => void][] = [];
  private readCounter = 0;
  private applied: number;
  private lastSnapshotIndex: number;
  /** Entry data bytes applied since the last snapshot began (or was installed). */
  private appliedBytesSinceSnapshot = 0;
  private snapshotting = false;
  private busy = false;
  private drainScheduled = false;
  private stopped = false;
  private tickTimer: TimerId | undefined;
  /** Raft messages dropped because a field had the wrong type. */
  malformedMessages = 0;
  /** The hard state most recently handed to storage. */
  private persistedHardState: HardState;

  constructor(
    private readonly env: Env,
    private readonly options: DriverOptions,
  ) {
    const { recovered } = options;
    if (recovered.snapshot !== undefined) {
      // Before the node serves anything: all steps at once.
      const job = restoreJobOf(options.stateMachine, recovered.snapshot.data);
      while (!job.step());
    }
    this.applied = recovered.snapshot?.metadata.index ?? 0;
    this.lastSnapshotIndex = this.applied;
    this.persistedHardState = { ...recovered.hardState };
    this.node = new RawNode(
      { ...options.raft, id: env.net.self, random: env.random.fork('raft') },
      recovered,
    );
    this.rpc = new Rpc(env);
    this.rpc.on(raftMethod, (from, body) => this.onRaftMessage(from, body));
    this.rpc.handle(proposeMethod, (_from, body, respond) => {
      if (!(body instanceof Uint8Array))
        return respond(new ChorusError('bad-input', 'proposal must be bytes'));
      this.place(body, (error, index, term) =>
        error !== undefined ? respond(error) : respond(undefined, [index, term]),
      );
    });
    this.rpc.handle(readMethod, (_from, _body, respond) =>
      this.read((error) => respond(error, null)),
    );
    this.scheduleTick();
    this.schedule();
  }

  get id(): NodeId {
    return this.env.net.self;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  stop(): void {
    this.stopped = true;
    if (this.tickTimer !== undefined) this.env.timers.cancel(this.tickTimer);
    this.rpc.close();
  }

  // --- client operations ---------------------------------------------------------------------

  /**
   * Replicates `data`; `done` gets this node's state machine's result once it applies the
   * entry. Without a known leader (an election in progress) it waits for one, up to the
   * forwarding deadline, before answering 'no-leader' — as etcd does.
   */
  propose(data: Uint8Array, done: ApplyDone): void {
    if (this.proposals.size + this.queued.length >= proposalsPendingMax)
      return done(queueFull(), undefined);
    this.place(data, this.awaitingApply(done));
  }

  /** Where a proposal was placed, turned into waiting for its apply (or the refusal). */
  private awaitingApply(done: ApplyDone): Placed {
    return (error, index, term) =>
      error !== undefined ? done(error, undefined) : this.awaitApply(index!, term!, done);
  }

  /**
   * Has the leader append `data`: this node if it leads (on the loop's next turn), else the
   * leader it knows, or the one elected within the forwarding deadline. `placed` learns the
   * entry's index and term; a deposed leader passes a forwarded proposal on.
   */
  private place(data: Uint8Array, placed: Placed, waitUntilMs?: number): void {
    const raft = this.node.raft;
    if (raft.role === 'leader') return this.enqueue({ data, placed });
    if (raft.lead === '' || raft.lead === this.id) {
      return this.awaitLeader(
        waitUntilMs,
        (until) => this.place(data, placed, until),
        () => placed(new ChorusError('no-leader', 'no leader')),
      );
    }
    this.rpc.call(
      raft.lead,
      proposeMethod,
      data,
      (error, body) => {
        if (error !== undefined) return placed(unwrapRemote(error));
        if (!isPlacement(body))
          return placed(new ChorusError('bad-input', 'malformed answer to a forwarded proposal'));
        placed(undefined, body[0], body[1]);
      },
      { deadlineMs: this.options.forwardDeadlineMs },
    );
  }

  /**
   * `done` gets the result of applying the entry at `index` if it is the one appended in
   * `term`; another term's entry there means the proposal was dropped. An index already
   * applied (the entry reached this node another way before the leader's answer) leaves the
   * outcome unknown.
   */
  private awaitApply(index: number, term: number, done: ApplyDone): void {
    if (index <= this.applied) {
      return done(
        new ChorusError('timeout', `entry ${index} applied before its placement was known`),
        undefined,
      );
    }
    const older = this.proposals.get(index);
    this.proposals.set(index, older === undefined ? { term, done } : { term, done, older });
  }

  /**
   * A proposal this node makes as the leader of `term`, from state that belongs to that
   * term (e.g. a lease expired on its lease clock): refused with not-leader, never forwarded,
   * unless this node leads `term` when it is appended. Re-routed to another leader, a stale
   * leader's decision would commit under the new one (a lease revoked early).
   */
  proposeInTerm(data: Uint8Array, term: number, done: ApplyDone): void {
    if (!this.leads(term)) return done(notLeaderOf(term), undefined);
    this.enqueue({ data, term, placed: this.awaitingApply(done) });
  }

  private leads(term: number): boolean {
    const raft = this.node.raft;
    return raft.role === 'leader' && raft.term === term;
  }

  /**
   * Appended on the loop's next turn with every other proposal of this turn: one append
   * message per follower for all of them. The messages would wait for that turn anyway.
   */
  private enqueue(proposal: QueuedProposal): void {
    if (this.proposals.size + this.queued.length >= proposalsPendingMax) {
      return proposal.placed(queueFull());
    }
    this.queued.push(proposal);
    this.schedule();
  }

  /** Linearizable read barrier: `done` runs once this node has applied everything committed before the call. */
  read(done: (error: ChorusError | undefined) => void, waitUntilMs?: number): void {
    const raft = this.node.raft;
    if (raft.role !== 'leader' && raft.lead === '') {
      return this.awaitLeader(
        waitUntilMs,
        (until) => this.read(done, until),
        () => done(new ChorusError('no-leader', 'no leader to confirm a read')),
      );
    }
    const context = `${this.id}:${this.readCounter++}`;
    try {
      this.node.readIndex(context);
    } catch (error) {
      return done(asChorusError(error));
    }
    this.reads.set(context, done);
    this.schedule();
  }

  /** Retries `again` every tick until a leader is known or the forwarding deadline passes. */
  private awaitLeader(
    untilMs: number | undefined,
    again: (untilMs: number) => void,
    giveUp: () => void,
  ): void {
    const now = this.env.clock.monotonicMs();
    const until = untilMs ?? now + this.options.forwardDeadlineMs;
    if (this.stopped || now >= until) return giveUp();
    this.env.timers.set(this.options.tickMs, () => (this.stopped ? giveUp() : again(until)));
  }

  /**
   * Proposes a membership change on the leader (throws ChorusError when refused: not the
   * leader, or a change still in flight). `done`, if given, runs once the entry applies, with
   * the state machine's result for it, or fails if leadership changed first.
   */
  proposeConfChange(change: ConfChange, done?: ApplyDone): number {
    const index = this.node.proposeConfChange(change);
    if (done !== undefined) this.awaitApply(index, this.node.raft.term, done);
    this.schedule();
    return index;
  }

  transferLeader(to: NodeId): void {
    this.node.transferLeader(to);
    this.schedule();
  }

  // --- the loop --------------------------------------------------------------------------------

  private scheduleTick(): void {
    this.tickTimer = this.env.timers.set(this.options.tickMs, () => {
      if (this.stopped) return;
      this.node.tick();
      this.schedule();
      this.scheduleTick();
    });
  }

  private onRaftMessage(from: NodeId, body: unknown): void {
    if (this.stopped) return;
    const message = fromWire(body, from);
    if (typeof message === 'string') {
      this.malformedMessages++;
      this.env.log.warn('dropping malformed raft message', { from, reason: message });
      return;
    }
    if (this.options.bugEntryKindLost === true && message.type === 'app')
      message.entries = message.entries.map((e) => ({ ...e, type: 'normal' }));
    this.node.step(message);
    this.schedule();
  }

  /** Runs the Ready loop soon (coalescing many inputs into one Ready). */
  private schedule(): void {
    if (this.drainScheduled || this.busy || this.stopped) return;
    this.drainScheduled = true;
    this.env.timers.set(0, () => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    if (this.busy || this.stopped) return;
    this.appendQueued();
    if (!this.node.hasReady()) return;
    this.busy = true;
    const rd = this.node.ready();
    this.sendAll(rd.messages);
    // The appends go out before this node's own save, whose synchronous part (encoding and
    // checksumming the records) would otherwise come first: the followers' fsyncs, not this
    // one, are on the write's critical path.
    if (rd.messages.length > 0) this.env.net.flush?.();
    this.persist(rd, () => {
      if (this.stopped) return;
      this.sendAll(rd.messagesAfterPersist);
      if (rd.snapshot === undefined) return this.finishReady(rd);
      const snapshot = rd.snapshot;
      this.restoreInSteps(snapshot, () => {
        this.applied = snapshot.metadata.index;
        this.lastSnapshotIndex = this.applied;
        this.appliedBytesSinceSnapshot = 0;
        this.forgetProposalsCoveredBy(this.applied);
        this.finishReady(rd);
      });
    });
  }

  /** Applies a persisted Ready's entries and reads, and hands it back to Raft. */
  private finishReady(rd: Ready): void {
    this.apply(rd.committedEntries);
    this.handleReadStates(rd);
    this.node.advance(rd);
    this.busy = false;
    this.maybeSnapshot();
    this.schedule();
  }

  /**
   * Restores the state machine from a snapshot received from the leader, one step per turn
   * of the event loop (a 200 MB store took 0.5–0.9 s in one go). The driver stays busy
   * meanwhile: messages are still stepped into Raft, but nothing is applied or sent until
   * the state is whole; then `done`.
   */
  private restoreInSteps(snapshot: Snapshot, done: () => void): void {
    const job = restoreJobOf(this.options.stateMachine, snapshot.data);
    const unpaced = (): number => 0;
    runInSteps(
      job,
      this.env,
      unpaced,
      () => this.stopped,
      (f) => {
        this.env.log.info('snapshot installed', {
          index: snapshot.metadata.index,
          bytes: snapshot.data.length,
          steps: f.steps,
          longestStepMs: Math.round(f.longestStepMs),
          busyMs: Math.round(f.busyMs),
          restoreMs: Math.round(f.elapsedMs),
        });
        done();
      },
    );
  }

  /** Appends the queued proposals as one batch; leadership lost meanwhile re-routes them. */
  private appendQueued(): void {
    if (this.queued.length === 0) return;
    const queued = this.queued;
    this.queued = [];
    const raft = this.node.raft;
    // Never appended here, so none can commit twice. Lost the lead meanwhile: ordinary
    // proposals go on as new ones; a term-bound one is refused unless it is this term's.
    const current: QueuedProposal[] = [];
    for (const p of queued) {
      if (p.term !== undefined && !this.leads(p.term)) p.placed(notLeaderOf(p.term));
      else if (raft.role !== 'leader') this.place(p.data, p.placed);
      else current.push(p);
    }
    if (current.length === 0) return;
    const results = this.node.proposeBatch(current.map((p) => p.data));
    assert(results.length === current.length, 'one result per queued proposal');
    // Before this turn's appends are sent: a forwarding follower hears where its proposal
    // went in the same write as the entry, and before it can apply it.
    results.forEach((result, i) => {
      const { placed } = current[i]!;
      if (typeof result === 'number') placed(undefined, result, raft.term);
      else placed(result);
    });
  }

  private persist(rd: Ready, done: () => void): void {
    const update: { hardState?: HardState; entries?: Entry[] } = {};
    if (rd.hardState !== undefined) update.hardState = rd.hardState;
    if (rd.entries.length > 0) update.entries = rd.entries;
    const save = (): void => {
      if (update.hardState === undefined && update.entries === undefined) return done();
      // Only the commit index moved: it need not be durable (a restarted node learns it
      // again from the leader), so write it without an fsync of its own and without waiting
      // (etcd's MustSync). Synced, it cost every write a second fsync on every node, and the
      // next proposal's entries queued behind it.
      const previous = this.persistedHardState;
      const mustSync =
        update.entries !== undefined ||
        update.hardState === undefined ||
        update.hardState.term !== previous.term ||
        update.hardState.vote !== previous.vote;
      if (update.hardState !== undefined) this.persistedHardState = update.hardState;
      if (!mustSync) {
        this.options.store.save({ ...update, mustSync: false }, (error) => {
          if (error !== undefined)
            throw new FatalError('raft storage save failed', { cause: error });
        });
        return done();
      }
      if (this.options.bugSkipPersist === true) {
        // The planted bug: acknowledge as if durable, and write in the background.
        this.options.store.save(update, () => {});
        return done();
      }
      this.options.store.save(update, (error) => {
        if (error !== undefined) throw new FatalError('raft storage save failed', { cause: error });
        done();
      });
    };
    if (rd.snapshot === undefined) return save();
    this.options.store.saveSnapshot(rd.snapshot, (error) => {
      if (error !== undefined) throw new FatalError('raft snapshot save failed', { cause: error });
      save();
    });
  }

  private sendAll(messages: readonly Message[]): void {
    for (const m of messages) this.rpc.notify(m.to, raftMethod, toWire(m));
  }

  private apply(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const results = this.options.stateMachine.apply(entries);
    assert(results.length === entries.length, 'state machine must return one result per entry');
    entries.forEach((entry, i) => {
      this.appliedBytesSinceSnapshot += entry.data.length;
      let pending = this.proposals.get(entry.index);
      if (pending === undefined) return;
      this.proposals.delete(entry.index);
      for (; pending !== undefined; pending = pending.older) {
        if (pending.term === entry.term) pending.done(undefined, results[i]);
        else pending.done(dropped(), undefined);
      }
    });
    this.applied = entries[entries.length - 1]!.index;
    this.releaseReads();
  }

  /**
   * A snapshot installed over pending proposals: their entries are in it or were replaced,
   * and which cannot be told here, so their outcome is unknown.
   */
  private forgetProposalsCoveredBy(index: number): void {
    for (const [at, newest] of this.proposals) {
      if (at > index) continue;
      this.proposals.delete(at);
      for (let pending: PendingProposal | undefined = newest; pending; pending = pending.older) {
        pending.done(
          new ChorusError('timeout', `a snapshot through ${index} replaced entry ${at}`),
          undefined,
        );
      }
    }
  }

  private handleReadStates(rd: Ready): void {
    for (const rs of rd.readStates) {
      const done = this.reads.get(rs.context);
      if (done === undefined) continue;
      this.reads.delete(rs.context);
      if (rs.index === 0)
        done(new ChorusError('proposal-dropped', 'the leader could not confirm the read; retry'));
      else this.readsWaitingApply.push([rs.index, done]);
    }
    this.releaseReads();
  }

  private releaseReads(): void {
    if (this.readsWaitingApply.length === 0) return;
    const waiting = this.readsWaitingApply;
    this.readsWaitingApply = [];
    for (const [index, done] of waiting) {
      if (index <= this.applied) done(undefined);
      else this.readsWaitingApply.push([index, done]);
    }
  }

  private maybeSnapshot(): void {
    const every = this.options.snapshotEveryEntries;
    if (every <= 0 || this.snapshotting) return;
    const logBytes = this.options.snapshotLogBytes ?? snapshotLogBytesDefault;
    if (this.applied - this.lastSnapshotIndex < every && this.appliedBytesSinceSnapshot < logBytes)
      return;
    const raft = this.node.raft;
    const index = this.applied;
    const term = raft.log.term(index);
    if (term === undefined) return;
    const metadata = { index, term, confState: raft.confState() };
    this.snapshotting = true;
    this.appliedBytesSinceSnapshot = 0;
    const machine = this.options.stateMachine;
    const job = machine.snapshotJob?.() ?? { step: () => true, result: () => [machine.snapshot()] };
    const store = this.options.store;
    const ofLog = store.saveSnapshotOfLog?.bind(store);
    // The store writes the pieces into its file as they are; saveSnapshot needs them joined
    // first, which is then part of the job.
    const stepped = ofLog !== undefined ? job : joinedInSteps(job);
    runInSteps(
      stepped,
      this.env,
      pauseAfterStepMs,
      () => this.stopped,
      (f) => {
        const pieces = stepped.result();
        this.env.log.info('snapshot encoded', {
          index,
          steps: f.steps,
          longestStepMs: Math.round(f.longestStepMs),
          busyMs: Math.round(f.busyMs),
          encodeMs: Math.round(f.elapsedMs),
        });
        if (ofLog !== undefined) {
          this.saveOwnSnapshot(metadata, (done) => ofLog(metadata, pieces, done));
          return;
        }
        const snapshot = { metadata, data: pieces[0]! };
        this.saveOwnSnapshot(metadata, (done) =>
          store.saveSnapshot(snapshot, (error) => done(error, snapshot)),
        );
      },
    );
  }

  private saveOwnSnapshot(
    metadata: SnapshotMetadata,
    save: (done: (error: Error | undefined, snapshot: Snapshot | undefined) => void) => void,
  ): void {
    const index = metadata.index;
    // A snapshot from the leader may have been installed while this one was encoded.
    if (this.lastSnapshotIndex >= index) {
      this.snapshotting = false;
      return;
    }
    const clock = this.env.clock;
    const calledMs = clock.monotonicMs();
    let callMs = 0;
    save((error, snapshot) => {
      if (error !== undefined) throw new FatalError('raft snapshot save failed', { cause: error });
      assert(snapshot !== undefined, 'a saved snapshot');
      if (this.stopped) return;
      // callMs: the synchronous part; durableMs: until joined, written and fsynced.
      this.env.log.info('snapshot saved', {
        index,
        bytes: snapshot.data.length,
        callMs: Math.round(callMs),
        durableMs: Math.round(clock.monotonicMs() - calledMs),
      });
      // A snapshot from the leader, installed or still being persisted, supersedes this one.
      if (this.lastSnapshotIndex >= index || this.node.raft.log.pendingSnapshot !== undefined) {
        this.snapshotting = false;
        return;
      }
      const catchUp = this.node.raft.log.entriesWithin(
        index,
        this.options.snapshotCatchUpEntries ?? snapshotCatchUpEntriesDefault,
        this.options.snapshotCatchUpBytes ?? snapshotCatchUpBytesDefault,
      );
      this.node.compact(snapshot, catchUp);
      this.lastSnapshotIndex = index;
      this.options.store.compact(Math.max(index - catchUp, 0), (compactError) => {
        if (compactError !== undefined)
          throw new FatalError('raft log compaction failed', { cause: compactError });
        this.snapshotting = false;
      });
    });
    callMs = clock.monotonicMs() - calledMs;
  }
}

/** The machine's restore in steps, or its `restore` of the joined bytes as one step. */
export function restoreJobOf(machine: StateMachine, data: ByteSource): { step(): boolean } {
  if (machine.restoreJob !== undefined) return machine.restoreJob(data);
  return { step: () => (machine.restore(joinedBytes(data)), true) };
}

/** A job whose result is joined too, in steps of snapshotJoinBytesPerStep: one piece. */
function joinedInSteps(job: SnapshotJob): SnapshotJob {
  let join: ((budget: number) => Uint8Array | undefined) | undefined;
  let joined: Uint8Array | undefined;
  return {
    step: () => {
      if (join === undefined) {
        if (job.step()) join = joinInSteps(job.result());
        return false;
      }
      joined = join(snapshotJoinBytesPerStep);
      return joined !== undefined;
    },
    result: () => {
      assert(joined !== undefined, 'snapshot joined');
      return [joined];
    },
  };
}

const dropped = (): ChorusError =>
  new ChorusError('proposal-dropped', 'leadership changed before the entry committed');

const queueFull = (): ChorusError =>
  new ChorusError('queue-full', `${proposalsPendingMax} proposals pending; retry later`);

/** A forwarded proposal's answer: [index, term] of the entry the leader appended. */
function isPlacement(body: unknown): body is [number, number] {
  return (
    Array.isArray(body) &&
    body.length === 2 &&
    Number.isSafeInteger(body[0]) &&
    (body[0] as number) > 0 &&
    Number.isSafeInteger(body[1]) &&
    (body[1] as number) > 0
  );
}

const notLeaderOf = (term: number): ChorusError =>
  new ChorusError('not-leader', `no longer the leader of term ${term}`);

/** A forwarded call's remote ChorusError keeps its code for the client. */
function unwrapRemote(error: ChorusError | undefined): ChorusError | undefined {
  if (error instanceof RemoteError)
    return new ChorusError(error.code, error.message, { cause: error });
  return error;
}
