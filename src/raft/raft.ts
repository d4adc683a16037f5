/**
 * The Raft core, a pure state machine in the manner of etcd-raft: `tick()` and `step(m)`
 * change state and queue messages; nothing here does I/O, reads a clock or sets a timer.
 * RawNode (rawnode.ts) packages the results as a `Ready` for the driver.
 *
 * Paper sections cited are from Ongaro & Ousterhout, "In Search of an Understandable
 * Consensus Algorithm" (§5, §6, §7) and Ongaro's thesis (thesis §x).
 */
import { Pieces } from '../core/bytes.js';
import { assert, assertNever } from '../core/assert.js';
import { decode, encode } from '../core/codec.js';
import { ChorusError } from '../core/errors.js';
import type { NodeId } from '../core/ids.js';
import type { Random } from '../core/prng.js';
import {
  appendBytesMax,
  electionTicksDefault,
  entryBytesMax,
  heartbeatTicksDefault,
  inflightBytesMax,
  inflightMessagesMax,
  pendingReadsMax,
  snapshotChunkBytes,
  snapshotChunksInFlightMax,
  snapshotSilentRoundsMax,
  uncommittedBytesMax,
} from './constants.js';
import { entryBytes, RaftLog } from './log.js';
import type {
  Append,
  AppendResponse,
  Heartbeat,
  HeartbeatResponse,
  Message,
  ReadIndexRequest,
  SnapshotChunk,
  SnapshotResponse,
  VoteRequest,
  VoteResponse,
} from './messages.js';
import { Progress } from './progress.js';
import { jointIndex, jointVote } from './quorum.js';
import type { ConfState, Entry, HardState, Snapshot } from './types.js';

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/**
 * Deliberate bugs, for proving that the simulation campaign catches them. Never set outside
 * tests. `commit-old-term` commits an entry of an earlier term by counting replicas, the
 * mistake Figure 8 of the paper shows to be unsafe. `snapshot-chunk-gap` has a follower take
 * a snapshot chunk that starts beyond the bytes it holds (a lost chunk skipped, not asked
 * for again): the snapshot it installs lacks bytes.
 */
export type RaftBug = 'commit-old-term' | 'snapshot-chunk-gap';

export interface RaftConfig {
  id: NodeId;
  /** The voters of a new cluster; ignored when restoring from a snapshot with a ConfState. */
  peers: readonly NodeId[];
  /** Draws randomized election timeouts: from Env.random in production and simulation. */
  random: Random;
  electionTicks?: number;
  heartbeatTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /**
   * 'safe': a read index is confirmed by a heartbeat round to a quorum (thesis §6.4).
   * 'lease': the leader serves reads at its commit index without that round, trusting that
   * no other leader can exist while its check-quorum lease holds. That assumes the clocks of
   * all nodes run at rates within a bounded drift, so that followers cannot time out and
   * elect a new leader before the old leader notices it lost its quorum: with election
   * timeout E and drift bound ρ, the leader must stop serving lease reads by E·(1−ρ) after
   * its last quorum contact. Chorus uses `electionTicks - 2` ticks of lease (≥ 20% margin at
   * the default 10 ticks), safe for drift below 20%.
   */
  readOnly?: 'safe' | 'lease';
  /** Bytes of entries per append message (at least one entry); appendBytesMax by default. */
  appendBytesMax?: number;
  /** Bytes of a snapshot per chunk; snapshotChunkBytes by default (the simulator's are tiny). */
  snapshotChunkBytes?: number;
  /**
   * Start a new cluster by writing its voters into the log, as etcd does: one `add-voter`
   * conf-change entry per voter at indexes 1..n of term 1, committed (every founding member
   * writes the same entries). Then the log and snapshots alone describe the membership, so a
   * member added later, starting empty with no `peers`, learns it by replaying the log.
   * Used only when storage is empty (a restart takes its configuration from the snapshot and
   * the log); `peers` must then be empty. Each voter's `context` reaches the state machine.
   */
  bootstrap?: readonly { node: NodeId; context?: Uint8Array }[];
  bug?: RaftBug;
}

export interface RestoredState {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  entries: readonly Entry[];
}

export type ConfChangeType = 'add-voter' | 'remove-node' | 'add-learner';

export interface ConfChange {
  changes: { type: ConfChangeType; node: NodeId }[];
  /** 'auto' (default): simple when possible, joint with automatic leave otherwise. */
  transition?: 'auto' | 'joint-explicit';
  /** Opaque to Raft: what the application records with the change (e.g. a member's URLs). */
  context?: Uint8Array;
}

export interface ReadState {
  index: number;
  context: string;
}

interface PendingRead {
  index: number;
  requester: NodeId;
  context: string;
  acks: Map<NodeId, boolean>;
}

interface IncomingSnapshot {
  index: number;
  chunks: Uint8Array[];
  received: number;
}

const noLeader = '' as const;
const leasePrefix = 'lease:';

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId | '' = '';
  role: Role = 'follower';
  lead: NodeId | '' = noLeader;
  readonly log = new RaftLog();
  /** Messages to send, taken by RawNode. */
  msgs: Message[] = [];
  readStates: ReadState[] = [];

  // Membership (thesis §4.3).
  incoming = new Set<NodeId>();
  outgoing = new Set<NodeId>();
  learners = new Set<NodeId>();
  learnersNext = new Set<NodeId>();
  autoLeave = false;
  progress = new Map<NodeId, Progress>();

  /** The latest snapshot of the local state machine, sent to followers that fell behind. */
  snapshot: Snapshot | undefined;

  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly readOnly: 'safe' | 'lease';
  private readonly random: Random;
  private readonly bug: RaftBug | undefined;
  private readonly appendBytesMax: number;
  private readonly snapshotChunkBytes: number;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private votes = new Map<NodeId, boolean>();
  leadTransferee: NodeId | '' = noLeader;
  /** Index of the latest conf change appended by this leader; one at a time. */
  private pendingConfIndex = 0;
  private uncommittedBytes = 0;
  private pendingReads: PendingRead[] = [];
  private incomingSnapshot: IncomingSnapshot | undefined;
  /** Ticks since this node started (lease arithmetic). */
  private ticks = 0;
  /** Per follower: the send tick of the newest lease heartbeat it answered. */
  private leaseAcks = new Map<NodeId, number>();

  constructor(config: RaftConfig, restored: RestoredState) {
    this.id = config.id;
    this.random = config.random;
    this.electionTicks = config.electionTicks ?? electionTicksDefault;
    this.heartbeatTicks = config.heartbeatTicks ?? heartbeatTicksDefault;
    assert(
      this.heartbeatTicks < this.electionTicks,
      'heartbeat ticks must be fewer than election ticks',
    );
    this.preVote = config.preVote ?? true;
    this.checkQuorum = config.checkQuorum ?? true;
    this.readOnly = config.readOnly ?? 'safe';
    this.bug = config.bug;
    this.appendBytesMax = config.appendBytesMax ?? appendBytesMax;
    this.snapshotChunkBytes = config.snapshotChunkBytes ?? snapshotChunkBytes;

    const { hardState, snapshot, entries } = restored;
    if (snapshot !== undefined) {
      this.log.restore(snapshot);
      // The driver restores the state machine from this snapshot before the node starts.
      this.log.appliedSnapshot(snapshot.metadata.index);
      this.snapshot = snapshot;
      this.applyConfState(snapshot.metadata.confState);
    } else {
      this.applyConfState({
        voters: [...config.peers],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      });
    }
    if (entries.length > 0) {
      const first = entries[0]!.index;
      assert(
        first === this.log.lastIndex() + 1,
        () => `restored entries start at ${first}, log ends at ${this.log.lastIndex()}`,
      );
      this.log.entries.push(...entries);
      this.log.stable = this.log.lastIndex();
    }
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.log.commitTo(
      Math.max(this.log.committed, Math.min(hardState.commit, this.log.lastIndex())),
    );
    if (config.bootstrap !== undefined) this.bootstrap(config, restored);
    this.becomeFollower(this.term, noLeader);
  }

  /**
   * Writes the founding voters as committed conf-change entries of term 1 (RaftConfig.bootstrap).
   * They are unstable here: the driver persists them with the first Ready and then applies
   * them, which builds the configuration; until then it is empty and this node stays quiet.
   */
  private bootstrap(config: RaftConfig, restored: RestoredState): void {
    const voters = config.bootstrap ?? [];
    assert(config.peers.length === 0, 'bootstrap takes its voters from `bootstrap`, not `peers`');
    const empty =
      restored.snapshot === undefined && restored.entries.length === 0 && this.term === 0;
    if (!empty) return;
    assert(voters.length > 0, 'bootstrap needs at least one voter');
    this.term = 1;
    this.log.append(
      voters.map((v, i) => ({
        term: 1,
        index: i + 1,
        type: 'conf-change' as const,
        data: encode({
          changes: [{ type: 'add-voter', node: v.node }],
          ...(v.context === undefined ? {} : { context: v.context }),
        } satisfies ConfChange),
      })),
    );
    this.log.commitTo(voters.length);
  }

  // --- queries -----------------------------------------------------------------------------

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return {
      voters: [...this.incoming].sort(),
      learners: [...this.learners].sort(),
      votersOutgoing: [...this.outgoing].sort(),
      learnersNext: [...this.learnersNext].sort(),
      autoLeave: this.autoLeave,
    };
  }

  isVoter(id: NodeId): boolean {
    return this.incoming.has(id) || this.outgoing.has(id);
  }

  private promotable(): boolean {
    return this.isVoter(this.id);
  }

  private members(): NodeId[] {
    return [
      ...new Set([...this.incoming, ...this.outgoing, ...this.learners, ...this.learnersNext]),
    ].sort();
  }

  // --- role changes ------------------------------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = noLeader;
    }
    this.lead = noLeader;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTicks + this.random.int(this.electionTicks);
    this.votes = new Map();
    this.leadTransferee = noLeader;
    this.pendingReads = [];
    this.leaseAcks = new Map();
    this.resetProgress();
  }

  private resetProgress(): void {
    const next = this.log.lastIndex() + 1;
    const old = this.progress;
    this.progress = new Map();
    for (const id of this.members()) {
      const pr = new Progress(next, inflightMessagesMax, inflightBytesMax);
      if (id === this.id) pr.match = this.log.stable;
      pr.recentActive = old.get(id)?.recentActive ?? false;
      this.progress.set(id, pr);
    }
  }

  becomeFollower(term: number, lead: NodeId | ''): void {
    this.reset(term);
    this.role = 'follower';
    this.lead = lead;
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become pre-candidate');
    // PreVote does not change the term or the vote (thesis §9.6).
    this.role = 'pre-candidate';
    this.votes = new Map();
    this.lead = noLeader;
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader');
    this.reset(this.term);
    this.role = 'leader';
    this.lead = this.id;
    for (const pr of this.progress.values()) pr.recentActive = true;
    this.progress.get(this.id)?.becomeReplicate();
    // A leader may not know which entries are committed until it commits one of its own
    // term (§5.4.2, §8): it appends an empty entry at once.
    this.pendingConfIndex = this.log.lastIndex();
    this.uncommittedBytes = 0;
    this.appendEntries([{ term: this.term, index: 0, type: 'normal', data: new Uint8Array(0) }]);
  }

  // --- ticks -------------------------------------------------------------------------------

  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.ticks++;
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(false);
    }
  }

  private tickHeartbeat(): void {
    this.ticks++;
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      // §6.2 / thesis §6.2: a leader that has not heard from a quorum for an election
      // timeout steps down, so a partitioned leader stops serving.
      if (this.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, noLeader);
        return;
      }
      for (const [id, pr] of this.progress) {
        if (id === this.id) continue;
        if (pr.state === 'snapshot') {
          pr.silentRounds = pr.recentActive ? 0 : pr.silentRounds + 1;
          if (pr.silentRounds >= snapshotSilentRoundsMax) pr.abandonSnapshot();
        }
        pr.recentActive = false;
      }
      // A transfer that did not finish within an election timeout is abandoned (thesis §3.10).
      this.leadTransferee = noLeader;
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      // A periodic heartbeat also confirms the newest pending read, so a read whose own
      // heartbeats were lost is released by the next round. In lease mode it otherwise
      // carries its send tick: an answer proves the follower reset its election timer after it.
      const newest = this.pendingReads[this.pendingReads.length - 1];
      const context =
        newest !== undefined
          ? newest.context
          : this.readOnly === 'lease'
            ? `${leasePrefix}${this.ticks}`
            : '';
      this.broadcastHeartbeat(context);
      // Time without an answer to a probe or snapshot progress is counted in these periodic
      // rounds, not in replies (Progress.quietRounds).
      for (const pr of this.progress.values())
        if (pr.state === 'snapshot' || (pr.state === 'probe' && pr.probeSent)) pr.quietRounds++;
    }
  }

  private quorumActive(): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) active.set(id, id === this.id || pr.recentActive);
    return jointVote(this.incoming, this.outgoing, active) === 'won';
  }

  /** Whether the leader's check-quorum lease still holds (lease reads, vote refusal). */
  private inLease(): boolean {
    return this.lead !== noLeader && this.electionElapsed < this.electionTicks;
  }

  // --- elections (§5.2, thesis §9.6 PreVote) -----------------------------------------------

  /** Starts an election; `transfer` skips PreVote and overrides followers' leases. */
  campaign(transfer: boolean): void {
    if (!this.promotable()) return;
    if (this.role === 'leader') return;
    if (this.preVote && !transfer) {
      this.becomePreCandidate();
      this.requestVotes(true, false);
    } else {
      this.becomeCandidate();
      this.requestVotes(false, transfer);
    }
  }

  private requestVotes(pre: boolean, transfer: boolean): void {
    const term = pre ? this.term + 1 : this.term;
    this.votes.set(this.id, true);
    if (this.pollVotes(pre)) return;
    for (const id of this.members()) {
      if (id === this.id || !this.isVoter(id)) continue;
      this.send({
        type: 'vote',
        from: this.id,
        to: id,
        term,
        pre,
        lastIndex: this.log.lastIndex(),
        lastTerm: this.log.lastTerm(),
        transfer,
      });
    }
  }

  /** Tallies votes; acts on a result. Returns true when the election ended. */
  private pollVotes(pre: boolean): boolean {
    switch (jointVote(this.incoming, this.outgoing, this.votes)) {
      case 'won':
        if (pre) {
          this.becomeCandidate();
          this.requestVotes(false, false);
        } else {
          this.becomeLeader();
        }
        return true;
      case 'lost':
        this.becomeFollower(this.term, noLeader);
        return true;
      case 'pending':
        return false;
    }
  }

  private handleVoteRequest(m: VoteRequest): void {
    // §5.2, §5.4.1: grant if we have not voted for another in this term and the candidate's
    // log is at least as up to date. A pre-vote is granted on the same log rule for a future
    // term without recording anything.
    const canVote =
      this.vote === m.from ||
      (this.vote === noLeader && this.lead === noLeader) ||
      (m.pre && m.term > this.term);
    const granted = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);
    if (granted && !m.pre) {
      this.electionElapsed = 0;
      this.vote = m.from;
    }
    this.send({
      type: 'vote-resp',
      from: this.id,
      to: m.from,
      term: granted ? m.term : this.term,
      pre: m.pre,
      granted,
    });
  }

  private handleVoteResponse(m: VoteResponse): void {
    const pre = this.role === 'pre-candidate';
    if (m.pre !== pre) return;
    if (!this.votes.has(m.from)) this.votes.set(m.from, m.granted);
    this.pollVotes(pre);
  }

  // --- step ----------------------------------------------------------------------------------

  step(m: Message): void {
    if (m.term > this.term) {
      if (m.type === 'vote') {
        // Thesis §4.2.3: while a follower hears from its leader it ignores candidates, so a
        // removed or partitioned node cannot disrupt a healthy leader. A transfer overrides.
        if (this.checkQuorum && this.inLease() && !m.transfer) return;
      }
      if ((m.type === 'vote' && m.pre) || (m.type === 'vote-resp' && m.pre && m.granted)) {
        // Pre-votes never change terms.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, noLeader);
      }
    } else if (m.term < this.term) {
      if (m.type === 'app' || m.type === 'heartbeat') {
        // A stale leader: answer with our term so it steps down (needed with CheckQuorum and
        // PreVote, where our higher term would otherwise never reach it).
        this.send({
          type: 'app-resp',
          from: this.id,
          to: m.from,
          term: this.term,
          index: 0,
          reject: true,
          hintIndex: 0,
          hintTerm: 0,
        });
      } else if (m.type === 'vote' && m.pre) {
        this.send({
          type: 'vote-resp',
          from: this.id,
          to: m.from,
          term: this.term,
          pre: true,
          granted: false,
        });
      }
      return;
    }

    if (m.type === 'vote') {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'pre-candidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
      default:
        assertNever(this.role, 'role');
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.progress.get(m.from);
    switch (m.type) {
      case 'app-resp':
        if (pr !== undefined) this.handleAppendResponse(m, pr);
        break;
      case 'heartbeat-resp':
        if (pr !== undefined) this.handleHeartbeatResponse(m, pr);
        break;
      case 'snap-resp':
        if (pr !== undefined) this.handleSnapshotResponse(m, pr);
        break;
      case 'read-index':
        this.handleReadIndexRequest(m);
        break;
      case 'vote-resp':
      case 'app':
      case 'heartbeat':
      case 'snap':
      case 'timeout-now':
      case 'read-index-resp':
      case 'vote':
        break;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'vote-resp':
        this.handleVoteResponse(m);
        break;
      case 'app':
      case 'heartbeat':
      case 'snap':
        // §5.2: a candidate that hears from a leader of its term returns to follower.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        break;
      case 'app-resp':
      case 'heartbeat-resp':
      case 'snap-resp':
      case 'timeout-now':
      case 'read-index':
      case 'read-index-resp':
      case 'vote':
        break;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshotChunk(m);
        break;
      case 'timeout-now':
        // Thesis §3.10: campaign at once, skipping PreVote and the followers' leases.
        this.campaign(true);
        break;
      case 'read-index-resp':
        // Index 0 means the leader could not serve it; the driver fails that read (retryable).
        this.readStates.push({ index: m.index, context: m.context });
        break;
      case 'read-index':
        // Not the leader (any more): the requester retries.
        this.send({
          type: 'read-index-resp',
          from: this.id,
          to: m.from,
          term: this.term,
          context: m.context,
          index: 0,
        });
        break;
      case 'vote-resp':
      case 'app-resp':
      case 'heartbeat-resp':
      case 'snap-resp':
      case 'vote':
        break;
    }
  }

  // --- replication (§5.3) --------------------------------------------------------------------

  private handleAppend(m: Append): void {
    if (m.index < this.log.committed) {
      this.send({
        type: 'app-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        index: this.log.committed,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({
        type: 'app-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        index: lastNew,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      });
      return;
    }
    // Fast backtracking (§5.3, "the follower can include the term of the conflicting entry"):
    // hint the largest index whose term is at most the leader's term at m.index.
    const hintIndex = this.log.findConflictByTerm(
      Math.min(m.index, this.log.lastIndex()),
      m.logTerm,
    );
    this.send({
      type: 'app-resp',
      from: this.id,
      to: m.from,
      term: this.term,
      index: m.index,
      reject: true,
      hintIndex,
      hintTerm: this.log.term(hintIndex) ?? 0,
    });
  }

  private handleHeartbeat(m: Heartbeat): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({
      type: 'heartbeat-resp',
      from: this.id,
      to: m.from,
      term: this.term,
      context: m.context,
    });
  }

  private handleAppendResponse(m: AppendResponse, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      if (m.index === 0 && m.hintIndex === 0) return; // A stale-term answer handled in step().
      let next = m.hintIndex;
      if (m.hintTerm > 0) next = this.log.findConflictByTerm(m.hintIndex, m.hintTerm);
      if (pr.maybeDecrease(m.index, next)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, false);
      }
      return;
    }
    const wasPaused = pr.paused();
    if (!pr.maybeUpdate(m.index)) {
      if (wasPaused && !pr.paused()) this.sendAppend(m.from, false);
      return;
    }
    switch (pr.state) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.match >= pr.pendingSnapshot) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case 'replicate':
        pr.inflights.freeTo(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.broadcastAppend();
    } else {
      // Stream as much as the window allows.
      while (!pr.paused() && pr.next <= this.log.lastIndex()) {
        if (!this.sendAppend(m.from, false)) break;
      }
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex())
      this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: HeartbeatResponse, pr: Progress): void {
    pr.recentActive = true;
    // A probe unanswered for a round was lost (the follower answers in order): send it again.
    if (pr.quietRounds >= 1) pr.probeSent = false;
    if (pr.state === 'snapshot') {
      // Alive, yet no chunk acknowledged for two heartbeat rounds: some were lost; send again.
      if (pr.quietRounds >= 2) {
        pr.rewindSnapshot();
        this.sendSnapshotChunks(m.from, pr);
      }
    } else if (pr.match < this.log.lastIndex()) {
      // The follower is alive but behind: appends may have been lost. Free a window slot so a
      // full window cannot stall forever, and send an append even if empty — a follower
      // missing entries rejects it and the leader falls back to probing from the hint.
      if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst();
      this.sendAppend(m.from, true);
    }
    if (m.context.startsWith(leasePrefix)) {
      const sent = Number(m.context.slice(leasePrefix.length));
      if (sent > (this.leaseAcks.get(m.from) ?? -1)) this.leaseAcks.set(m.from, sent);
    } else if (m.context !== '') {
      this.ackRead(m.context, m.from);
    }
  }

  /**
   * Lease reads: the quorum-th most recent heartbeat answered was sent at tick q, so every
   * voter of that quorum reset its election timer at or after q and none of them will vote
   * for another leader before q + electionTicks (CheckQuorum leases). Two ticks of margin
   * absorb clock drift between nodes (see RaftConfig.readOnly).
   */
  private leaseValid(): boolean {
    const acked = (id: NodeId): number =>
      id === this.id ? this.ticks : (this.leaseAcks.get(id) ?? -Infinity);
    const q = jointIndex(this.incoming, this.outgoing, acked);
    return q > 0 && this.ticks - q < this.electionTicks - 2;
  }

  /**
   * Sends entries from pr.next (or a snapshot if they were compacted away). With `allowEmpty`
   * an append without entries still goes (to carry a new commit index). Returns whether
   * something was sent.
   */
  private sendAppend(to: NodeId, allowEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || pr.paused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.startSnapshot(to, pr);
    const entries =
      pr.next <= this.log.lastIndex()
        ? this.log.slice(pr.next, this.log.lastIndex() + 1, this.appendBytesMax)
        : [];
    if (entries.length === 0 && !allowEmpty) return false;
    let bytes = 0;
    for (const e of entries) bytes += entryBytes(e);
    this.send({
      type: 'app',
      from: this.id,
      to,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    });
    if (entries.length > 0) pr.sentEntries(entries[entries.length - 1]!.index, bytes);
    else if (pr.state === 'probe') pr.probeWent();
    return true;
  }

  private broadcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id, true);
  }

  private broadcastHeartbeat(context: string): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // The commit sent is capped at what the follower is known to hold (it may lack entries).
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: 'heartbeat', from: this.id, to: id, term: this.term, commit, context });
    }
  }

  /**
   * §5.3, §5.4.2: advance commit to the highest index a quorum holds durably, but only if
   * that entry is of the current term (Figure 8); earlier entries commit with it.
   */
  maybeCommit(): boolean {
    const index = jointIndex(
      this.incoming,
      this.outgoing,
      (id) => this.progress.get(id)?.match ?? 0,
    );
    if (index <= this.log.committed) return false;
    if (this.log.term(index) !== this.term && this.bug !== 'commit-old-term') return false;
    this.log.commitTo(index);
    return true;
  }

  /** The driver persisted entries up to `index` of `term`: the leader's own vote now counts. */
  persisted(index: number, term: number): void {
    this.log.stableTo(index, term);
    if (this.role !== 'leader') return;
    const self = this.progress.get(this.id);
    if (self !== undefined && self.maybeUpdate(this.log.stable) && this.maybeCommit())
      this.broadcastAppend();
  }

  private appendEntries(entries: Entry[]): void {
    let index = this.log.lastIndex();
    for (const e of entries) {
      e.term = this.term;
      e.index = ++index;
      this.uncommittedBytes += entryBytes(e);
    }
    this.log.append(entries);
    this.broadcastAppend();
    // A single-voter cluster commits once its own fsync completes (see persisted()).
  }

  // --- proposals -----------------------------------------------------------------------------

  /** Appends a normal entry. Returns its index, or throws a named error. */
  /** One proposal: its index, or throws the error that refused it. */
  propose(data: Uint8Array): number {
    const [result] = this.proposeBatch([data]);
    if (result instanceof ChorusError) throw result;
    return result!;
  }

  /**
   * Appends normal entries together, so that each follower gets them in one append message
   * rather than one message per entry (the driver gathers the proposals of one turn of its
   * loop). Returns, for each data in order, its index or the named error that refused it;
   * a refused proposal does not stop the ones after it.
   */
  proposeBatch(datas: readonly Uint8Array[]): (number | ChorusError)[] {
    const results: (number | ChorusError)[] = [];
    const entries: Entry[] = [];
    let batchBytes = 0;
    let index = this.log.lastIndex();
    for (const data of datas) {
      const refusal = this.proposalRefusal(data.length, batchBytes);
      if (refusal !== undefined) {
        results.push(refusal);
        continue;
      }
      const entry: Entry = { term: 0, index: 0, type: 'normal', data };
      entries.push(entry);
      batchBytes += entryBytes(entry);
      results.push(++index);
    }
    if (entries.length > 0) this.appendEntries(entries);
    assert(this.log.lastIndex() === index, 'a batch takes consecutive indexes');
    return results;
  }

  proposeConfChange(change: ConfChange): number {
    const data = encode(change);
    this.checkCanPropose(data.length);
    if (this.pendingConfIndex > this.log.applied) {
      throw new ChorusError('proposal-dropped', 'a configuration change is still being applied');
    }
    if (this.outgoing.size > 0 && change.changes.length > 0) {
      throw new ChorusError('proposal-dropped', 'leave the joint configuration first');
    }
    this.validateConfChange(change);
    this.appendEntries([{ term: 0, index: 0, type: 'conf-change', data }]);
    this.pendingConfIndex = this.log.lastIndex();
    return this.log.lastIndex();
  }

  private checkCanPropose(bytes: number): void {
    const refusal = this.proposalRefusal(bytes, 0);
    if (refusal !== undefined) throw refusal;
  }

  /** Why a proposal of `bytes` must be refused, if it must; `batchBytes` are not yet appended. */
  private proposalRefusal(bytes: number, batchBytes: number): ChorusError | undefined {
    if (this.role !== 'leader') {
      return new ChorusError(
        'not-leader',
        this.lead === noLeader ? 'no leader' : `not the leader; leader is ${this.lead}`,
      );
    }
    if (this.leadTransferee !== noLeader) {
      return new ChorusError('proposal-dropped', `leadership is moving to ${this.leadTransferee}`);
    }
    if (bytes > entryBytesMax)
      return new ChorusError(
        'proposal-dropped',
        `entry of ${bytes} bytes exceeds ${entryBytesMax}`,
      );
    const uncommitted = this.uncommittedBytes + batchBytes;
    if (uncommitted > 0 && uncommitted + bytes > uncommittedBytesMax)
      return new ChorusError('proposal-dropped', `too many uncommitted bytes (${uncommitted})`);
    return undefined;
  }

  /** Called as committed entries go to the state machine: frees the uncommitted budget. */
  reduceUncommitted(entries: readonly Entry[]): void {
    if (this.role !== 'leader') return;
    for (const e of entries)
      this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entryBytes(e));
  }

  // --- membership (thesis §4.3 joint consensus) ----------------------------------------------

  private validateConfChange(change: ConfChange): void {
    const voters = new Set(this.incoming);
    for (const c of change.changes) {
      if (c.type === 'add-voter') voters.add(c.node);
      else voters.delete(c.node);
    }
    if (voters.size === 0)
      throw new ChorusError('proposal-dropped', 'a configuration needs at least one voter');
  }

  /** Applies a committed conf-change entry (called as it goes to the state machine). */
  applyConfChange(change: ConfChange): void {
    if (change.changes.length === 0) {
      // Leave the joint configuration: C_new alone from now on.
      for (const id of this.learnersNext) this.learners.add(id);
      this.outgoing = new Set();
      this.learnersNext = new Set();
      this.autoLeave = false;
    } else {
      const voterChanges = change.changes.filter((c) =>
        c.type === 'add-voter' ? !this.incoming.has(c.node) : this.incoming.has(c.node),
      ).length;
      const joint = change.transition === 'joint-explicit' || voterChanges > 1;
      if (joint) {
        this.outgoing = new Set(this.incoming);
        this.autoLeave = change.transition !== 'joint-explicit';
      }
      for (const c of change.changes) this.applyOneChange(c.type, c.node, joint);
    }
    this.afterMembershipChange();
  }

  private applyOneChange(type: ConfChangeType, node: NodeId, joint: boolean): void {
    switch (type) {
      case 'add-voter':
        this.learners.delete(node);
        this.learnersNext.delete(node);
        this.incoming.add(node);
        break;
      case 'add-learner':
        this.incoming.delete(node);
        // A voter of the outgoing half stays a voter until the joint config is left.
        if (joint && this.outgoing.has(node)) this.learnersNext.add(node);
        else this.learners.add(node);
        break;
      case 'remove-node':
        this.incoming.delete(node);
        this.learners.delete(node);
        this.learnersNext.delete(node);
        break;
      default:
        assertNever(type, 'conf change type');
    }
  }

  private applyConfState(cs: ConfState): void {
    this.incoming = new Set(cs.voters);
    this.outgoing = new Set(cs.votersOutgoing);
    this.learners = new Set(cs.learners);
    this.learnersNext = new Set(cs.learnersNext);
    this.autoLeave = cs.autoLeave;
    this.afterMembershipChange();
  }

  private afterMembershipChange(): void {
    const members = new Set(this.members());
    for (const id of [...this.progress.keys()]) if (!members.has(id)) this.progress.delete(id);
    for (const id of members) {
      if (!this.progress.has(id)) {
        const pr = new Progress(this.log.lastIndex() + 1, inflightMessagesMax, inflightBytesMax);
        if (id === this.id) pr.match = this.log.stable;
        this.progress.set(id, pr);
      }
    }
    if (this.role !== 'leader') return;
    if (!this.isVoter(this.id) && this.outgoing.size === 0) {
      // Thesis §4.2.2: a leader removed from the configuration steps down once C_new commits.
      this.becomeFollower(this.term, noLeader);
      return;
    }
    this.maybeCommit();
    this.broadcastAppend();
  }

  /**
   * Thesis §4.3: once the joint configuration is applied, the leader proposes leaving it.
   * Checked after every apply, so a leader elected while joint also leaves (its own no-op,
   * and so the joint entry, must be applied first: pendingConfIndex starts at lastIndex).
   */
  maybeAutoLeave(): void {
    if (this.role !== 'leader' || this.outgoing.size === 0 || !this.autoLeave) return;
    if (this.pendingConfIndex > this.log.applied || this.leadTransferee !== noLeader) return;
    const data = encode({ changes: [] } satisfies ConfChange);
    this.appendEntries([{ term: 0, index: 0, type: 'conf-change', data }]);
    this.pendingConfIndex = this.log.lastIndex();
  }

  // --- leadership transfer (thesis §3.10) ----------------------------------------------------

  transferLeader(to: NodeId): void {
    if (this.role !== 'leader')
      throw new ChorusError('not-leader', 'only the leader can transfer leadership');
    if (to === this.id || to === this.leadTransferee) return;
    if (!this.isVoter(to)) throw new ChorusError('bad-input', `${to} is not a voter`);
    const pr = this.progress.get(to)!;
    this.leadTransferee = to;
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeout-now', from: this.id, to, term: this.term });
  }

  // --- linearizable reads (thesis §6.4) ------------------------------------------------------

  /** Requests a read index for `context`; the answer arrives as a ReadState. */
  readIndex(context: string): void {
    if (this.role === 'leader') {
      this.leaderReadIndex(context, this.id);
      return;
    }
    if (this.lead === noLeader) throw new ChorusError('no-leader', 'no leader to confirm a read');
    this.send({ type: 'read-index', from: this.id, to: this.lead, term: this.term, context });
  }

  private handleReadIndexRequest(m: ReadIndexRequest): void {
    try {
      this.leaderReadIndex(m.context, m.from);
    } catch {
      this.send({
        type: 'read-index-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        context: m.context,
        index: 0,
      });
    }
  }

  private leaderReadIndex(context: string, requester: NodeId): void {
    // Thesis §6.4 step 1: the leader must have committed an entry of its term first.
    if (this.log.term(this.log.committed) !== this.term) {
      throw new ChorusError(
        'proposal-dropped',
        'leader has not committed an entry of its term yet',
      );
    }
    const index = this.log.committed;
    const single =
      this.incoming.size === 1 && this.outgoing.size === 0 && this.incoming.has(this.id);
    if (single || (this.readOnly === 'lease' && this.leaseValid())) {
      this.releaseRead({ index, requester, context, acks: new Map() });
      return;
    }
    if (this.pendingReads.length >= pendingReadsMax) {
      throw new ChorusError('proposal-dropped', `${pendingReadsMax} reads already pending`);
    }
    this.pendingReads.push({ index, requester, context, acks: new Map([[this.id, true]]) });
    this.broadcastHeartbeat(context);
  }

  private ackRead(context: string, from: NodeId): void {
    const position = this.pendingReads.findIndex((r) => r.context === context);
    if (position < 0) return;
    const read = this.pendingReads[position]!;
    read.acks.set(from, true);
    if (jointVote(this.incoming, this.outgoing, read.acks) !== 'won') return;
    // A quorum confirmed leadership after this read was requested: it and every earlier one
    // are safe to serve.
    const released = this.pendingReads.splice(0, position + 1);
    for (const r of released) this.releaseRead(r);
  }

  private releaseRead(read: PendingRead): void {
    if (read.requester === this.id)
      this.readStates.push({ index: read.index, context: read.context });
    else
      this.send({
        type: 'read-index-resp',
        from: this.id,
        to: read.requester,
        term: this.term,
        context: read.context,
        index: read.index,
      });
  }

  // --- snapshots (§7) ------------------------------------------------------------------------

  /**
   * The driver took a state machine snapshot at an applied index: compact the log up to it,
   * keeping the `catchUpEntries` before it (etcd's SnapshotCatchUpEntries). A follower that
   * installs a snapshot the leader has since replaced by a newer one — a large snapshot takes
   * longer to send than the writes between two snapshots — continues from those entries
   * instead of needing the newer snapshot, and the one after that, forever.
   */
  compact(snapshot: Snapshot, catchUpEntries = 0): void {
    assert(snapshot.metadata.index <= this.log.applied, 'snapshot beyond applied');
    if (this.snapshot !== undefined && snapshot.metadata.index <= this.snapshot.metadata.index)
      return;
    this.snapshot = snapshot;
    this.log.compact(snapshot.metadata.index - catchUpEntries);
  }

  private startSnapshot(to: NodeId, pr: Progress): boolean {
    const snapshot = this.snapshot;
    assert(
      snapshot !== undefined,
      () => `follower ${to} needs compacted entries but no snapshot exists`,
    );
    pr.becomeSnapshot(snapshot);
    this.sendSnapshotChunks(to, pr);
    return true;
  }

  /**
   * Sends chunks from `pr.snapshotSent` until the window is full or the last one is out. The
   * snapshot is the one the transfer began with, even when a newer one has replaced it here
   * since: starting over with each new snapshot, a transfer slower than the writes between
   * two snapshots never ended.
   */
  private sendSnapshotChunks(to: NodeId, pr: Progress): void {
    const snapshot = pr.snapshotBeingSent;
    if (snapshot === undefined) {
      pr.becomeProbe();
      return;
    }
    const chunkBytes = this.snapshotChunkBytes;
    const window = snapshotChunksInFlightMax * chunkBytes;
    while (!pr.snapshotSentAll && pr.snapshotSent - pr.snapshotOffset < window) {
      const offset = pr.snapshotSent;
      const data = snapshot.data.subarray(offset, offset + chunkBytes);
      const done = offset + data.length >= snapshot.data.length;
      this.send({
        type: 'snap',
        from: this.id,
        to,
        term: this.term,
        metadata: snapshot.metadata,
        offset,
        data,
        done,
      });
      pr.snapshotSent = offset + data.length;
      pr.snapshotSentAll = done;
    }
  }

  /**
   * The follower holds `m.offset` bytes: more than before opens the window; fewer (it lost
   * what it had, e.g. by a restart) sends again from there; the same is a duplicate answer,
   * left to the heartbeat rule (handleHeartbeatResponse).
   */
  private handleSnapshotResponse(m: SnapshotResponse, pr: Progress): void {
    pr.recentActive = true;
    if (pr.state !== 'snapshot' || m.index !== pr.pendingSnapshot) return;
    if (m.offset > pr.snapshotOffset) {
      pr.snapshotOffset = m.offset;
      pr.quietRounds = 0;
      if (pr.snapshotSent < m.offset) pr.rewindSnapshot(m.offset);
    } else if (m.offset < pr.snapshotOffset) {
      pr.rewindSnapshot(m.offset);
    } else {
      return;
    }
    this.sendSnapshotChunks(m.from, pr);
  }

  private handleSnapshotChunk(m: SnapshotChunk): void {
    const index = m.metadata.index;
    if (index <= this.log.committed) {
      // Already have it: say how far we are.
      this.send({
        type: 'app-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        index: this.log.committed,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      });
      return;
    }
    let incoming = this.incomingSnapshot;
    if (incoming === undefined || incoming.index !== index) {
      incoming = { index, chunks: [], received: 0 };
      this.incomingSnapshot = incoming;
    }
    const gap = this.bug === 'snapshot-chunk-gap' && m.offset > incoming.received;
    if (m.offset === incoming.received || gap) {
      incoming.chunks.push(m.data.slice());
      incoming.received += m.data.length;
      if (m.done) {
        this.installSnapshot({
          metadata: m.metadata,
          // Never joined: storage writes the pieces, the state machine reads them in place.
          data: new Pieces(incoming.chunks),
        });
        this.incomingSnapshot = undefined;
        this.send({
          type: 'app-resp',
          from: this.id,
          to: m.from,
          term: this.term,
          index,
          reject: false,
          hintIndex: 0,
          hintTerm: 0,
        });
        return;
      }
    }
    this.send({
      type: 'snap-resp',
      from: this.id,
      to: m.from,
      term: this.term,
      index,
      offset: incoming.received,
    });
  }

  private installSnapshot(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    if (this.log.matchTerm(index, term)) {
      // We hold the entry the snapshot ends at: keep the log after it, fast-forward commit.
      this.log.commitTo(index);
      return;
    }
    this.log.restore(snapshot);
    this.log.pendingSnapshot = snapshot;
    this.snapshot = snapshot;
    this.applyConfState(snapshot.metadata.confState);
  }

  // --- plumbing ------------------------------------------------------------------------------

  private send(m: Message): void {
    if (m.type === 'app' && m.entries.length > 0) this.dropSupersededCommitNotice(m);
    this.msgs.push(m);
  }

  /**
   * A commit-only append to `m.to` still waiting to go out from the same place in the log as
   * `m` says nothing `m` does not (its commit is no newer), so it is dropped: under load, a
   * commit and new proposals often land between two Readies, and each follower then got
   * both, and answered both. Dropping a message is always safe in Raft (the network may);
   * an empty append in the probe state pauses the follower, so `m` is never sent after one.
   */
  private dropSupersededCommitNotice(m: Append): void {
    for (let i = this.msgs.length - 1; i >= 0; i--) {
      const old = this.msgs[i]!;
      if (
        old.type === 'app' &&
        old.to === m.to &&
        old.entries.length === 0 &&
        old.term === m.term &&
        old.index === m.index &&
        old.commit <= m.commit
      ) {
        this.msgs.splice(i, 1);
        return;
      }
    }
  }

  checkInvariants(): void {
    this.log.checkInvariants();
    for (const pr of this.progress.values()) pr.checkInvariants();
    assert(this.role !== 'leader' || this.lead === this.id, 'leader must lead itself');
    assert(
      this.vote === noLeader || this.role !== 'candidate' || this.vote === this.id,
      'candidate votes for itself',
    );
  }
}

/** Decodes a conf-change entry's data (trusted: it was validated when proposed). */
export function decodeConfChange(data: Uint8Array): ConfChange {
  return decode(data) as ConfChange;
}
