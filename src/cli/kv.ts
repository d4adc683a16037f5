/**
 * `chorus put | get | del | txn | compaction`: the KV service, with etcdctl's arguments,
 * flags and output (see client-print.ts). `txn` reads etcdctl's transaction syntax from
 * stdin: comparisons, a blank line, the requests on success, a blank line, the requests on
 * failure; `-i` prompts for each part.
 */
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { txnLineBytesMax, txnLinesMax } from '../client/constants.js';
import { ClientInputError } from '../client/errors.js';
import {
  argify,
  deleteRangeRequest,
  parseCompare,
  parseCount,
  putRequest,
  rangeRequest,
  type DelOptions,
  type GetOptions,
  type PutOptions,
} from '../client/requests.js';
import type { Compare, RequestOp, TxnRequest } from '../client/types.js';
import { clientCommand, flagsOf, withClient } from './client-common.js';
import { Printer } from './client-print.js';
import type { CliContext } from './context.js';

export function registerKv(program: Command, ctx: CliContext): void {
  getOptions(clientCommand(program, 'get <key> [range_end]', 'get a key or a range of keys'))
    .option('--print-value-only', 'only write values (simple output)')
    .action(async (key: string, rangeEnd: string | undefined, _o, command: Command) => {
      const flags = flagsOf<GetOptions & { printValueOnly?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const response = await client.call('KV.Range', rangeRequest(key, rangeEnd, flags));
        const printer = new Printer(ctx, flags.writeOut, flags.printValueOnly === true);
        printer.get(response, flags.countOnly === true);
      });
    });

  putOptions(
    clientCommand(program, 'put <key> [value]', 'put a key (the value from stdin if not given)'),
  ).action(async (key: string, value: string | undefined, _o, command: Command) => {
    const flags = flagsOf<PutOptions>(command);
    await withClient(ctx, flags, async (client) => {
      const given = value ?? (flags.ignoreValue === true ? undefined : await stdinValue());
      const response = await client.call('KV.Put', putRequest(key, given, flags));
      new Printer(ctx, flags.writeOut).put(response);
    });
  });

  delOptions(
    clientCommand(program, 'del <key> [range_end]', 'delete a key or the range [key, range_end)'),
  ).action(async (key: string, rangeEnd: string | undefined, _o, command: Command) => {
    const flags = flagsOf<DelOptions>(command);
    await withClient(ctx, flags, async (client) => {
      const response = await client.call(
        'KV.DeleteRange',
        deleteRangeRequest(key, rangeEnd, flags),
      );
      new Printer(ctx, flags.writeOut).del(response);
    });
  });

  clientCommand(
    program,
    'txn',
    'run a transaction read from stdin (compares, success ops, failure ops)',
  )
    .option('-i, --interactive', 'prompt for each part of the transaction')
    .action(async (_o, command: Command) => {
      const flags = flagsOf<{ interactive?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const prompt = flags.interactive === true ? ctx.out : undefined;
        const request = await readTxn(stdinLines(), prompt);
        new Printer(ctx, flags.writeOut).txn(await client.call('KV.Txn', request));
      });
    });

  clientCommand(program, 'compaction <revision>', 'compact the event history up to a revision')
    .option('--physical', 'wait until the compaction has physically removed the old revisions')
    .action(async (revision: string, _o, command: Command) => {
      const flags = flagsOf<{ physical?: boolean }>(command);
      await withClient(ctx, flags, async (client) => {
        const rev = parseCount(revision, 'revision');
        await client.call('KV.Compact', { revision: rev, physical: flags.physical === true });
        // etcdctl prints this line whatever the output format.
        ctx.out(`compacted revision ${rev}`);
      });
    });
}

// The flags of get, put and del, declared once: the top-level commands and the request lines
// of a txn accept the same ones, as in etcdctl.

function getOptions(command: Command): Command {
  return command
    .option('--prefix', 'get the keys with this prefix')
    .option('--from-key', 'get the keys ≥ key (byte order)')
    .option('--rev <revision>', 'read at this revision')
    .option('--limit <n>', 'at most this many keys')
    .option('--keys-only', 'keys without values')
    .option('--count-only', 'only the number of keys')
    .option('--consistency <l|s>', 'linearizable (l) or serializable (s)', 'l')
    .option('--sort-by <target>', 'CREATE, KEY, MODIFY, VALUE or VERSION')
    .option('--order <order>', 'ASCEND or DESCEND')
    .option('--min-mod-rev <revision>', 'minimum modification revision')
    .option('--max-mod-rev <revision>', 'maximum modification revision')
    .option('--min-create-rev <revision>', 'minimum creation revision')
    .option('--max-create-rev <revision>', 'maximum creation revision');
}

function putOptions(command: Command): Command {
  return command
    .option('--lease <id>', 'attach the key to this lease (hexadecimal id)', '0')
    .option('--prev-kv', 'also return the previous key-value pair')
    .option('--ignore-value', 'keep the current value (update the lease only)')
    .option('--ignore-lease', 'keep the current lease (update the value only)');
}

function delOptions(command: Command): Command {
  return command
    .option('--prefix', 'delete the keys with this prefix')
    .option('--from-key', 'delete the keys ≥ key (byte order)')
    .option('--prev-kv', 'also return the deleted key-value pairs');
}

/** put without a value: etcdctl reads it all from stdin. */
async function stdinValue(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > txnLineBytesMax) throw new ClientInputError('the value on stdin is too large');
    chunks.push(chunk);
  }
  const value = Buffer.concat(chunks).toString('utf8');
  if (value === '')
    throw new ClientInputError('put command needs 1 argument and input from stdin or 2 arguments');
  return value;
}

function stdinLines(): AsyncIterator<string> {
  return createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity })[
    Symbol.asyncIterator
  ]();
}

/**
 * etcdctl's txn input from `lines`: comparisons up to a blank line, then the success
 * requests up to the next, then the failure requests up to the next or the end of input.
 * An input that ends early leaves the remaining parts empty.
 */
export async function readTxn(
  lines: AsyncIterator<string>,
  prompt?: (text: string) => void,
): Promise<TxnRequest> {
  let count = 0;
  const section = async <T>(parse: (line: string) => T): Promise<T[]> => {
    const items: T[] = [];
    for (;;) {
      const next = await lines.next();
      if (next.done === true) return items;
      if (++count > txnLinesMax)
        throw new ClientInputError(`a txn has at most ${txnLinesMax} lines`);
      const line = next.value.trim();
      if (line === '') return items;
      if (line.length > txnLineBytesMax) throw new ClientInputError('a txn line is too long');
      items.push(parse(line));
    }
  };
  prompt?.('compares:');
  const compare: Compare[] = await section(parseCompare);
  prompt?.('success requests (get, put, del):');
  const success = await section(parseRequestLine);
  prompt?.('failure requests (get, put, del):');
  const failure = await section(parseRequestLine);
  return { compare, success, failure };
}

/** `put k v`, `get k --prefix`, `del k` … → a RequestOp, with the commands' own flags. */
export function parseRequestLine(line: string): RequestOp {
  const args = argify(line);
  if (args.length < 2) throw new ClientInputError(`invalid txn request: ${line}`);
  let op: RequestOp | undefined;
  const parser = new Command('txn')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  getOptions(parser.command('get <key> [range_end]')).action(
    (key: string, end: string | undefined, o: GetOptions) => {
      op = { requestRange: rangeRequest(key, end, o) };
    },
  );
  putOptions(parser.command('put <key> <value>')).action(
    (key: string, value: string, o: PutOptions) => {
      op = { requestPut: putRequest(key, value, o) };
    },
  );
  delOptions(parser.command('del <key> [range_end]')).action(
    (key: string, end: string | undefined, o: DelOptions) => {
      op = { requestDeleteRange: deleteRangeRequest(key, end, o) };
    },
  );
  try {
    parser.parse(args, { from: 'user' });
  } catch (error) {
    if (error instanceof ClientInputError) throw error;
    throw new ClientInputError(`invalid txn request: ${line}`);
  }
  if (op === undefined) throw new ClientInputError(`invalid txn request: ${line}`);
  return op;
}
