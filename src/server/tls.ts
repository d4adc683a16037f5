/**
 * The client port's TLS (etcd's --cert-file, --key-file, --trusted-ca-file and
 * --client-cert-auth): the files, read once when the member starts, as Node's TLS options.
 * A file that cannot be read or does not hold what it should stops the start with a
 * ConfigError naming the flag, before any port is opened.
 */
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import { ConfigError, type ClientTlsFiles } from './config.js';

/**
 * The protocols offered to a client that negotiates one (ALPN), in the order the member
 * prefers them. gRPC clients offer h2 alone; HTTP/1.1 first keeps clients that offer both
 * (curl, browsers) on HTTP/1.1, where the JSON gateway, /health and /metrics are served.
 */
export const clientAlpnProtocols = ['http/1.1', 'h2'];

export function loadClientTls(files: ClientTlsFiles): tls.TlsOptions {
  const read = (path: string, flag: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ConfigError(`--${flag} ${path}: ${(error as Error).message}`);
    }
  };
  const ca =
    files.trustedCaFile === undefined ? undefined : read(files.trustedCaFile, 'trusted-ca-file');
  const verifyClients = ca !== undefined;
  const options: tls.TlsOptions = {
    cert: read(files.certFile, 'cert-file'),
    key: read(files.keyFile, 'key-file'),
    ...(ca === undefined ? {} : { ca }),
    requestCert: verifyClients,
    rejectUnauthorized: verifyClients,
    ALPNProtocols: clientAlpnProtocols,
    minVersion: 'TLSv1.2',
  };
  try {
    // Parses the PEM and checks that the key is the certificate's.
    tls.createSecureContext(options);
  } catch (error) {
    throw new ConfigError(
      `--cert-file ${files.certFile}, --key-file ${files.keyFile}${ca === undefined ? '' : `, --trusted-ca-file ${files.trustedCaFile}`}: ${(error as Error).message}`,
    );
  }
  return options;
}
