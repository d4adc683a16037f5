/**
 * What every etcd client command shares: etcdctl's global flags (--endpoints, --dial-timeout,
 * --command-timeout, -w/--write-out), the client's lifetime, and how failures end: one
 * line on stderr ("Error: " and etcd's own text, as etcdctl prints it) and exit code 1 for a
 * request that failed, 2 for bad usage, like every other `chorus` command.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { EtcdClient, parseEndpointList, type ClientTls } from '../client/client.js';
import {
  commandTimeoutMsDefault,
  defaultEndpoint,
  dialTimeoutMsDefault,
} from '../client/constants.js';
import { ClientInputError, EtcdClientError } from '../client/errors.js';
import type { CliContext } from './context.js';

export const outputFormats = ['simple', 'json', 'table'] as const;
export type OutputFormat = (typeof outputFormats)[number];

export interface ClientFlags {
  endpoints: string;
  dialTimeout: string;
  commandTimeout: string;
  writeOut: OutputFormat;
  cacert?: string;
  cert?: string;
  key?: string;
  insecureSkipTlsVerify?: boolean;
}

/** Exit codes: `main` maps commander's own usage errors to 2 as well. */
export const exitFailed = 1;
export const exitUsage = 2;

/**
 * A subcommand of `parent` with the global client flags. They are declared on each command
 * rather than on `chorus` itself, so they cannot shadow a flag of `chorus server` or `sim`;
 * commander accepts them anywhere after the command name.
 */
export function clientCommand(parent: Command, nameAndArgs: string, description: string): Command {
  return parent
    .command(nameAndArgs)
    .description(description)
    .addOption(
      new Option('--endpoints <list>', 'gRPC endpoints, comma separated (host:port)')
        .default(defaultEndpoint)
        .env('CHORUS_ENDPOINTS'),
    )
    .option(
      '--dial-timeout <duration>',
      'dial timeout per endpoint',
      `${dialTimeoutMsDefault / 1000}s`,
    )
    .option(
      '--command-timeout <duration>',
      'timeout of one request, retries included',
      `${commandTimeoutMsDefault / 1000}s`,
    )
    .addOption(
      new Option('-w, --write-out <format>', 'output format')
        .choices(outputFormats)
        .default('simple'),
    )
    .addOption(
      new Option('--cacert <path>', 'verify the members with this PEM CA bundle (TLS)').env(
        'CHORUS_CACERT',
      ),
    )
    .addOption(
      new Option('--cert <path>', 'PEM client certificate (TLS; with --key)').env('CHORUS_CERT'),
    )
    .addOption(new Option('--key <path>', "PEM key of --cert's certificate").env('CHORUS_KEY'))
    .option(
      '--insecure-skip-tls-verify',
      "TLS without checking the members' certificates (for tests only)",
    );
}

/**
 * TLS for the client when the endpoints are https:// or a TLS flag is given (etcdctl does
 * the same), with the files read; undefined for plain connections.
 */
export function clientTlsOf(flags: ClientFlags, httpsEndpoints: boolean): ClientTls | undefined {
  const skip = flags.insecureSkipTlsVerify === true;
  const given = [flags.cacert, flags.cert, flags.key].some((f) => f !== undefined);
  if (!httpsEndpoints && !given && !skip) return undefined;
  if ((flags.cert === undefined) !== (flags.key === undefined))
    throw new ClientInputError('--cert and --key go together: give both or neither');
  const read = (path: string | undefined, flag: string): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (error) {
      throw new ClientInputError(`${flag} ${path}: ${(error as Error).message}`);
    }
  };
  const tls: ClientTls = {};
  const ca = read(flags.cacert, '--cacert');
  const cert = read(flags.cert, '--cert');
  const key = read(flags.key, '--key');
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  if (skip) tls.insecureSkipVerify = true;
  return tls;
}

/** Go's durations as etcdctl takes them: "500ms", "2s", "1m30s", "1h". */
export function parseGoDuration(text: string, flag: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  const consumed = parts.map((p) => p[0]).join('');
  if (parts.length === 0 || consumed !== text.trim())
    throw new ClientInputError(
      `${flag}: bad duration ${JSON.stringify(text)} (use e.g. 500ms, 2s, 1m)`,
    );
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0);
  if (!(ms > 0)) throw new ClientInputError(`${flag} must be positive`);
  return Math.round(ms);
}

/**
 * Runs `body` with a client made from the flags and closes it afterwards, whatever happens.
 * Errors become the command's exit code and one line on stderr.
 */
export async function withClient(
  ctx: CliContext,
  flags: ClientFlags,
  body: (client: EtcdClient) => Promise<void>,
): Promise<void> {
  let client: EtcdClient | undefined;
  try {
    const { endpoints, tls: https } = parseEndpointList(flags.endpoints);
    const tls = clientTlsOf(flags, https);
    // grpc-js names an IP endpoint as the TLS server name, which Node reports as deprecated
    // (DEP0123) on stderr, within a command's output; the certificate check is unaffected.
    if (tls !== undefined) process.noDeprecation = true;
    client = new EtcdClient({
      endpoints,
      dialTimeoutMs: parseGoDuration(flags.dialTimeout, '--dial-timeout'),
      commandTimeoutMs: parseGoDuration(flags.commandTimeout, '--command-timeout'),
      ...(tls === undefined ? {} : { tls }),
    });
    await body(client);
  } catch (error) {
    fail(ctx, error);
  } finally {
    client?.close();
  }
}

/** Reports a failure the way etcdctl does and sets the exit code. */
export function fail(ctx: CliContext, error: unknown): void {
  if (error instanceof ClientInputError) {
    ctx.err(`Error: ${error.message}`);
    ctx.exitCode = exitUsage;
  } else if (error instanceof EtcdClientError) {
    ctx.err(`Error: ${error.message}`);
    ctx.exitCode = exitFailed;
  } else {
    // A bug in this client, not the server's answer: say so, with what we know.
    ctx.err(`Error: ${error instanceof Error ? error.message : String(error)}`);
    ctx.exitCode = exitFailed;
  }
}

/**
 * The endpoint a stream (re)opens on. After a broken stream, failing to find another says
 * both what broke and that nothing else answers.
 */
export async function streamEndpoint(
  client: EtcdClient,
  broken: EtcdClientError | undefined,
): Promise<string> {
  try {
    return await client.reachable();
  } catch (error) {
    if (broken === undefined || !(error instanceof EtcdClientError)) throw error;
    const message = `the stream to ${broken.endpoint} broke (${broken.message}); ${error.message}`;
    throw new EtcdClientError(broken.code, message, broken.endpoint, { cause: error, local: true });
  }
}

/** Commander's option object for a command, typed. */
export const flagsOf = <T extends object>(command: Command): T & ClientFlags =>
  command.opts<T & ClientFlags>();

/**
 * Ctrl-C (or SIGTERM) while a stream runs: `interrupted` turns true and `onInterrupt`, if
 * set, runs. `dispose()` stops listening.
 */
export class Interruption {
  interrupted = false;
  onInterrupt: (() => void) | undefined;
  private readonly handler = (): void => {
    this.interrupted = true;
    this.onInterrupt?.();
  };

  constructor() {
    process.on('SIGINT', this.handler);
    process.on('SIGTERM', this.handler);
  }

  dispose(): void {
    process.off('SIGINT', this.handler);
    process.off('SIGTERM', this.handler);
  }
}
