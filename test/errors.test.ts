import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as errors from '../src/errors.js';
import {
  ERR_GC_RUNNING,
  ERR_GROUP_LOCKED,
  ERR_NO_CREDENTIALS,
  StowageError,
  UnauthorizedError,
} from '../src/errors.js';
import { exitCodeFor, EXIT } from '../src/cli/exit-codes.js';

const named = Object.entries(errors).filter(([name]) => name.startsWith('ERR_')) as [
  string,
  errors.NamedError<errors.Printable[]>,
][];

test('every named error is exported under its own id, once', () => {
  assert.ok(named.length > 50);
  for (const [name, e] of named) assert.equal(e.id, name);
  assert.equal(new Set(named.map(([, e]) => e.id)).size, named.length);
});

test('a named error keeps its coarse code, status and message, and carries its id', () => {
  const err = ERR_GROUP_LOCKED('vm/100', 'another backup is already running');
  assert.ok(err instanceof StowageError);
  assert.equal(err.code, 'CONFLICT');
  assert.equal(err.status, 409);
  assert.equal(err.id, 'ERR_GROUP_LOCKED');
  assert.equal(
    err.message,
    'unable to acquire lock on backup group vm/100 - another backup is already running',
  );
  assert.equal(exitCodeFor(err), EXIT.CONFLICT);
});

test('is() recognises an error by its identity, not by its text', () => {
  const same = ERR_GC_RUNNING();
  const lookalike = new StowageError('CONFLICT', same.message);
  assert.ok(ERR_GC_RUNNING.is(same));
  assert.ok(!ERR_GC_RUNNING.is(lookalike));
  assert.ok(!ERR_GC_RUNNING.is(new Error(same.message)));
});

test('the missing-credentials error is still an UnauthorizedError, with PBS wording', () => {
  const err = ERR_NO_CREDENTIALS();
  assert.ok(err instanceof UnauthorizedError);
  assert.equal(err.status, 401);
  assert.equal(err.message, 'authentication failed - no authentication credentials provided');
  assert.ok(ERR_NO_CREDENTIALS.is(err));
  assert.ok(!ERR_NO_CREDENTIALS.is(new UnauthorizedError()));
});

test('withOptions attaches a cause without changing the message', () => {
  const cause = new Error('EACCES');
  const err = errors.ERR_CHUNK_DIR_UNREADABLE.withOptions({ cause }, '/x/.chunks/0000', 'EACCES');
  assert.equal(err.cause, cause);
  assert.equal(err.message, "unable to read chunk subdir '/x/.chunks/0000' - EACCES");
});

/**
 * Where `new StowageError(` may still appear: the registry itself, the two client places that
 * rebuild an error from the code a server sent back, and the snapshot-file writer whose caller
 * supplies the message (PBS's "backup already contains a log.").
 */
const INLINE_ALLOWED = new Set([
  'errors.ts',
  'client/chunk-pool.ts',
  'client/connection.ts',
  'datastore/snapshot-files.ts',
]);

test('the code raises named errors from the registry, not inline StowageErrors', () => {
  const src = fileURLToPath(new URL('../src/', import.meta.url));
  const offenders = (readdirSync(src, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !INLINE_ALLOWED.has(f))
    .filter((f) => readFileSync(join(src, f), 'utf8').includes('new StowageError('));
  assert.deepEqual(offenders, []);
});
