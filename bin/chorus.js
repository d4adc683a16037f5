#!/usr/bin/env node
// The `chorus` command. The TypeScript sources are compiled by `npm ci` (prepare) into dist/.
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 2;
  },
);
