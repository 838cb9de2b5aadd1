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
const admissionOnly = {
  files: ['src/**/*.ts'],
  ignores: ['src/datastore/**', 'src/maintenance/**'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
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
        ],
      },
    ],
  },
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'www/dist/**', 'data/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  admissionOnly,
);
