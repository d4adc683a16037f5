/**
 * `chorus server`: one Chorus node process, configured like an etcd member. Runs until
 * SIGTERM or SIGINT, then stops gracefully and exits 0. Exit 2: bad configuration (also when
 * a founding member's --initial-advertise-peer-urls disagree with --initial-cluster, which is
 * checked only when it bootstraps); exit 1: it could not start (data directory locked, port in
 * use, storage unreadable, a joiner that learned no id) or a fatal error stopped it.
 */
import { Option, type Command } from 'commander';
import { describeError, FatalError } from '../core/errors.js';
import { nodeLogger } from '../env/node/index.js';
import {
  camelName,
  ConfigError,
  envName,
  fromEnvironment,
  readConfigFile,
  resolveConfig,
  settings,
  type RawSettings,
  type ServerConfig,
} from '../server/config.js';
import { shutdownGraceMs } from '../server/constants.js';
import { startServer } from '../server/server.js';
import type { CliContext } from './context.js';

const helpAfter = `
Every setting can also come from an environment variable (CHORUS_ and the flag's name in
capitals, e.g. CHORUS_NAME, CHORUS_INITIAL_CLUSTER) or from --config-file / CHORUS_CONFIG_FILE,
a YAML or JSON mapping keyed by flag name (e.g. "initial-cluster: a=http://127.0.0.1:2380").
A flag beats its environment variable, which beats the config file, which beats the default.

One port serves gRPC (etcd v3 API) and HTTP: the JSON gateway (POST /v3/kv/range, ...),
GET /health and GET /metrics (Prometheus).

Example, a one-member cluster:
  chorus server --name n1 --data-dir ./n1 \\
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \\
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \\
    --initial-cluster n1=http://127.0.0.1:2380`;

export function registerServer(program: Command, ctx: CliContext): void {
  const command = program
    .command('server')
    .description('run one Chorus node: an etcd v3 API member of a Raft cluster')
    .addOption(
      new Option('--config-file <path>', 'YAML or JSON file of settings keyed by flag name').env(
        'CHORUS_CONFIG_FILE',
      ),
    );
  for (const s of settings) {
    // A boolean may stand alone, as etcd's do (`--client-cert-auth` means true).
    command.option(
      s.value === 'bool' ? `--${s.flag} [${s.value}]` : `--${s.flag} <${s.value}>`,
      `${s.description} (default: ${s.default('<name>')}; env ${envName(s.flag)})`,
    );
  }
  command
    .addHelpText('after', helpAfter)
    .action(async (options: Record<string, string | boolean>) => {
      let config: ServerConfig;
      try {
        config = configure(options);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        ctx.err(`chorus server: ${error.message}`);
        ctx.exitCode = 2;
        return;
      }
      ctx.exitCode = await run(config, ctx);
    });
}

function configure(options: Record<string, string | boolean>): ServerConfig {
  const flags: RawSettings = {};
  for (const s of settings) {
    const value = options[camelName(s.flag)];
    if (value !== undefined) flags[s.flag] = String(value);
  }
  const configFile = options['configFile'];
  const file = typeof configFile === 'string' ? readConfigFile(configFile) : {};
  return resolveConfig(flags, fromEnvironment(process.env), file);
}

/** Runs the node until a signal stops it; resolves with the exit code. */
function run(config: ServerConfig, ctx: CliContext): Promise<number> {
  // createNodeEnv names the node in every line it and the server log; lines from before it
  // exists name it themselves.
  const log = nodeLogger({}, config.logLevel);
  return new Promise((resolve) => {
    startServer(config, log, (error, server) => {
      if (error !== undefined || server === undefined) {
        log.error('cannot start', { node: config.name, error: describeError(error) });
        ctx.err(`chorus server: ${error?.message ?? 'cannot start'}`);
        // Flags that disagree in a way only a bootstrap checks (its advertised peer URLs)
        // are a configuration error too.
        return resolve(error instanceof ConfigError ? 2 : 1);
      }
      let stopping = false;
      const stop = (reason: string, code: number): void => {
        if (stopping) return;
        stopping = true;
        const force = setTimeout(() => {
          log.error('graceful stop took too long; exiting', { graceMs: shutdownGraceMs });
          process.exit(1);
        }, shutdownGraceMs);
        force.unref();
        server.stop(reason, () => {
          clearTimeout(force);
          resolve(code);
          // Nothing of the node is left; a library's lingering handle must not keep us.
          setTimeout(() => process.exit(code), 500).unref();
        });
      };
      // The server may stop by itself: removed from the cluster, it exits 0 as etcd does.
      server.whenStopped((reason) => {
        if (stopping) return;
        stopping = true;
        log.warn('stopped by itself', { reason });
        resolve(0);
        setTimeout(() => process.exit(0), 500).unref();
      });
      // Both stay handled: a second signal (Ctrl-C reaches a whole process group, and a
      // supervisor may send SIGTERM too) must not kill the process mid-stop.
      process.on('SIGTERM', () => stop('SIGTERM', 0));
      process.on('SIGINT', () => stop('SIGINT', 0));
      process.on('uncaughtException', (fatal) => {
        // A FatalError (a failed fsync) or a bug: durable state can no longer be trusted.
        log.error(fatal instanceof FatalError ? 'fatal error' : 'uncaught exception; stopping', {
          error: describeError(fatal),
          stack: fatal.stack,
        });
        process.exit(1);
      });
    });
  });
}
