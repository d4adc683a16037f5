// Lint with type information. Besides the usual rules it enforces the determinism ban of
// DESIGN.md: protocol code reaches time, randomness, network and disk only through Env.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const bannedGlobals = [
  'Date',
  'setTimeout',
  'setInterval',
  'setImmediate',
  'clearTimeout',
  'clearInterval',
  'performance',
].map((name) => ({
  name,
  message: `${name} is banned outside Env implementations: use env.clock / env.timers.`,
}));
const bannedModules = [
  'fs',
  'fs/promises',
  'net',
  'tls',
  'dgram',
  'timers',
  'timers/promises',
  'crypto',
  'perf_hooks',
].flatMap((name) => [name, `node:${name}`]);

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'bin/**',
      'eslint.config.js',
      '.dependency-cruiser.cjs',
      'scripts/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['src/**/*.ts'],
    // The node process (src/server), the CLI and the etcd client (src/client) are
    // Node-facing, like src/env/node: they own real sockets, signals, files and wall-clock
    // timing (gRPC deadlines).
    ignores: ['src/env/node/**', 'src/sim/**', 'src/cli/**', 'src/server/**', 'src/client/**'],
    rules: {
      'no-restricted-globals': ['error', ...bannedGlobals],
      'no-restricted-imports': [
        'error',
        {
          paths: bannedModules.map((name) => ({
            name,
            message: 'I/O goes through Env (DESIGN.md).',
          })),
        },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Use env.random.' },
        { object: 'process', property: 'hrtime', message: 'Use env.clock.' },
        { object: 'crypto', property: 'randomBytes', message: 'Use env.random.' },
        { object: 'crypto', property: 'randomUUID', message: 'Use env.random.' },
        { object: 'crypto', property: 'getRandomValues', message: 'Use env.random.' },
      ],
    },
  },
  {
    // The simulator itself must be deterministic too: only the campaign runner measures real time.
    files: ['src/sim/**/*.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Use the seeded PRNG.' },
      ],
      'no-restricted-globals': ['error', ...bannedGlobals],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
    },
  },
);
