import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArchiveName, parseServerArchiveName } from '../../src/api-types/archive-name.js';
import { BadRequestError } from '../../src/errors.js';

test('a client archive name gets the server extension its own extension implies, as PBS maps it', () => {
  const cases: Array<[string, string, string]> = [
    ['root.pxar', 'root.pxar.didx', 'dynamic'],
    ['root.mpxar', 'root.mpxar.didx', 'dynamic'],
    ['catalog.pcat1', 'catalog.pcat1.didx', 'dynamic'],
    ['drive-scsi0.img', 'drive-scsi0.img.fidx', 'fixed'],
    ['qemu-server.conf', 'qemu-server.conf.blob', 'blob'],
    ['index.json', 'index.json.blob', 'blob'],
    ['client.log', 'client.log.blob', 'blob'],
    ['rsa-encrypted.key', 'rsa-encrypted.key.blob', 'blob'],
    ['root.pxar.didx', 'root.pxar.didx', 'dynamic'],
    ['disk.fidx', 'disk.fidx', 'fixed'],
  ];
  for (const [given, name, type] of cases) assert.deepEqual(parseArchiveName(given), { name, type }, given);
});

test('archive names that are not one plain file name are refused naming the parameter', () => {
  for (const bad of [
    '',
    '..',
    '.',
    '../x.blob',
    'a/b.blob',
    '.protected',
    '-x.blob',
    'x.blob\n',
    'noext',
    'x.tar',
  ]) {
    assert.throws(
      () => parseArchiveName(bad),
      (err: unknown) => err instanceof BadRequestError && err.message.startsWith('invalid file-name '),
      JSON.stringify(bad),
    );
  }
});

test('a server archive name must carry its server extension: other files of a snapshot are no archives', () => {
  assert.deepEqual(parseServerArchiveName('index.json.blob'), { name: 'index.json.blob', type: 'blob' });
  for (const bad of ['owner', 'root.pxar', 'drive.img.tmp_fidx', 'index.json.blob.tmp_upload', '../owner']) {
    assert.throws(() => parseServerArchiveName(bad, 'file-name'), BadRequestError, bad);
  }
});
