import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFileExclusive } from '../../src/sys/atomic-file.js';

test('createFileExclusive creates a file once, never replaces it and leaves no temp file behind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-atomic-'));
  try {
    const path = join(dir, 'client.log.blob');
    createFileExclusive(path, 'first', { fsync: true });
    assert.throws(() => createFileExclusive(path, 'second'), { code: 'EEXIST' });
    assert.equal(readFileSync(path, 'utf8'), 'first');
    assert.deepEqual(readdirSync(dir), ['client.log.blob']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
