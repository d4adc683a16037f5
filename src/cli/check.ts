/**
 * `chorus check FILE --model M`: is a recorded history linearizable? Exit 0 linearizable,
 * 1 not linearizable, 3 unknown (time budget spent), 2 bad input or bad arguments. Bad input
 * is one line naming the file, the line and the reason, never a stack trace.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { BadInputError } from '../core/errors.js';
import { checkTimeoutMsDefault } from '../check/constants.js';
import { explainResult } from '../check/explain.js';
import { historyFormats, parseHistory, type HistoryFormat } from '../check/formats.js';
import { checkHistory, type Verdict } from '../check/linearizability.js';
import { isModelName, modelNames, models } from '../check/models/index.js';
import { renderReport } from '../check/report.js';
import type { CliContext } from './context.js';

/** Largest history file read; a bigger one is refused before reading. */
const historyFileBytesMax = 512 * 1024 * 1024;

export const checkExitCodes: Readonly<Record<Verdict | 'bad-input', number>> = {
  linearizable: 0,
  'not-linearizable': 1,
  unknown: 3,
  'bad-input': 2,
};

interface CheckFlags {
  model: string;
  format: string;
  html?: string;
  timeout: string;
}

/** "30s", "500ms", "2m", or a bare number of seconds. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (match === null) return undefined;
  const n = Number(match[1]);
  const ms = match[2] === 'ms' ? n : match[2] === 'm' ? n * 60_000 : n * 1000;
  return ms > 0 && Number.isFinite(ms) ? ms : undefined;
}

export function registerCheck(program: Command, ctx: CliContext): void {
  program
    .command('check')
    .description('check a recorded history for linearizability')
    .argument('<file>', 'the history file')
    .requiredOption('--model <model>', `the object's sequential model: ${modelNames.join('|')}`)
    .option('--format <format>', `history format: ${historyFormats.join('|')}`, 'jsonl')
    .option('--html <file>', 'write a self-contained HTML report there')
    .option(
      '--timeout <duration>',
      'time budget, e.g. 30s or 500ms; past it the verdict is unknown',
      `${checkTimeoutMsDefault / 1000}s`,
    )
    .action((file: string, flags: CheckFlags) => {
      ctx.exitCode = runCheck(file, flags, ctx);
    });
}

function runCheck(file: string, flags: CheckFlags, ctx: CliContext): number {
  const fail = (message: string): number => {
    ctx.err(`chorus check: ${message}`);
    return checkExitCodes['bad-input'];
  };
  if (!isModelName(flags.model))
    return fail(`unknown model ${JSON.stringify(flags.model)} (use ${modelNames.join(', ')})`);
  if (!(historyFormats as readonly string[]).includes(flags.format)) {
    return fail(
      `unknown format ${JSON.stringify(flags.format)} (use ${historyFormats.join(', ')})`,
    );
  }
  const timeoutMs = parseDuration(flags.timeout);
  if (timeoutMs === undefined)
    return fail(`bad --timeout ${JSON.stringify(flags.timeout)} (e.g. 30s, 500ms, 2m)`);
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > historyFileBytesMax)
      return fail(`${file}: ${size} bytes exceed the limit of ${historyFileBytesMax}`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return fail(`${file}: cannot read (${error instanceof Error ? error.message : String(error)})`);
  }
  const model = models[flags.model];
  let result;
  let history;
  try {
    history = parseHistory(text, flags.format as HistoryFormat, file);
    result = checkHistory(history, model, { clock: () => performance.now(), timeoutMs });
  } catch (error) {
    if (error instanceof BadInputError) return fail(error.message);
    throw error;
  }
  for (const line of explainResult(result, model)) ctx.out(line);
  if (flags.html !== undefined) {
    try {
      writeFileSync(
        flags.html,
        renderReport({ result, model, source: file, timeUnit: history.timeUnit }),
      );
    } catch (error) {
      return fail(
        `cannot write ${flags.html} (${error instanceof Error ? error.message : String(error)})`,
      );
    }
    ctx.out(`report: ${flags.html}`);
  }
  return checkExitCodes[result.verdict];
}
