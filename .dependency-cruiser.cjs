// Layer rules of DESIGN.md and no circular imports. Arrows point only downwards.
/** @type {import('dependency-cruiser').IConfiguration} */
const layer = (name, allowed) => ({
  name: `layer-${name}`,
  comment: `${name}/ may import only ${allowed.join(', ') || 'nothing in src'}`,
  severity: 'error',
  from: { path: `^src/${name}/` },
  to: { path: '^src/', pathNot: [`^src/${name}/`, ...allowed.map((a) => `^src/${a}/`)] },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    layer('core', []),
    {
      name: 'env-interface-only-core',
      severity: 'error',
      from: { path: '^src/env/', pathNot: '^src/env/node/' },
      to: { path: '^src/', pathNot: ['^src/env/', '^src/core/'] },
    },
    {
      name: 'env-interface-not-node',
      comment: 'the Env interface must not depend on its Node.js implementation',
      severity: 'error',
      from: { path: '^src/env/env\\.ts$' },
      to: { path: '^src/env/node/' },
    },
    layer('sim', ['core', 'env']),
    layer('transport', ['core', 'env']),
    layer('gossip', ['core', 'env', 'transport']),
    layer('check', ['core']),
    layer('raft', ['core', 'env', 'transport']),
    {
      name: 'layer-storage',
      comment: 'storage/ may import core, env and the shared Raft data types only',
      severity: 'error',
      from: { path: '^src/storage/' },
      to: {
        path: '^src/',
        pathNot: ['^src/storage/', '^src/core/', '^src/env/', '^src/raft/types\\.ts$'],
      },
    },
    layer('kv', ['core', 'env', 'transport', 'raft']),
    layer('workload', [
      'core',
      'check',
      'env',
      'sim',
      'gossip',
      'raft',
      'storage',
      'transport',
      'kv',
    ]),
    {
      name: 'layer-server',
      comment:
        'server/ is the node process: it may wire every layer together, but the simulator and the workloads are test machinery',
      severity: 'error',
      from: { path: '^src/server/' },
      to: { path: '^src/(sim|workload)/' },
    },
    {
      name: 'layer-client',
      comment:
        'client/ is an etcd v3 client: it may use core, the KV data types and key helpers, and the proto loader it shares with the server, nothing of the node itself',
      severity: 'error',
      from: { path: '^src/client/' },
      to: {
        path: '^src/',
        pathNot: [
          '^src/client/',
          '^src/core/',
          '^src/kv/(types|keys)\\.ts$',
          '^src/server/proto\\.ts$',
        ],
      },
    },
    {
      name: 'protocols-not-node-env',
      comment: 'protocol code sees only the Env interface, never its Node.js implementation',
      severity: 'error',
      from: { path: '^src/(sim|transport|gossip|raft|storage|kv|check|workload)/' },
      to: { path: '^src/env/node/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
