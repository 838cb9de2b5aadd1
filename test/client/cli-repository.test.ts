import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRepository, parseRepository, repositoryFromEnv } from '../../src/cli/client/repository.js';
import { parseBackupSpec } from '../../src/cli/client/backup-command.js';
import { parseSnapshotSpec } from '../../src/cli/client/snapshot-reader.js';

test('repository specs are read as PBS writes them', () => {
  assert.deepEqual(parseRepository('local'), {
    authId: 'root@pam',
    host: 'localhost',
    port: 8007,
    store: 'local',
  });
  assert.deepEqual(parseRepository('backup.example.com:store1'), {
    authId: 'root@pam',
    host: 'backup.example.com',
    port: 8007,
    store: 'store1',
  });
  assert.deepEqual(parseRepository('alice@pbs@10.0.0.5:8443:store1'), {
    authId: 'alice@pbs',
    host: '10.0.0.5',
    port: 8443,
    store: 'store1',
  });
  assert.deepEqual(parseRepository('alice@pbs!nightly@[fd00::1]:8007:store1'), {
    authId: 'alice@pbs!nightly',
    host: 'fd00::1',
    port: 8007,
    store: 'store1',
  });
  assert.equal(
    formatRepository(parseRepository('alice@pbs!nightly@[fd00::1]:store1')),
    'alice@pbs!nightly@[fd00::1]:8007:store1',
  );
});

test('malformed repository specs name what is wrong', () => {
  assert.throws(() => parseRepository(''), /empty/);
  assert.throws(() => parseRepository('host:99999:store1'), /invalid port/);
  assert.throws(() => parseRepository('fd00::1:store1'), /IPv6/);
  assert.throws(() => parseRepository('alice@host:store1'), /invalid user or token/);
  assert.throws(() => parseRepository('host:x'), /invalid datastore name/);
});

test('the repository comes from the option, then STOWAGE_REPOSITORY, then PBS_REPOSITORY', () => {
  assert.equal(repositoryFromEnv('a:store1', { STOWAGE_REPOSITORY: 'b:store2' }).host, 'a');
  assert.equal(
    repositoryFromEnv(undefined, { STOWAGE_REPOSITORY: 'b:store2', PBS_REPOSITORY: 'c:store3' }).host,
    'b',
  );
  assert.equal(repositoryFromEnv(undefined, { PBS_REPOSITORY: 'c:store3' }).host, 'c');
  assert.throws(() => repositoryFromEnv(undefined, {}), /STOWAGE_REPOSITORY/);
});

test('backup specs map to archive names: pxar and tar trees, images, blobs', () => {
  assert.deepEqual(parseBackupSpec('root.tar:/etc'), {
    archive: 'root.tar.didx',
    kind: 'tree',
    path: '/etc',
  });
  assert.deepEqual(parseBackupSpec('root.pxar:/etc'), {
    archive: 'root.pxar.didx',
    kind: 'pxar',
    path: '/etc',
  });
  assert.deepEqual(parseBackupSpec('disk.img:/dev/sda'), {
    archive: 'disk.img.fidx',
    kind: 'image',
    path: '/dev/sda',
  });
  assert.deepEqual(parseBackupSpec('vm.conf:/etc/vm.conf'), {
    archive: 'vm.conf.blob',
    kind: 'blob',
    path: '/etc/vm.conf',
  });
  assert.throws(() => parseBackupSpec('root:/etc'), /unable to parse backup specification/);
  assert.throws(() => parseBackupSpec('../x.tar:/etc'), /unable to parse/);
});

test('snapshot specs are type/id/time or type/id', () => {
  assert.deepEqual(parseSnapshotSpec('host/web01/2023-11-14T22:13:20Z'), {
    backupType: 'host',
    backupId: 'web01',
    backupTime: 1_700_000_000,
  });
  assert.deepEqual(parseSnapshotSpec('vm/100'), { backupType: 'vm', backupId: '100', backupTime: undefined });
  assert.throws(() => parseSnapshotSpec('host'), /unable to parse snapshot/);
  assert.throws(() => parseSnapshotSpec('nas/web01'), /host|vm|ct|backup-type|snapshot/);
});
