// Goal: drive N RawNodes of the pure Raft core by hand, one command at a time, and print every
// Ready, message and state change in a compact, stable text form, so that transcript files
// (testdata/raft/*.txt) read like a story of the protocol and fail on any change of behaviour.
// In the manner of etcd-raft's rafttest interaction tests; written from scratch for Chorus.
import { joinedBytes } from '../src/core/bytes.js';
import { AssertionError } from '../src/core/assert.js';
import { ChorusError } from '../src/core/errors.js';
import { nodeId, type NodeId } from '../src/core/ids.js';
import { seededRandom } from '../src/core/prng.js';
import type { Message } from '../src/raft/messages.js';
import {
  decodeConfChange,
  type ConfChange,
  type ConfChangeType,
  type RaftConfig,
} from '../src/raft/raft.js';
import { RawNode, type Ready, type SoftState } from '../src/raft/rawnode.js';
import type { ConfState, Entry, HardState, Snapshot } from '../src/raft/types.js';

/** Commands that loop (stabilize, tick-election) stop after this many rounds: a livelock is a failure. */
const stabilizeRoundsMax = 200;
/** Data longer than this prints abbreviated, so a 300 KB entry stays one short line. */
const dataPrintCharsMax = 16;

// --- the transcript file format ------------------------------------------------------------

/** One command of a transcript: the line, its parsed parts, and the expected printout. */
export interface Directive {
  /** Comment lines (with their '#') and blank lines that precede the command. */
  preamble: string[];
  line: string;
  lineNumber: number;
  expected: string;
}

/**
 * Parses a transcript: `# comments`, then blocks of `command args` / `----` / output lines,
 * ended by a blank line or the end of the file. Output never contains a blank line.
 */
export function parseTranscript(text: string): { directives: Directive[]; trailer: string[] } {
  const lines = text.split('\n');
  const directives: Directive[] = [];
  let preamble: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.startsWith('#')) {
      preamble.push(line);
      continue;
    }
    if (lines[i + 1] !== '----') throw new Error(`line ${i + 1}: expected ---- after "${line}"`);
    const output: string[] = [];
    let j = i + 2;
    while (j < lines.length && lines[j]!.trim() !== '') output.push(lines[j++]!);
    directives.push({ preamble, line, lineNumber: i + 1, expected: output.join('\n') });
    preamble = [];
    i = j - 1;
  }
  while (preamble.length > 0 && preamble[preamble.length - 1] === '') preamble.pop();
  return { directives, trailer: preamble };
}

/** Writes a transcript back with fresh outputs (the rewrite mode). */
export function formatTranscript(
  directives: readonly Directive[],
  outputs: readonly string[],
  trailer: readonly string[],
): string {
  const parts: string[] = [];
  directives.forEach((d, i) => {
    parts.push(...d.preamble, d.line, '----', outputs[i]!, '');
  });
  // The blank line after each block is part of the block; drop one before a preamble blank.
  let text = parts.join('\n');
  text = text.replace(/\n\n\n+/g, '\n\n');
  if (trailer.length > 0) text += trailer.join('\n') + '\n';
  return text;
}

// --- command arguments ---------------------------------------------------------------------

interface Args {
  positional: string[];
  named: Map<string, string>;
}

function parseArgs(words: readonly string[]): Args {
  const positional: string[] = [];
  const named = new Map<string, string>();
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq > 0 && !w.startsWith('(')) named.set(w.slice(0, eq), w.slice(eq + 1));
    else positional.push(w);
  }
  return { positional, named };
}

/** "(1,2,3)" or "1" → ids; "()" → none. */
function parseIdList(text: string): NodeId[] {
  const inner = text.replace(/^\(/, '').replace(/\)$/, '').trim();
  if (inner === '') return [];
  return inner.split(',').map((s) => nodeId(s.trim()));
}

function parseBool(text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new Error(`expected true or false, got ${text}`);
}

function parseInt10(text: string | undefined, what: string): number {
  const n = Number(text);
  if (text === undefined || !Number.isSafeInteger(n)) throw new Error(`bad ${what}: ${text}`);
  return n;
}

/** "x*300000" is 300000 x's; anything else is itself. */
function parseData(text: string): string {
  const m = /^(.)\*(\d+)$/.exec(text);
  return m === null ? text : m[1]!.repeat(Number(m[2]));
}

// --- printing --------------------------------------------------------------------------------

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

function showData(data: Uint8Array): string {
  const text = textDecoder.decode(data);
  if (text.length <= dataPrintCharsMax) return JSON.stringify(text);
  return `${JSON.stringify(text.slice(0, 4) + '…')}(${data.length}B)`;
}

const changeLetter: Record<ConfChangeType, string> = {
  'add-voter': 'v',
  'add-learner': 'l',
  'remove-node': 'r',
};

function showConfChange(cc: ConfChange): string {
  if (cc.changes.length === 0) return 'conf(leave)';
  const parts = cc.changes.map((c) => changeLetter[c.type] + c.node);
  if (cc.transition === 'joint-explicit') parts.push('joint');
  return `conf(${parts.join(' ')})`;
}

export function showEntry(e: Entry): string {
  if (e.type === 'conf-change')
    return `${e.term}/${e.index} ${showConfChange(decodeConfChange(e.data))}`;
  if (e.data.length === 0) return `${e.term}/${e.index} noop`;
  return `${e.term}/${e.index} ${showData(e.data)}`;
}

function showEntries(entries: readonly Entry[]): string {
  return `[${entries.map(showEntry).join(', ')}]`;
}

function showIds(ids: readonly NodeId[]): string {
  return `(${[...ids].sort().join(',')})`;
}

export function showConfState(cs: ConfState): string {
  let s = `voters=${showIds(cs.voters)}`;
  if (cs.votersOutgoing.length > 0) s += `&&${showIds(cs.votersOutgoing)}`;
  if (cs.learners.length > 0) s += ` learners=${showIds(cs.learners)}`;
  if (cs.learnersNext.length > 0) s += ` learners_next=${showIds(cs.learnersNext)}`;
  if (cs.autoLeave) s += ' autoleave';
  return s;
}

function showHardState(hs: HardState): string {
  return `term=${hs.term} vote=${hs.vote === '' ? '-' : hs.vote} commit=${hs.commit}`;
}

function showSoftState(ss: SoftState): string {
  return `${ss.role} term=${ss.term} lead=${ss.lead === '' ? '-' : ss.lead}`;
}

export function showMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'vote':
      return `${head}${m.pre ? ' pre' : ''}${m.transfer ? ' transfer' : ''} last=${m.lastTerm}/${m.lastIndex}`;
    case 'vote-resp':
      return `${head}${m.pre ? ' pre' : ''} ${m.granted ? 'granted' : 'rejected'}`;
    case 'app':
      return `${head} prev=${m.logTerm}/${m.index} commit=${m.commit} ${showEntries(m.entries)}`;
    case 'app-resp':
      return m.reject
        ? `${head} reject index=${m.index} hint=${m.hintTerm}/${m.hintIndex}`
        : `${head} index=${m.index}`;
    case 'heartbeat':
      return `${head} commit=${m.commit}${m.context === '' ? '' : ` ctx=${m.context}`}`;
    case 'heartbeat-resp':
      return `${head}${m.context === '' ? '' : ` ctx=${m.context}`}`;
    case 'snap': {
      const meta = m.metadata;
      return `${head} snap=${meta.term}/${meta.index} ${showConfState(meta.confState)} offset=${m.offset} len=${m.data.length}${m.done ? ' done' : ''}`;
    }
    case 'snap-resp':
      return `${head} index=${m.index} offset=${m.offset}`;
    case 'timeout-now':
      return head;
    case 'read-index':
      return `${head} ctx=${m.context}`;
    case 'read-index-resp':
      return `${head} ctx=${m.context} index=${m.index}`;
  }
}

function showError(error: unknown): string {
  if (error instanceof ChorusError) return `error: ${error.code}: ${error.message}`;
  if (error instanceof AssertionError) return `PANIC: ${error.message}`;
  if (error instanceof Error) return `error: ${error.name}: ${error.message}`;
  return `error: ${String(error)}`;
}

// --- the cluster -------------------------------------------------------------------------------

/** What a node has made durable: the only thing that survives `restart`. */
interface Storage {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  entries: Entry[];
}

/** The replicated state machine: the data of every applied normal entry, by index. */
interface Applied {
  index: number;
  data: string;
}

interface Node {
  id: NodeId;
  config: RaftConfig;
  rawNode: RawNode;
  storage: Storage;
  applied: Applied[];
  /** The last soft state printed, so a Ready prints it only when it changed. */
  lastSoftState: string;
}

function encodeStateMachine(applied: readonly Applied[]): Uint8Array {
  return textEncoder.encode(JSON.stringify(applied));
}

function decodeStateMachine(data: Uint8Array): Applied[] {
  if (data.length === 0) return [];
  return JSON.parse(textDecoder.decode(data)) as Applied[];
}

export class Cluster {
  private readonly nodes = new Map<NodeId, Node>();
  /** Messages in flight, by recipient, in send order. */
  private readonly queues = new Map<NodeId, Message[]>();
  /** Node → partition group; nodes in different groups cannot exchange messages. */
  private groups = new Map<NodeId, number>();
  private initialVoters: NodeId[] = [];
  private seed = 1;

  /** Runs one command line and returns its printout (never empty: "ok" at least). */
  run(line: string): string {
    const out: string[] = [];
    const [command, ...words] = line.trim().split(/\s+/);
    const args = parseArgs(words);
    try {
      this.dispatch(command!, args, out);
    } catch (error) {
      out.push(showError(error));
    }
    return out.length === 0 ? 'ok' : out.join('\n');
  }

  private dispatch(command: string, args: Args, out: string[]): void {
    const id = (): NodeId => nodeId(args.positional[0] ?? '');
    switch (command) {
      case 'add-nodes':
        return this.addNodes(args, out);
      case 'campaign':
        return this.node(id()).rawNode.campaign();
      case 'tick':
        return this.tick(
          id(),
          args.positional[1] === undefined ? 1 : parseInt10(args.positional[1], 'ticks'),
        );
      case 'tick-heartbeat':
        return this.tick(id(), this.node(id()).config.heartbeatTicks ?? 1);
      case 'tick-election':
        return this.tickElection(id(), out);
      case 'propose':
        return this.propose(id(), args, out);
      case 'propose-conf-change':
        return this.proposeConfChange(id(), args, out);
      case 'process-ready':
        return this.forEachId(args, (n) => this.processReady(n, out, false));
      case 'crash-ready':
        return this.crashReady(this.node(id()), out);
      case 'deliver-msgs':
        return this.deliverCommand(args, out);
      case 'stabilize':
        return this.stabilize(args, out);
      case 'status':
        return this.forEachId(args, (n) => this.status(n, out));
      case 'raft-log':
        return this.forEachId(args, (n) => this.raftLog(n, out));
      case 'read-index':
        return this.node(id()).rawNode.readIndex(args.positional[1] ?? '');
      case 'transfer-leadership':
        return this.node(nodeId(args.named.get('from') ?? '')).rawNode.transferLeader(
          nodeId(args.named.get('to') ?? ''),
        );
      case 'compact':
        return this.compact(id(), args, out);
      case 'restart':
        return this.restart(this.node(id()), out);
      case 'partition':
        return this.partition(args, out);
      case 'heal':
        this.groups = new Map();
        return;
      default:
        throw new Error(`unknown command ${command}`);
    }
  }

  private node(id: NodeId): Node {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  private sortedIds(): NodeId[] {
    return [...this.nodes.keys()].sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
  }

  /** The ids named in the arguments, or every node. */
  private selectIds(args: Args): NodeId[] {
    return args.positional.length === 0 ? this.sortedIds() : args.positional.map(nodeId);
  }

  private forEachId(args: Args, f: (n: Node) => void): void {
    for (const id of this.selectIds(args)) f(this.node(id));
  }

  // --- add-nodes, restart ------------------------------------------------------------------

  private addNodes(args: Args, out: string[]): void {
    const count = parseInt10(args.positional[0], 'node count');
    if (args.named.has('seed')) this.seed = parseInt10(args.named.get('seed'), 'seed');
    const first = this.nodes.size + 1;
    const ids = Array.from({ length: count }, (_, i) => nodeId(String(first + i)));
    const votersText = args.named.get('voters');
    const voters =
      votersText !== undefined
        ? parseIdList(votersText)
        : this.initialVoters.length > 0
          ? this.initialVoters
          : ids;
    if (this.initialVoters.length === 0) this.initialVoters = voters;
    const learners = parseIdList(args.named.get('learners') ?? '()');
    const electionTicks = args.named.has('election')
      ? parseInt10(args.named.get('election'), 'election')
      : undefined;
    const heartbeatTicks = args.named.has('heartbeat')
      ? parseInt10(args.named.get('heartbeat'), 'heartbeat')
      : undefined;
    const readOnly = args.named.get('readonly');
    if (readOnly !== undefined && readOnly !== 'safe' && readOnly !== 'lease')
      throw new Error(`readonly=${readOnly}`);
    // bootstrap=true: the voters go into the log as conf-change entries (RaftConfig.bootstrap);
    // join=true: a member added later, starting with no configuration and an empty log.
    const bootstrap = parseBool(args.named.get('bootstrap')) === true;
    const join = parseBool(args.named.get('join')) === true;
    for (const id of ids) {
      const config: RaftConfig = {
        id,
        peers: bootstrap || join ? [] : voters,
        random: seededRandom(this.seed).fork(id),
      };
      if (bootstrap) config.bootstrap = voters.map((node) => ({ node }));
      if (electionTicks !== undefined) config.electionTicks = electionTicks;
      if (heartbeatTicks !== undefined) config.heartbeatTicks = heartbeatTicks;
      const preVote = parseBool(args.named.get('prevote'));
      if (preVote !== undefined) config.preVote = preVote;
      const checkQuorum = parseBool(args.named.get('checkquorum'));
      if (checkQuorum !== undefined) config.checkQuorum = checkQuorum;
      if (readOnly !== undefined) config.readOnly = readOnly;
      const bug = args.named.get('bug');
      if (bug === 'commit-old-term') config.bug = bug;
      else if (bug !== undefined) throw new Error(`bug=${bug}`);
      const storage = this.bootstrapStorage(voters, learners);
      const node: Node = {
        id,
        config,
        storage,
        rawNode: new RawNode(config, {
          hardState: storage.hardState,
          snapshot: storage.snapshot,
          entries: storage.entries,
        }),
        applied: [],
        lastSoftState: '',
      };
      node.lastSoftState = showSoftState(node.rawNode.softState());
      this.nodes.set(id, node);
      this.queues.set(id, []);
      out.push(`${id}: ${node.lastSoftState} ${showConfState(node.rawNode.raft.confState())}`);
    }
  }

  /**
   * A new cluster with learners starts from a snapshot at index 1 that holds the whole
   * configuration (RaftConfig.peers names voters only); without learners, from `peers`.
   */
  private bootstrapStorage(voters: readonly NodeId[], learners: readonly NodeId[]): Storage {
    if (learners.length === 0)
      return { hardState: { term: 0, vote: '', commit: 0 }, snapshot: undefined, entries: [] };
    const confState: ConfState = {
      voters: [...voters],
      learners: [...learners],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
    return {
      hardState: { term: 1, vote: '', commit: 1 },
      snapshot: { metadata: { index: 1, term: 1, confState }, data: encodeStateMachine([]) },
      entries: [],
    };
  }

  /** Rebuilds a node from its storage alone: whatever was not persisted is gone. */
  private restart(node: Node, out: string[]): void {
    const s = node.storage;
    node.rawNode = new RawNode(node.config, {
      hardState: { ...s.hardState },
      snapshot: s.snapshot,
      entries: [...s.entries],
    });
    node.applied = s.snapshot === undefined ? [] : decodeStateMachine(joinedBytes(s.snapshot.data));
    node.lastSoftState = showSoftState(node.rawNode.softState());
    const last = s.entries[s.entries.length - 1]?.index ?? s.snapshot?.metadata.index ?? 0;
    out.push(
      `${node.id} restarted: ${showHardState(s.hardState)} snapshot=${s.snapshot?.metadata.index ?? 0} last=${last}`,
    );
  }

  // --- proposals, ticks --------------------------------------------------------------------

  /**
   * `propose ID DATA [count=N] [batch=true]`: N proposals of DATA; stops at the first refusal.
   * With batch=true they go in one proposeBatch (as the driver gathers one turn's proposals),
   * and each result prints: its index or its refusal.
   */
  private propose(id: NodeId, args: Args, out: string[]): void {
    const data = parseData(args.positional[1] ?? '');
    const count = args.named.has('count') ? parseInt10(args.named.get('count'), 'count') : 1;
    if (parseBool(args.named.get('batch')) === true) {
      const datas = Array.from({ length: count }, () => textEncoder.encode(data));
      const results = this.node(id).rawNode.proposeBatch(datas);
      out.push(results.map((r) => (typeof r === 'number' ? `${r}` : r.message)).join(', '));
      return;
    }
    const indexes: number[] = [];
    try {
      for (let i = 0; i < count; i++)
        indexes.push(this.node(id).rawNode.propose(textEncoder.encode(data)));
    } finally {
      if (indexes.length === 1) out.push(`proposed at index ${indexes[0]}`);
      else if (indexes.length > 1)
        out.push(
          `proposed ${indexes.length} at indexes ${indexes[0]}..${indexes[indexes.length - 1]}`,
        );
    }
  }

  private proposeConfChange(id: NodeId, args: Args, out: string[]): void {
    const letters: Record<string, ConfChangeType> = {
      v: 'add-voter',
      l: 'add-learner',
      r: 'remove-node',
    };
    const changes = args.positional.slice(1).map((word) => {
      const type = letters[word[0] ?? ''];
      if (type === undefined) throw new Error(`bad change ${word}: use v4, l4 or r4`);
      return { type, node: nodeId(word.slice(1)) };
    });
    const change: ConfChange = { changes };
    const transition = args.named.get('transition');
    if (transition === 'joint') change.transition = 'joint-explicit';
    else if (transition !== undefined && transition !== 'auto')
      throw new Error(`transition=${transition}`);
    const index = this.node(id).rawNode.proposeConfChange(change);
    out.push(`proposed at index ${index}`);
  }

  private tick(id: NodeId, count: number): void {
    const n = this.node(id);
    for (let i = 0; i < count; i++) n.rawNode.tick();
  }

  /**
   * A leader ticks one election timeout (one check-quorum round). Any other node ticks until
   * its randomized election timeout fires (it campaigns), or two timeouts pass (a learner).
   */
  private tickElection(id: NodeId, out: string[]): void {
    const n = this.node(id);
    const raft = n.rawNode.raft;
    const electionTicks = n.config.electionTicks ?? 10;
    if (raft.role === 'leader') return this.tick(id, electionTicks);
    const before = `${raft.role}/${raft.term}`;
    const queued = raft.msgs.length;
    for (let i = 0; i < 2 * electionTicks; i++) {
      n.rawNode.tick();
      if (`${raft.role}/${raft.term}` !== before || raft.msgs.length > queued) return;
    }
    out.push(`${id} did not campaign`);
  }

  // --- Ready handling ------------------------------------------------------------------------

  /**
   * Handles one Ready as a careful driver would: send `messages`, persist snapshot, hard
   * state and entries, send `messagesAfterPersist`, restore and apply, serve reads, advance.
   */
  private processReady(node: Node, out: string[], quietWhenIdle: boolean): void {
    const rn = node.rawNode;
    if (!rn.hasReady()) {
      if (!quietWhenIdle) out.push(`> ${node.id}: no Ready`);
      return;
    }
    const rd = rn.ready();
    out.push(`> ${node.id} handling Ready`);
    this.printReady(node, rd, out);
    this.persist(node.storage, rd);
    this.send([...rd.messages, ...rd.messagesAfterPersist]);
    if (rd.snapshot !== undefined) node.applied = decodeStateMachine(joinedBytes(rd.snapshot.data));
    for (const e of rd.committedEntries) {
      if (e.type === 'normal' && e.data.length > 0)
        node.applied.push({ index: e.index, data: textDecoder.decode(e.data) });
    }
    rn.advance(rd);
    rn.raft.checkInvariants();
  }

  private printReady(node: Node, rd: Ready, out: string[]): void {
    const soft = showSoftState(rd.softState);
    if (soft !== node.lastSoftState) out.push(`  State: ${soft}`);
    node.lastSoftState = soft;
    if (rd.hardState !== undefined) out.push(`  HardState ${showHardState(rd.hardState)}`);
    if (rd.snapshot !== undefined) {
      const meta = rd.snapshot.metadata;
      out.push(
        `  Snapshot ${meta.term}/${meta.index} ${showConfState(meta.confState)} ${rd.snapshot.data.length}B`,
      );
    }
    if (rd.entries.length > 0) out.push(`  Entries: ${showEntries(rd.entries)}`);
    if (rd.committedEntries.length > 0) {
      out.push(`  Committed: ${showEntries(rd.committedEntries)}`);
      if (rd.committedEntries.some((e) => e.type === 'conf-change'))
        out.push(`  Config: ${showConfState(node.rawNode.raft.confState())}`);
    }
    const cut = (m: Message): string => (this.connected(m.from, m.to) ? '' : ' (lost: partition)');
    for (const m of rd.messages) out.push(`  send ${showMessage(m)}${cut(m)}`);
    for (const m of rd.messagesAfterPersist)
      out.push(`  send after persist ${showMessage(m)}${cut(m)}`);
    for (const r of rd.readStates) out.push(`  ReadState ctx=${r.context} index=${r.index}`);
  }

  private persist(storage: Storage, rd: Ready): void {
    if (rd.snapshot !== undefined) {
      // The core replaced its whole log with the snapshot (RaftLog.restore).
      storage.snapshot = rd.snapshot;
      storage.entries = [];
    }
    if (rd.hardState !== undefined) storage.hardState = { ...rd.hardState };
    const first = rd.entries[0];
    if (first !== undefined) {
      storage.entries = storage.entries.filter((e) => e.index < first.index);
      storage.entries.push(...rd.entries);
    }
  }

  /** The node crashes in the middle of a Ready: `messages` went out, nothing was persisted. */
  private crashReady(node: Node, out: string[]): void {
    const rd = node.rawNode.ready();
    out.push(`> ${node.id} crashing in the middle of a Ready`);
    this.printReady(node, rd, out);
    this.send(rd.messages);
    out.push(`  sent ${rd.messages.length} message(s); persisted nothing`);
    this.restart(node, out);
  }

  /** Queues messages for their recipients; a message across a partition is lost at once. */
  private send(messages: readonly Message[]): void {
    for (const m of messages) if (this.connected(m.from, m.to)) this.queues.get(m.to)?.push(m);
  }

  // --- delivery ------------------------------------------------------------------------------

  private deliverCommand(args: Args, out: string[]): void {
    const dropText = args.named.get('drop');
    if (dropText !== undefined) {
      for (const id of parseIdList(dropText)) {
        for (const m of this.queues.get(id) ?? []) out.push(`dropped: ${showMessage(m)}`);
        this.queues.set(id, []);
      }
      if (args.positional.length === 0) return;
    }
    for (const id of this.selectIds(args)) this.deliver(this.node(id), out);
  }

  /** Steps every queued message into `node`; those across a partition are dropped. */
  private deliver(node: Node, out: string[]): void {
    const queue = this.queues.get(node.id) ?? [];
    if (queue.length === 0) return;
    this.queues.set(node.id, []);
    out.push(`> ${node.id} receiving messages`);
    for (const m of queue) {
      if (!this.connected(m.from, m.to)) {
        out.push(`  dropped (partition): ${showMessage(m)}`);
        continue;
      }
      out.push(`  ${showMessage(m)}`);
      try {
        node.rawNode.step(m);
      } catch (error) {
        out.push(`  ${showError(error)}`);
      }
    }
  }

  private connected(a: NodeId, b: NodeId): boolean {
    const ga = this.groups.get(a);
    const gb = this.groups.get(b);
    return ga === undefined || gb === undefined || ga === gb;
  }

  private partition(args: Args, out: string[]): void {
    this.groups = new Map();
    args.positional.forEach((group, i) => {
      for (const id of parseIdList(group)) this.groups.set(id, i);
    });
    out.push(`partitioned: ${args.positional.join(' ')}`);
  }

  /** Alternates Ready handling and delivery among the chosen nodes until nothing moves. */
  private stabilize(args: Args, out: string[]): void {
    // `stabilize quiet [ID...]` runs the same loop but prints nothing: for a story that only
    // cares about the end state (then read with `status`).
    const quiet = args.positional[0] === 'quiet';
    if (quiet) {
      this.stabilize({ positional: args.positional.slice(1), named: args.named }, []);
      return;
    }
    const ids = this.selectIds(args);
    for (let round = 0; round < stabilizeRoundsMax; round++) {
      let moved = false;
      for (const id of ids) {
        const n = this.node(id);
        if (n.rawNode.hasReady()) {
          this.processReady(n, out, true);
          moved = true;
        }
      }
      for (const id of ids) {
        if ((this.queues.get(id) ?? []).length > 0) {
          this.deliver(this.node(id), out);
          moved = true;
        }
      }
      if (!moved) return;
    }
    out.push(`did not stabilize within ${stabilizeRoundsMax} rounds`);
  }

  // --- inspection, compaction ----------------------------------------------------------------

  private status(node: Node, out: string[]): void {
    const raft = node.rawNode.raft;
    const log = raft.log;
    out.push(
      `${node.id}: ${showSoftState(node.rawNode.softState())} vote=${raft.vote === '' ? '-' : raft.vote} commit=${log.committed} applied=${log.applied} last=${log.lastIndex()}`,
    );
    out.push(`  config: ${showConfState(raft.confState())}`);
    const data = node.applied.map((a) => showData(textEncoder.encode(a.data)));
    out.push(`  state machine: [${data.join(' ')}]`);
    if (raft.role !== 'leader') return;
    for (const [id, pr] of [...raft.progress].sort(([a], [b]) => a.localeCompare(b))) {
      let line = `  ${id}: ${pr.state} match=${pr.match} next=${pr.next}`;
      if (pr.paused()) line += ' paused';
      if (pr.inflights.count > 0) line += ` inflight=${pr.inflights.count}`;
      if (pr.state === 'snapshot')
        line += ` snapshot=${pr.pendingSnapshot} offset=${pr.snapshotOffset}`;
      out.push(line);
    }
  }

  private raftLog(node: Node, out: string[]): void {
    const log = node.rawNode.raft.log;
    if (log.snapshotIndex > 0) out.push(`snapshot ${log.snapshotTerm}/${log.snapshotIndex}`);
    for (const e of log.entries) out.push(showEntry(e));
    if (out.length === 0 || (log.entries.length === 0 && log.snapshotIndex === 0))
      out.push('log is empty');
  }

  /** Takes a snapshot of the applied state machine at INDEX (default: applied) and compacts. */
  private compact(id: NodeId, args: Args, out: string[]): void {
    const node = this.node(id);
    const raft = node.rawNode.raft;
    const index =
      args.positional[1] === undefined ? raft.log.applied : parseInt10(args.positional[1], 'index');
    const term = raft.log.term(index);
    if (term === undefined) throw new Error(`no term for index ${index}`);
    for (let i = index + 1; i <= raft.log.applied; i++) {
      if (raft.log.entry(i)?.type === 'conf-change')
        throw new Error(
          `a conf change at ${i} is applied after ${index}: compact at ${raft.log.applied}`,
        );
    }
    const snapshot: Snapshot = {
      metadata: { index, term, confState: raft.confState() },
      data: encodeStateMachine(node.applied.filter((a) => a.index <= index)),
    };
    // keep=N: entries kept before the snapshot's index (the driver's catch-up entries).
    const keep = args.named.has('keep') ? parseInt10(args.named.get('keep'), 'keep') : 0;
    node.rawNode.compact(snapshot, keep);
    if ((node.storage.snapshot?.metadata.index ?? 0) < index) node.storage.snapshot = snapshot;
    node.storage.entries = node.storage.entries.filter((e) => e.index > index - keep);
    out.push(
      `${id}: snapshot ${term}/${index} ${snapshot.data.length}B; log starts at ${raft.log.firstIndex()}`,
    );
  }
}
