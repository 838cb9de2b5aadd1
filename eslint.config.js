import tseslint from 'typescript-eslint';

/**
 * One admission point (docs/architecture.md, maintenance.md §2): outside src/datastore/ and
 * src/maintenance/, a datastore is reached only through the handle lookupDatastore returns. So
 * the rest of src/ may import from src/datastore/ only its public surface (index.ts) and the pure
 * codecs (data-blob.ts, digest.ts), and nothing of the local admission backend's internals.
 * Import paths are relative, so the patterns match any number of `../` before the folder (a
 * sibling folder named `datastore`, such as api2/admin/datastore/, is reached with `./` and is
 * not matched). Tests are not covered: they build fixtures below the API on purpose.
 */
const datastoreInternals = [
  {
    regex: '^(\\.\\./)+datastore/(?!(index|data-blob|digest)\\.js$)',
    message:
      "Datastore internals are reachable only through lookupDatastore's handle: import names, " +
      'types and codecs from src/datastore/index.js (one admission point, maintenance.md §2).',
  },
  {
    regex: '^(\\.\\./)+maintenance/(local-[a-z-]+|sqlite-[a-z-]+)\\.js$',
    message:
      'The local admission backend is an implementation detail: use DatastoreAccess ' +
      '(datastore-access.js), openDatastoreAccess or the AdmissionBackend/LockService interfaces.',
  },
];

/**
 * The server's assembly (src/server/: wiring routes, protocols, TLS and the web UI into one
 * process, graceful restart) sits on top: the routes, the protocols, the HTTP infrastructure,
 * tasks and jobs never import it, and the HTTP infrastructure knows no route (docs/architecture.md).
 */
const notTheAssembly = {
  regex: '^(\\.\\./)+server/',
  message:
    'src/server/ assembles the server and is imported by nothing but the CLI; move what you need below it.',
};
const notTheRoutes = {
  regex: '^(\\.\\./)+api2/',
  message: 'The HTTP infrastructure, tasks and jobs know no route: routes import them, not the other way.',
};

function restrict(files, ignores, patterns) {
  return { files, ignores, rules: { 'no-restricted-imports': ['error', { patterns }] } };
}

export default tseslint.config(
  // wasm/ is AssemblyScript (its own types and decorators), checked by its compiler
  { ignores: ['dist/**', 'node_modules/**', 'www/dist/**', 'data/**', 'wasm/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // one rule set per folder: a later no-restricted-imports entry replaces an earlier one
  restrict(
    ['src/**/*.ts'],
    [
      'src/datastore/**',
      'src/maintenance/**',
      'src/server/**',
      'src/cli/**',
      'src/http/**',
      'src/tasks/**',
      'src/jobs/**',
    ],
    [...datastoreInternals, notTheAssembly],
  ),
  restrict(
    ['src/http/**/*.ts', 'src/tasks/**/*.ts', 'src/jobs/**/*.ts'],
    [],
    [...datastoreInternals, notTheAssembly, notTheRoutes],
  ),
  restrict(['src/server/**/*.ts', 'src/cli/**/*.ts'], [], datastoreInternals),
);
