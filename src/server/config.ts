/**
 * The node's configuration, in etcd's vocabulary: the same flag names, the same meaning,
 * the same defaults where they make sense. Each setting can come from a command-line flag,
 * a `CHORUS_*` environment variable or a YAML/JSON config file (keys are the flag names), in
 * that order of precedence, then the default. One table below defines every setting once,
 * for the parser, for `--help` and for docs/server.md.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { isNodeId } from '../core/ids.js';
import {
  electionTimeoutMsDefault,
  heartbeatIntervalMsDefault,
  joinTimeoutMsDefault,
  maxRequestBytesDefault,
  snapshotCountDefault,
} from './constants.js';
import { snapshotCatchUpEntriesDefault } from '../raft/constants.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * One name=url entry of --initial-cluster. A member with several peer URLs has one entry per
 * URL, as etcd writes it; an unstarted member has an empty name (etcdctl member add lists
 * it so), which only a joining member accepts.
 */
export interface ClusterMember {
  name: string;
  peerUrl: string;
  host: string;
  port: number;
  /** An https:// URL: dialled over TLS. */
  tls: boolean;
}

/**
 * etcd's TLS settings of one side (clients: --cert-file …; peers: --peer-cert-file …), as
 * files; tls.ts reads them when the member starts.
 */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Given, every client (or peer) must present a certificate these CAs sign, as in etcd. */
  trustedCaFile?: string;
  clientCertAuth: boolean;
}

export interface ServerConfig {
  name: string;
  dataDir: string;
  /** `tls`: an https:// URL, served with `peerTls`. */
  listenPeer: { host: string; port: number; tls: boolean };
  /** `tls`: an https:// URL, served with `clientTls`. */
  listenClient: { host: string; port: number; tls: boolean }[];
  /** Given when --cert-file and --key-file are; every https:// client URL needs them. */
  clientTls?: TlsFiles;
  /**
   * --listen-metrics-urls: ports serving /metrics, /health and /version alone (an https://
   * one with the client TLS files), e.g. for a Prometheus without a client certificate.
   */
  listenMetrics: { host: string; port: number; tls: boolean }[];
  /**
   * Given when --peer-cert-file and --peer-key-file are: an https:// peer URL needs them, and
   * they are this member's client certificate when it dials a peer's https:// URL.
   */
  peerTls?: TlsFiles;
  advertiseClientUrls: string[];
  /**
   * --initial-advertise-peer-urls: this member's peer URLs as the rest of the cluster knows
   * them. A founder's must be exactly what --initial-cluster gives its name (checked when it
   * bootstraps, `checkAdvertisedPeerUrls`); a joiner finds its entry in the member list by
   * them. Given or not, never empty: the default is what --initial-cluster gives this name.
   */
  advertisePeerUrls: string[];
  initialCluster: ClusterMember[];
  initialClusterState: 'new' | 'existing';
  initialClusterToken: string;
  /** How long a joining member keeps asking for its id before it gives up (join.ts). */
  joinTimeoutMs: number;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  snapshotCount: number;
  snapshotCatchUpEntries: number;
  maxRequestBytes: number;
  /**
   * --quota-backend-bytes as given: negative disables the quota, 0 asks for the default
   * (quotaBytesOf decides it), positive is the quota.
   */
  quotaBackendBytes: number;
  /** Rewrite a URL `:authority` on gRPC connections (src/server/authority.ts). */
  acceptUrlAuthority: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** One setting: its flag, what it means, and its default (which may depend on the name). */
export interface Setting {
  flag: string;
  value: string;
  description: string;
  /** The default as `--help` and docs/server.md state it. */
  default: (name: string) => string;
}

export const settings: readonly Setting[] = [
  {
    flag: 'name',
    value: 'name',
    description:
      "this member's name, unique in the cluster (a founding member's Raft node id; a member added later learns its id from the cluster)",
    default: () => 'default',
  },
  {
    flag: 'data-dir',
    value: 'dir',
    description: 'where the WAL, snapshots, the format version and the lock live',
    default: (name) => `${name}.chorus`,
  },
  {
    flag: 'listen-peer-urls',
    value: 'url',
    description:
      'the one URL to listen on for other members (http://host:port, or https:// with --peer-cert-file and --peer-key-file)',
    default: () => 'http://localhost:2380',
  },
  {
    flag: 'listen-client-urls',
    value: 'urls',
    description:
      'comma-separated URLs to listen on for clients: gRPC and the JSON gateway share each port',
    default: () => 'http://localhost:2379',
  },
  {
    flag: 'listen-metrics-urls',
    value: 'urls',
    description:
      'comma-separated URLs serving only /metrics, /health and /version (https:// ones with --cert-file and --key-file, and --trusted-ca-file if given)',
    default: () => 'none',
  },
  {
    flag: 'advertise-client-urls',
    value: 'urls',
    description: "comma-separated client URLs this member tells others (MemberList's clientURLs)",
    default: () => 'http://localhost:2379',
  },
  {
    flag: 'cert-file',
    value: 'path',
    description:
      'PEM certificate (chain) the client port presents on https:// --listen-client-urls',
    default: () => 'none',
  },
  {
    flag: 'key-file',
    value: 'path',
    description: "PEM private key of --cert-file's certificate",
    default: () => 'none',
  },
  {
    flag: 'trusted-ca-file',
    value: 'path',
    description:
      'PEM CA certificates: on https:// client URLs, every client must present a certificate one of them signs (as in etcd, with or without --client-cert-auth)',
    default: () => 'none',
  },
  {
    flag: 'client-cert-auth',
    value: 'bool',
    description:
      'on https:// client URLs, refuse every client without a certificate signed by --trusted-ca-file (which it needs)',
    default: () => 'false',
  },
  {
    flag: 'peer-cert-file',
    value: 'path',
    description:
      "PEM certificate (chain) for the members' connections: the server's on an https:// --listen-peer-urls, the client's when dialling a peer's https:// URL",
    default: () => 'none',
  },
  {
    flag: 'peer-key-file',
    value: 'path',
    description: "PEM private key of --peer-cert-file's certificate",
    default: () => 'none',
  },
  {
    flag: 'peer-trusted-ca-file',
    value: 'path',
    description:
      "PEM CA certificates that sign the other members' certificates: a member dialling an https:// --listen-peer-urls must present one, and the peers dialled must too",
    default: () => 'none',
  },
  {
    flag: 'peer-client-cert-auth',
    value: 'bool',
    description:
      'on an https:// peer URL, refuse every member without a certificate signed by --peer-trusted-ca-file (which it needs)',
    default: () => 'false',
  },
  {
    flag: 'initial-advertise-peer-urls',
    value: 'urls',
    description:
      "comma-separated peer URLs this member advertises to the rest of the cluster: a founding member's must be exactly what --initial-cluster gives its name; a joining member finds itself in the cluster's member list by them",
    default: (name) => `the URLs --initial-cluster gives ${name}`,
  },
  {
    flag: 'initial-cluster',
    value: 'name=url,…',
    description:
      "every member of the cluster and its peer URL, this one's included (a member with several peer URLs is named once per URL)",
    default: (name) =>
      `${name}=<each --initial-advertise-peer-urls URL>, or ${name}=http://localhost:2380`,
  },
  {
    flag: 'initial-cluster-state',
    value: 'new|existing',
    description:
      "'new' for a founding member of a cluster being created; 'existing' for a member joining a running cluster after `member add` of its peer URL (a restart, or a first start on a directory made by `snapshot restore`, ignores both)",
    default: () => 'new',
  },
  {
    flag: 'initial-cluster-token',
    value: 'token',
    description:
      'distinguishes clusters with the same member names; member and cluster ids derive from it',
    default: () => 'etcd-cluster',
  },
  {
    flag: 'join-timeout',
    value: 'ms',
    description:
      'milliseconds a member joining with --initial-cluster-state existing keeps asking the other --initial-cluster members for its id, in rounds with backoff, while none can answer; a member list that does not name it ends the start at once (0: one round)',
    default: () => String(joinTimeoutMsDefault),
  },
  {
    flag: 'heartbeat-interval',
    value: 'ms',
    description: 'milliseconds between leader heartbeats (one Raft tick)',
    default: () => String(heartbeatIntervalMsDefault),
  },
  {
    flag: 'election-timeout',
    value: 'ms',
    description:
      'milliseconds without a leader before a follower campaigns (a multiple of the heartbeat)',
    default: () => String(electionTimeoutMsDefault),
  },
  {
    flag: 'snapshot-count',
    value: 'n',
    description: 'applied entries between snapshots (after which the log is compacted)',
    default: () => String(snapshotCountDefault),
  },
  {
    flag: 'snapshot-catchup-entries',
    value: 'n',
    description:
      "entries a compaction keeps before the snapshot's index, so that a follower that installs an older snapshot than the newest continues with them (etcd 3.5: --experimental-snapshot-catchup-entries)",
    default: () => String(snapshotCatchUpEntriesDefault),
  },
  {
    flag: 'max-request-bytes',
    value: 'bytes',
    description: 'largest client request; larger ones are refused (etcd: request is too large)',
    default: () => String(maxRequestBytesDefault),
  },
  {
    flag: 'quota-backend-bytes',
    value: 'bytes',
    description:
      "the store's space quota (its keys, values and history, counted as docs/kv.md says): a write that would pass it raises the NOSPACE alarm, and writes that take space are refused until the alarm is disarmed; 0 is the default (2 GiB, or 40 % of the process's heap limit if less), a negative number disables it",
    default: () => '0',
  },
  {
    flag: 'accept-url-authority',
    value: 'bool',
    description:
      'accept a gRPC :authority written as a URL (etcdctl 3.4 sends one to http:// endpoints for endpoint status/hashkv and --cluster) by reading a connection whose first request has one through a rewriter; false hands every connection to HTTP/2 directly',
    default: () => 'true',
  },
  {
    flag: 'log-level',
    value: 'level',
    description: 'debug, info, warn or error (JSON lines on stderr)',
    default: () => process.env['CHORUS_LOG'] ?? 'info',
  },
];

/** `data-dir` → `CHORUS_DATA_DIR`. */
export const envName = (flag: string): string => `CHORUS_${flag.toUpperCase().replace(/-/g, '_')}`;

/** `data-dir` → `dataDir`, as commander names parsed flags. */
export const camelName = (flag: string): string =>
  flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Settings given as text, by flag name. */
export type RawSettings = Partial<Record<string, string>>;

/** Reads a config file: a YAML or JSON mapping from flag names to values. */
export function readConfigFile(path: string): RawSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read --config-file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    // YAML is a superset of JSON, so one parser reads both.
    parsed = parseYaml(text);
  } catch (error) {
    throw new ConfigError(
      `--config-file ${path} is not valid YAML or JSON: ${(error as Error).message}`,
    );
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError(`--config-file ${path} must hold a mapping of setting names to values`);
  const known = new Set(settings.map((s) => s.flag));
  const raw: RawSettings = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (!known.has(key))
      throw new ConfigError(
        `--config-file ${path}: unknown setting ${JSON.stringify(key)} (known: ${[...known].join(', ')})`,
      );
    if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number'))
      raw[key] = value.join(',');
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      raw[key] = String(value);
    else throw new ConfigError(`--config-file ${path}: ${key} must be a string, number or list`);
  }
  return raw;
}

/** The settings from CHORUS_* variables of `env`. */
export function fromEnvironment(env: NodeJS.ProcessEnv): RawSettings {
  const raw: RawSettings = {};
  for (const s of settings) {
    const value = env[envName(s.flag)];
    if (value !== undefined && value !== '') raw[s.flag] = value;
  }
  return raw;
}

/** Flags beat environment variables, which beat the config file; then the defaults. */
export function resolveConfig(
  flags: RawSettings,
  environment: RawSettings,
  file: RawSettings,
): ServerConfig {
  const given = (flag: string): string | undefined =>
    flags[flag] ?? environment[flag] ?? file[flag];
  const name = given('name') ?? 'default';
  const get = (flag: string): string => {
    const setting = settings.find((s) => s.flag === flag)!;
    return given(flag) ?? setting.default(name);
  };
  if (!isNodeId(name))
    throw new ConfigError(`--name ${JSON.stringify(name)}: use 1-64 of [A-Za-z0-9_.-]`);
  const peerUrls = urlList(get('listen-peer-urls'), 'listen-peer-urls');
  const listenClient = urlList(get('listen-client-urls'), 'listen-client-urls');
  const metricsText = given('listen-metrics-urls');
  const listenMetrics =
    metricsText === undefined || metricsText.trim() === ''
      ? []
      : urlList(metricsText, 'listen-metrics-urls');
  // An https:// metrics URL is served with the client port's files, as in etcd.
  const clientTls = tlsFilesOf(given, '', {
    'listen-client-urls': listenClient,
    'listen-metrics-urls': listenMetrics,
  });
  const peerTls = tlsFilesOf(given, 'peer-', { 'listen-peer-urls': peerUrls });
  if (peerUrls.length !== 1)
    throw new ConfigError('--listen-peer-urls: Chorus listens for peers on exactly one URL');
  const advertisedText = given('initial-advertise-peer-urls');
  const advertised =
    advertisedText === undefined
      ? undefined
      : uniqueUrls(urlList(advertisedText, 'initial-advertise-peer-urls'));
  // etcd's default --initial-cluster is this member alone at its advertised peer URLs.
  const initialCluster = parseInitialCluster(
    given('initial-cluster') ??
      (advertised ?? ['http://localhost:2380']).map((url) => `${name}=${url}`).join(','),
  );
  const listed = initialCluster.filter((m) => m.name === name).map((m) => m.peerUrl);
  if (listed.length === 0)
    throw new ConfigError(
      `--initial-cluster does not list this member's name ${JSON.stringify(name)}`,
    );
  const state = get('initial-cluster-state');
  if (state !== 'new' && state !== 'existing')
    throw new ConfigError(
      `--initial-cluster-state must be 'new' or 'existing', not ${JSON.stringify(state)}`,
    );
  if (state === 'new' && initialCluster.some((m) => m.name === ''))
    throw new ConfigError(
      '--initial-cluster: a member without a name founds no cluster (only a member joining with --initial-cluster-state existing accepts one)',
    );
  const heartbeatIntervalMs = positiveInteger(get('heartbeat-interval'), 'heartbeat-interval');
  const electionTimeoutMs = positiveInteger(get('election-timeout'), 'election-timeout');
  if (electionTimeoutMs < 5 * heartbeatIntervalMs)
    throw new ConfigError(
      `--election-timeout (${electionTimeoutMs} ms) must be at least 5 heartbeats (${5 * heartbeatIntervalMs} ms)`,
    );
  const logLevel = get('log-level');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel))
    throw new ConfigError(
      `--log-level must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`,
    );
  const dataDir = get('data-dir');
  if (dataDir.trim() === '') throw new ConfigError('--data-dir must not be empty');
  return {
    name,
    dataDir,
    listenPeer: { host: peerUrls[0]!.host, port: peerUrls[0]!.port, tls: peerUrls[0]!.tls },
    listenClient: listenClient.map(({ host, port, tls }) => ({ host, port, tls })),
    ...(clientTls === undefined ? {} : { clientTls }),
    ...(peerTls === undefined ? {} : { peerTls }),
    listenMetrics: listenMetrics.map(({ host, port, tls }) => ({ host, port, tls })),
    advertiseClientUrls: urlList(get('advertise-client-urls'), 'advertise-client-urls').map(
      (u) => u.url,
    ),
    advertisePeerUrls: advertised ?? listed,
    initialCluster,
    initialClusterState: state,
    initialClusterToken: get('initial-cluster-token'),
    joinTimeoutMs: nonNegativeInteger(get('join-timeout'), 'join-timeout'),
    heartbeatIntervalMs,
    electionTimeoutMs,
    snapshotCount: positiveInteger(get('snapshot-count'), 'snapshot-count'),
    snapshotCatchUpEntries: nonNegativeInteger(
      get('snapshot-catchup-entries'),
      'snapshot-catchup-entries',
    ),
    maxRequestBytes: positiveInteger(get('max-request-bytes'), 'max-request-bytes'),
    quotaBackendBytes: integer(get('quota-backend-bytes'), 'quota-backend-bytes'),
    acceptUrlAuthority: boolean(get('accept-url-authority'), 'accept-url-authority'),
    logLevel: logLevel as ServerConfig['logLevel'],
  };
}

/**
 * One side's TLS files (`prefix` '' for clients, 'peer-' for peers), checked as etcd checks
 * them: an https:// URL among `listens` (by flag) needs a certificate and its key, each
 * needs the other, and
 * --[peer-]client-cert-auth needs the CAs that sign the certificates it accepts. Whether the
 * files hold what they should is tls.ts's to say, when the member starts.
 */
function tlsFilesOf(
  given: (flag: string) => string | undefined,
  prefix: '' | 'peer-',
  listens: Record<string, readonly { url: string; tls: boolean }[]>,
): TlsFiles | undefined {
  const certFile = given(`${prefix}cert-file`);
  const keyFile = given(`${prefix}key-file`);
  const trustedCaFile = given(`${prefix}trusted-ca-file`);
  const authText = given(`${prefix}client-cert-auth`);
  const clientCertAuth =
    authText === undefined ? false : boolean(authText, `${prefix}client-cert-auth`);
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new ConfigError(
      `--${prefix}cert-file and --${prefix}key-file go together: give both or neither`,
    );
  const secure = Object.entries(listens)
    .flatMap(([flag, urls]) => urls.map((u) => ({ flag, ...u })))
    .find((u) => u.tls);
  if (certFile === undefined || keyFile === undefined) {
    if (secure !== undefined)
      throw new ConfigError(
        `--${secure.flag} ${secure.url}: TLS needs a certificate and key (--${prefix}cert-file, --${prefix}key-file)`,
      );
    if (clientCertAuth || trustedCaFile !== undefined)
      throw new ConfigError(
        `--${prefix}client-cert-auth and --${prefix}trusted-ca-file need --${prefix}cert-file and --${prefix}key-file`,
      );
    return undefined;
  }
  if (clientCertAuth && trustedCaFile === undefined)
    throw new ConfigError(
      `--${prefix}client-cert-auth needs --${prefix}trusted-ca-file: the CAs whose certificates it accepts`,
    );
  return {
    certFile,
    keyFile,
    ...(trustedCaFile === undefined ? {} : { trustedCaFile }),
    clientCertAuth,
  };
}

function boolean(text: string, flag: string): boolean {
  const t = text.trim().toLowerCase();
  if (t === 'true') return true;
  if (t === 'false') return false;
  throw new ConfigError(`--${flag} must be true or false, not ${JSON.stringify(text)}`);
}

/** A whole number of a flag's text, or a ConfigError naming the flag. */
export function nonNegativeInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n))
    throw new ConfigError(`--${flag} must be a whole number, not ${JSON.stringify(text)}`);
  return n;
}

function integer(text: string, flag: string): number {
  const n = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(n))
    throw new ConfigError(`--${flag} must be a whole number, not ${JSON.stringify(text)}`);
  return n;
}

function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n <= 0)
    throw new ConfigError(`--${flag} must be a positive integer, not ${JSON.stringify(text)}`);
  return n;
}

/** `http://host:port` or `https://host:port` → the normalized URL, host, port and whether TLS. */
export function parseUrl(
  text: string,
  flag: string,
): { url: string; host: string; port: number; tls: boolean } {
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw new ConfigError(`--${flag}: ${JSON.stringify(text)} is not a URL (use http://host:port)`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme !== 'http' && scheme !== 'https')
    throw new ConfigError(`--${flag}: ${text}: use http:// or https://host:port`);
  const port = Number(url.port);
  if (url.port === '' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(`--${flag}: ${text} names no port`);
  // URL keeps IPv6 hosts in brackets; net.listen wants them bare.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { url: `${scheme}://${url.host}`, host, port, tls: scheme === 'https' };
}

function urlList(
  text: string,
  flag: string,
): { url: string; host: string; port: number; tls: boolean }[] {
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 0) throw new ConfigError(`--${flag} names no URL`);
  return parts.map((p) => parseUrl(p, flag));
}

/** The URLs, each once, in the order first given (etcd's URL lists are sets). */
function uniqueUrls(urls: readonly { url: string }[]): string[] {
  return [...new Set(urls.map((u) => u.url))];
}

/**
 * etcd's check when a member founds a cluster (or a snapshot is restored for one): the peer
 * URLs it advertises and those --initial-cluster gives its name must be the same set, or the
 * others would dial it at URLs it does not think are its own. Both lists are normalized
 * http://host:port strings; host names are compared as written, not resolved (etcd resolves
 * them before it compares).
 */
export function checkAdvertisedPeerUrls(
  name: string,
  initialCluster: readonly ClusterMember[],
  advertised: readonly string[],
): void {
  const listed = initialCluster.filter((m) => m.name === name).map((m) => m.peerUrl);
  const onlyListed = listed.filter((u) => !advertised.includes(u));
  if (onlyListed.length > 0)
    throw new ConfigError(
      `--initial-cluster has ${onlyListed.map((u) => `${name}=${u}`).join(',')} but missing from --initial-advertise-peer-urls=${advertised.join(',')}`,
    );
  const onlyAdvertised = advertised.filter((u) => !listed.includes(u));
  if (onlyAdvertised.length > 0)
    throw new ConfigError(
      `--initial-advertise-peer-urls has ${onlyAdvertised.join(',')} but missing from --initial-cluster=${listed.map((u) => `${name}=${u}`).join(',')}`,
    );
}

export function parseInitialCluster(text: string): ClusterMember[] {
  const members: ClusterMember[] = [];
  for (const part of text.split(',').map((s) => s.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0)
      throw new ConfigError(
        `--initial-cluster: ${JSON.stringify(part)} is not name=http://host:port`,
      );
    const name = part.slice(0, eq);
    if (name !== '' && !isNodeId(name))
      throw new ConfigError(
        `--initial-cluster: member name ${JSON.stringify(name)}: use 1-64 of [A-Za-z0-9_.-]`,
      );
    const { url, host, port, tls } = parseUrl(part.slice(eq + 1), 'initial-cluster');
    if (members.some((m) => m.peerUrl === url))
      throw new ConfigError(`--initial-cluster lists ${url} twice`);
    members.push({ name, peerUrl: url, host, port, tls });
  }
  if (members.length === 0) throw new ConfigError('--initial-cluster names no member');
  return members;
}

/** Each named member of --initial-cluster with its peer URLs, in the order first named. */
export function namedMembers(cluster: readonly ClusterMember[]): Map<string, ClusterMember[]> {
  const byName = new Map<string, ClusterMember[]>();
  for (const m of cluster) {
    if (m.name === '') continue;
    const entries = byName.get(m.name) ?? [];
    entries.push(m);
    byName.set(m.name, entries);
  }
  return byName;
}

/** etcd's default quota (DefaultQuotaBytes). */
export const quotaBytesDefault = 2 * 1024 ** 3;
/** Share of V8's heap limit the default quota stays within: the store lives in the heap. */
export const quotaHeapShare = 0.4;

/**
 * The quota a member enforces (0: none) for --quota-backend-bytes `configured`, with
 * `heapLimit` the process's V8 heap limit, and a warning when it cannot be trusted: etcd's
 * store is a file, Chorus's is in memory, so a quota near the heap limit would let the
 * process run out of heap before the quota refuses anything.
 */
export function quotaBytesOf(
  configured: number,
  heapLimit: number,
): { bytes: number; warning?: string } {
  if (configured < 0) return { bytes: 0, warning: 'the space quota is disabled' };
  if (configured === 0)
    return { bytes: Math.min(quotaBytesDefault, Math.floor(heapLimit * quotaHeapShare)) };
  if (configured > heapLimit / 2)
    return {
      bytes: configured,
      warning: `--quota-backend-bytes ${configured} is more than half the heap limit (${heapLimit} bytes): the process may run out of memory first; raise the limit with node's --max-old-space-size`,
    };
  return { bytes: configured };
}
