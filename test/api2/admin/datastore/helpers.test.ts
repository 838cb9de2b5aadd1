import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ForbiddenError } from '../../../../src/errors.js';
import { AclTree } from '../../../../src/config/acl-config.js';
import { BackupNamespace } from '../../../../src/datastore/backup-info.js';
import { newManifest } from '../../../../src/datastore/manifest.js';
import type { OperationRecord } from '../../../../src/maintenance/operation-registry.js';
import { UserInfo } from '../../../../src/http/permissions.js';
import { datastoreAclPath, ownerChecked } from '../../../../src/api2/admin/datastore/access.js';
import { isBackupOwner } from '../../../../src/config/user-config.js';
import { oldestWriteStart } from '../../../../src/maintenance/oldest-writer.js';
import { needsVerify } from '../../../../src/api2/admin/datastore/verify.js';

test("a user owns the groups its API tokens own, but a token does not own its user's groups", () => {
  assert.equal(isBackupOwner('alice@pbs', 'alice@pbs'), true);
  assert.equal(isBackupOwner('alice@pbs!ci', 'alice@pbs'), true);
  assert.equal(isBackupOwner('alice@pbs', 'alice@pbs!ci'), false);
  assert.equal(isBackupOwner('alice@pbs!ci', 'alice@pbs!other'), false);
  assert.equal(isBackupOwner('bob@pbs', 'alice@pbs'), false);
});

test('namespace ACL paths put the namespace components under the store', () => {
  assert.equal(datastoreAclPath('s1'), '/datastore/s1');
  assert.equal(datastoreAclPath('s1', BackupNamespace.parse('a/b')), '/datastore/s1/a/b');
});

test('"A or B+owner": A gives full access, B owner-only access, neither a 403 naming both', () => {
  const users = {
    users: new Map([
      ['full@pbs', { userid: 'full@pbs' }],
      ['backup@pbs', { userid: 'backup@pbs' }],
      ['none@pbs', { userid: 'none@pbs' }],
    ]),
    tokens: new Map(),
  };
  const acl = new AclTree();
  acl.insert('/datastore/s1', 'full@pbs', 'DatastoreAudit', true);
  acl.insert('/datastore/s1/team', 'backup@pbs', 'DatastoreBackup', true);
  const info = new UserInfo(users as never, acl);
  const perm = ownerChecked({
    path: '/datastore/{store}/{ns}',
    full: ['Datastore.Audit'],
    owner: ['Datastore.Backup'],
  });
  const checkNamespaceAccess = (_: UserInfo, authId: string, store: string, ns?: string) =>
    perm.check({
      authId,
      userInfo: info,
      server: {} as never,
      params: { store },
      parameters: ns === undefined ? {} : { ns },
    });
  const ns = 'team';
  assert.equal(checkNamespaceAccess(info, 'full@pbs', 's1', ns).full, true);
  assert.equal(checkNamespaceAccess(info, 'backup@pbs', 's1', ns).full, false);
  assert.throws(
    () => checkNamespaceAccess(info, 'backup@pbs', 's1', undefined),
    (err: unknown) =>
      err instanceof ForbiddenError &&
      err.message === 'permission check failed - missing Datastore.Audit|Datastore.Backup on /datastore/s1',
  );
  assert.throws(() => checkNamespaceAccess(info, 'none@pbs', 's1', ns), ForbiddenError);
});

function op(id: number, cls: OperationRecord['class'], startedAt: number): OperationRecord {
  return { id, store: 's1', class: cls, kind: 'k', pid: 1, pstart: 1, startedAt };
}

test('GC takes the oldest ingest operation of any process as its writer bound, leaving out itself, reads and reclaims', async () => {
  const records = [op(1, 'read', 100), op(2, 'ingest', 500), op(3, 'ingest', 300), op(4, 'lookup', 50)];
  const backend = { list: async () => records };
  assert.equal(await oldestWriteStart(backend, 's1', 99), 300);
  assert.equal(await oldestWriteStart(backend, 's1', 3), 500, 'its own admission does not hold GC back');
  const onlyGc = { list: async () => [op(7, 'ingest', 10)] };
  assert.equal(await oldestWriteStart(onlyGc, 's1', 7), undefined);
  const prunes = { list: async () => [op(8, 'reclaim', 10), op(9, 'reclaim', 20)] };
  assert.equal(
    await oldestWriteStart(prunes, 's1', 9),
    undefined,
    'a prune inserts no chunk: it does not hold GC back',
  );
});

test('verify skips snapshots verified ok unless told otherwise or the verification is outdated', () => {
  const m = newManifest('vm', '100', 1717236000);
  assert.equal(needsVerify(m, true, undefined), true, 'never verified');
  const tenDaysAgo = Math.floor(Date.now() / 1000) - 10 * 86400;
  const upid = `UPID:node:00000001:00000001:00000001:${tenDaysAgo.toString(16).toUpperCase().padStart(8, '0')}:verify:s1:root@pam:`;
  m.unprotected.verify_state = { upid, state: 'ok' };
  assert.equal(needsVerify(m, true, undefined), false);
  assert.equal(needsVerify(m, false, undefined), true);
  assert.equal(needsVerify(m, true, 30), false, 'ten days is not outdated after 30');
  assert.equal(needsVerify(m, true, 5), true, 'but is after 5');
  m.unprotected.verify_state = { upid, state: 'failed' };
  assert.equal(needsVerify(m, true, undefined), true, 'a failed verification is always repeated');
});
