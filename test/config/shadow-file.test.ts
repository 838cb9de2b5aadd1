import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readShadowFile, writeShadowFile } from '../../src/config/shadow-file.js';
import { BadConfigError } from '../../src/errors.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-shadow-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a missing shadow file reads as no entries', (t) => {
  assert.deepEqual(readShadowFile(join(tempDir(t), 'shadow.json')), {});
});

test('a written shadow file is readable by its owner only and reads back the same', (t) => {
  const path = join(tempDir(t), 'shadow.json');
  writeShadowFile(path, { 'alice@pbs': '$scrypt$x', 'bob@pbs': '$scrypt$y' });
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readShadowFile(path), { 'alice@pbs': '$scrypt$x', 'bob@pbs': '$scrypt$y' });
});

test('a shadow file that is not a JSON object is a configuration error naming the file', (t) => {
  const dir = tempDir(t);
  for (const [name, content] of [
    ['array.json', '["a"]'],
    ['broken.json', '{"a": '],
  ] as const) {
    const path = join(dir, name);
    writeFileSync(path, content);
    assert.throws(
      () => readShadowFile(path),
      (err: unknown) => err instanceof BadConfigError && err.message.startsWith(`${path}: `),
    );
  }
});
