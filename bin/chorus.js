#!/usr/bin/env node
// The `chorus` command. The TypeScript sources are compiled by `npm ci` (prepare) into dist/.
import { main } from '../dist/src/cli/main.js';

// A reader that goes away (`chorus get --prefix '' | head`) is not an error: stop quietly.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 2;
  },
);
