/**
 * TLS as etcd configures it, for the client port (--cert-file, --key-file, --trusted-ca-file,
 * --client-cert-auth) and between members (the same flags with --peer-): the files, read
 * once when the member starts, as Node's TLS options. A file that cannot be read or does
 * not hold what it should stops the start with a ConfigError naming the flag, before any
 * port is opened.
 */
import { readFileSync, statSync } from 'node:fs';
import * as tls from 'node:tls';
import type { Logger } from '../env/env.js';
import type { PeerTls } from '../env/node/index.js';
import { ConfigError, type TlsFiles } from './config.js';

/**
 * The protocols offered to a client that negotiates one (ALPN), in the order the member
 * prefers them. gRPC clients offer h2 alone; HTTP/1.1 first keeps clients that offer both
 * (curl, browsers) on HTTP/1.1, where the JSON gateway, /health and /metrics are served.
 */
export const clientAlpnProtocols = ['http/1.1', 'h2'];

interface Loaded {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

function load(files: TlsFiles, prefix: '' | 'peer-'): Loaded {
  const read = (path: string, flag: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(`--${prefix}${flag} ${path}: ${(error as Error).message}`);
    }
  };
  const loaded = {
    cert: read(files.certFile, 'cert-file'),
    key: read(files.keyFile, 'key-file'),
    ca:
      files.trustedCaFile === undefined ? undefined : read(files.trustedCaFile, 'trusted-ca-file'),
  };
  try {
    // Parses the PEM and checks that the key is the certificate's.
    tls.createSecureContext({ cert: loaded.cert, key: loaded.key, ca: loaded.ca });
  } catch (error) {
    const named = [
      `--${prefix}cert-file ${files.certFile}`,
      `--${prefix}key-file ${files.keyFile}`,
      ...(files.trustedCaFile === undefined
        ? []
        : [`--${prefix}trusted-ca-file ${files.trustedCaFile}`]),
    ];
    throw new ConfigError(`${named.join(', ')}: ${(error as Error).message}`);
  }
  return loaded;
}

/** As etcd does, a trusted CA file alone already requires the other side's certificate. */
function serverOptions({ cert, key, ca }: Loaded): tls.TlsOptions {
  return {
    cert,
    key,
    ...(ca === undefined ? {} : { ca }),
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
    minVersion: 'TLSv1.2',
  };
}

/** The client port's options (https:// client URLs). */
export function loadClientTls(files: TlsFiles): tls.TlsOptions {
  return { ...serverOptions(load(files, '')), ALPNProtocols: clientAlpnProtocols };
}

/**
 * Between members: the server side of an https:// peer URL, and the client side this member
 * dials peers' https:// URLs with (its certificate, and the CAs their certificates must have;
 * without --peer-trusted-ca-file, Node's own CAs).
 */
export function loadPeerTls(files: TlsFiles): PeerTls {
  const loaded = load(files, 'peer-');
  return {
    server: serverOptions(loaded),
    client: {
      cert: loaded.cert,
      key: loaded.key,
      ...(loaded.ca === undefined ? {} : { ca: loaded.ca }),
      minVersion: 'TLSv1.2',
    },
  };
}

/**
 * The flags (etcd's, which `chorus server` shares) that serve one side, clients or peers,
 * over TLS with these files and require the other side's certificate signed by `ca`: what
 * `chorus dev --tls`, the TLS tests and the TLS benchmark give each member.
 */
export function tlsServerFlags(
  side: 'client' | 'peer',
  files: { ca: string; cert: string; key: string },
): string[] {
  const p = side === 'peer' ? 'peer-' : '';
  return [
    ...[`--${p}cert-file`, files.cert, `--${p}key-file`, files.key],
    ...[`--${p}trusted-ca-file`, files.ca, `--${p}client-cert-auth`],
  ];
}

/** How often the TLS files are looked at for a change (a stat of each). */
export const tlsReloadCheckMs = 5_000;

/**
 * Watches one side's TLS files and hands `apply` the options loaded from them whenever one
 * changes (size or modification time), so certificates can be rotated without a restart —
 * etcd, too, reads its certificate again for new connections. Connections already open keep
 * the certificate they were made with. A change that does not load (a half-written file, a
 * key that is not the certificate's) is logged and the old options stay, until the files
 * change again. Returns the stop.
 */
export function watchTlsFiles<T>(
  files: TlsFiles,
  load: (files: TlsFiles) => T,
  apply: (loaded: T) => void,
  log: Logger,
): () => void {
  const paths = [files.certFile, files.keyFile, files.trustedCaFile].filter(
    (p): p is string => p !== undefined,
  );
  const stamp = (): string =>
    paths
      .map((p) => {
        try {
          const s = statSync(p);
          return `${s.size}:${s.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  let seen = stamp();
  const timer = setInterval(() => {
    const now = stamp();
    if (now === seen) return;
    seen = now;
    try {
      apply(load(files));
      log.info('TLS files reloaded', { certFile: files.certFile });
    } catch (error) {
      log.warn('TLS files changed but cannot be used; keeping the ones loaded before', {
        error: (error as Error).message,
      });
    }
  }, tlsReloadCheckMs);
  timer.unref();
  return () => clearInterval(timer);
}
