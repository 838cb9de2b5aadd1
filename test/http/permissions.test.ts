import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAclConfig, parseAclConfig, ROLES, aclPathError } from '../../src/config/acl-config.js';
import { parseUserConfig } from '../../src/config/user-config.js';
import { ForbiddenError } from '../../src/errors.js';
import { UserInfo } from '../../src/http/permissions.js';

const users = parseUserConfig(
  [
    'user: root@pam',
    'user: alice@pbs',
    'user: bob@pbs',
    'user: carol@pbs\n\tenable false',
    'user: dave@pbs\n\texpire 1000',
    'token: alice@pbs!backup',
    'token: alice@pbs!off\n\tenable false',
  ].join('\n\n') + '\n',
);

function rolesOf(acl: string, authId: string, path: string): string {
  return [...parseAclConfig(acl).roles(authId, path).keys()].sort().join(',');
}

test('roles propagate down the tree and a deeper entry replaces the inherited ones (PBS test_roles_1)', () => {
  const acl =
    'acl:1:/storage:user1@pbs:Admin\nacl:1:/storage/store1:user1@pbs:DatastoreBackup\nacl:1:/storage/store2:user2@pbs:DatastoreBackup\n';
  assert.equal(rolesOf(acl, 'user1@pbs', '/'), '');
  assert.equal(rolesOf(acl, 'user1@pbs', '/storage'), 'Admin');
  assert.equal(rolesOf(acl, 'user1@pbs', '/storage/store1'), 'DatastoreBackup');
  assert.equal(rolesOf(acl, 'user1@pbs', '/storage/store2'), 'Admin');
  assert.equal(rolesOf(acl, 'user2@pbs', '/storage'), '');
  assert.equal(rolesOf(acl, 'user2@pbs', '/storage/store2'), 'DatastoreBackup');
});

test('NoAccess masks inherited roles, and only below when it propagates (PBS test_role_no_access)', () => {
  const propagating =
    'acl:1:/:user1@pbs:Admin\nacl:1:/storage:user1@pbs:NoAccess\nacl:1:/storage/store1:user1@pbs:DatastoreBackup\n';
  assert.equal(rolesOf(propagating, 'user1@pbs', '/storage'), 'NoAccess');
  assert.equal(rolesOf(propagating, 'user1@pbs', '/storage/store1'), 'DatastoreBackup');
  assert.equal(rolesOf(propagating, 'user1@pbs', '/storage/store2'), 'NoAccess');
  assert.equal(rolesOf(propagating, 'user1@pbs', '/system'), 'Admin');
  const local = 'acl:1:/:user1@pbs:Admin\nacl:0:/storage:user1@pbs:NoAccess\n';
  assert.equal(rolesOf(local, 'user1@pbs', '/storage'), 'NoAccess');
  assert.equal(rolesOf(local, 'user1@pbs', '/storage/store2'), 'Admin');
});

test('a non-propagating entry applies to its own path only', () => {
  const acl = 'acl:0:/datastore:alice@pbs:DatastoreAudit\n';
  assert.equal(rolesOf(acl, 'alice@pbs', '/datastore'), 'DatastoreAudit');
  assert.equal(rolesOf(acl, 'alice@pbs', '/datastore/s1'), '');
});

test('acl.cfg is written as PBS writes it: one line per ugid list and role set, root@pam left out', () => {
  const tree = parseAclConfig(
    'acl:0:/store/store2:user1@pbs:Admin\nacl:0:/store/store2:user2@pbs:Admin\nacl:0:/store/store2:user1@pbs:DatastoreBackup\nacl:0:/store/store2:user2@pbs:DatastoreBackup\nacl:1:/:root@pam:Admin\n',
  );
  assert.equal(formatAclConfig(tree), 'acl:0:/store/store2:user1@pbs,user2@pbs:Admin,DatastoreBackup\n');
  const mixed =
    'acl:0:/:alice@pbs:Audit\nacl:1:/:alice@pbs!backup:DatastoreBackup\nacl:1:/datastore/s1:alice@pbs:DatastoreAdmin\n';
  assert.equal(formatAclConfig(parseAclConfig(mixed)), mixed);
});

test('an unknown role or a malformed line in acl.cfg is a configuration error naming the line', () => {
  assert.throws(
    () => parseAclConfig('acl:1:/:alice@pbs:Admin\nacl:1:/:alice@pbs:Superhero\n'),
    /line 2 - unknown role 'Superhero'/,
  );
  assert.throws(() => parseAclConfig('acl:2:/:alice@pbs:Admin\n'), /propagate flag/);
  assert.throws(() => parseAclConfig('acl:1:/:alice@pbs\n'), /wrong number of items/);
});

test('roles carry exactly the privileges PBS gives them', () => {
  assert.deepEqual([...ROLES.DatastoreBackup!], ['Datastore.Backup']);
  assert.deepEqual([...ROLES.DatastorePowerUser!].sort(), ['Datastore.Backup', 'Datastore.Prune']);
  assert.deepEqual([...ROLES.DatastoreReader!].sort(), [
    'Datastore.Audit',
    'Datastore.Read',
    'Datastore.Verify',
  ]);
  assert.deepEqual([...ROLES.Audit!].sort(), ['Datastore.Audit', 'Sys.Audit']);
  assert.equal(ROLES.Admin!.length, 23);
  assert.deepEqual([...ROLES.NoAccess!], []);
});

test('root@pam holds every privilege everywhere without any ACL entry', () => {
  const info = new UserInfo(users, parseAclConfig(''));
  assert.equal(info.userPrivs('root@pam', '/datastore/x').size, 23);
  assert.equal(info.hasPrivs('root@pam', '/system', ['Sys.PowerManagement']), true);
});

test("an API token gets its own ACL privileges intersected with its owner's", () => {
  const acl = parseAclConfig(
    'acl:1:/datastore:alice@pbs:DatastoreBackup\nacl:1:/datastore:alice@pbs!backup:DatastoreAdmin\nacl:1:/system:alice@pbs!backup:Audit\n',
  );
  const info = new UserInfo(users, acl);
  assert.deepEqual([...info.userPrivs('alice@pbs!backup', '/datastore/s1')], ['Datastore.Backup']);
  assert.deepEqual(
    [...info.userPrivs('alice@pbs!backup', '/system')],
    [],
    'alice herself has nothing on /system',
  );
  assert.deepEqual([...info.userPrivs('alice@pbs', '/datastore/s1')], ['Datastore.Backup']);
});

test('a token without ACL entries of its own has no privileges even when its owner has', () => {
  const info = new UserInfo(users, parseAclConfig('acl:1:/:alice@pbs:Admin\n'));
  assert.equal(info.userPrivs('alice@pbs', '/').size, 23);
  assert.equal(info.userPrivs('alice@pbs!backup', '/').size, 0);
});

test('disabled or expired users, disabled tokens and unknown ids hold no privileges', () => {
  const info = new UserInfo(
    users,
    parseAclConfig('acl:1:/:carol@pbs,dave@pbs,alice@pbs!off,ghost@pbs:Admin\n'),
  );
  for (const id of ['carol@pbs', 'dave@pbs', 'alice@pbs!off', 'ghost@pbs']) {
    assert.equal(info.userPrivs(id, '/').size, 0, id);
  }
});

test('checkPrivs names the missing privilege and the path in a ForbiddenError', () => {
  const info = new UserInfo(users, parseAclConfig('acl:1:/datastore:bob@pbs:DatastoreBackup\n'));
  assert.doesNotThrow(() => info.checkPrivs('bob@pbs', '/datastore/s1', ['Datastore.Backup']));
  assert.throws(
    () => info.checkPrivs('bob@pbs', '/datastore/s1', ['Datastore.Audit']),
    (err: unknown) =>
      err instanceof ForbiddenError &&
      err.status === 403 &&
      err.message === 'permission check failed - missing Datastore.Audit on /datastore/s1',
  );
  assert.doesNotThrow(() =>
    info.checkPrivs('bob@pbs', '/datastore/s1', ['Datastore.Audit', 'Datastore.Backup'], { partial: true }),
  );
  assert.throws(
    () =>
      info.checkPrivs('bob@pbs', '/datastore/s1', ['Datastore.Audit', 'Datastore.Read'], { partial: true }),
    /missing Datastore.Audit\|Datastore.Read on \/datastore\/s1/,
  );
});

test('anyPrivsBelow finds a privilege granted deeper in the tree', () => {
  const info = new UserInfo(users, parseAclConfig('acl:0:/datastore/s2:bob@pbs:DatastoreAudit\n'));
  assert.equal(info.anyPrivsBelow('bob@pbs', '/datastore', ['Datastore.Audit']), true);
  assert.equal(info.anyPrivsBelow('bob@pbs', '/datastore', ['Datastore.Modify']), false);
  assert.equal(info.anyPrivsBelow('alice@pbs', '/datastore', ['Datastore.Audit']), false);
});

test('ACL paths are limited to the subtrees PBS knows', () => {
  assert.equal(aclPathError('/'), undefined);
  assert.equal(aclPathError('/datastore/s1'), undefined);
  assert.equal(aclPathError('/system/tasks'), undefined);
  assert.equal(aclPathError('/access/acl'), undefined);
  assert.match(aclPathError('/nonsense')!, /invalid acl path/);
  assert.match(aclPathError('/system/tasks/x')!, /invalid acl path/);
  assert.match(aclPathError('datastore')!, /invalid acl path/);
});

test('privsDetails tells which privileges propagate: a non-propagating role counts only on its own path', () => {
  const acl = parseAclConfig(
    [
      'acl:0:/datastore:alice@pbs:DatastoreAudit',
      'acl:1:/datastore:alice@pbs:DatastoreBackup',
      'acl:1:/datastore:alice@pbs!backup:DatastoreAdmin',
      'acl:0:/system:alice@pbs!backup:Audit',
    ].join('\n') + '\n',
  );
  const info = new UserInfo(users, acl);
  assert.deepEqual(
    [...info.privsDetails('alice@pbs', '/datastore')],
    [
      ['Datastore.Audit', false],
      ['Datastore.Backup', true],
    ],
  );
  assert.deepEqual([...info.privsDetails('alice@pbs', '/datastore/s1')], [['Datastore.Backup', true]]);
  // the token keeps what its owner holds, propagating only where both propagate
  assert.deepEqual(
    [...info.privsDetails('alice@pbs!backup', '/datastore')],
    [
      ['Datastore.Audit', false],
      ['Datastore.Backup', true],
    ],
  );
  assert.deepEqual([...info.privsDetails('alice@pbs!backup', '/system')], []);
  const root = info.privsDetails('root@pam', '/anything');
  assert.equal(root.size, 23);
  assert.ok([...root.values()].every(Boolean));
});

test('nodePaths lists every path of the ACL tree, intermediate ones included', () => {
  const acl = parseAclConfig(
    'acl:1:/datastore/s1/ns:alice@pbs:DatastoreAudit\nacl:1:/system:bob@pbs:Audit\n',
  );
  assert.deepEqual(acl.nodePaths().sort(), ['/datastore', '/datastore/s1', '/datastore/s1/ns', '/system']);
});
