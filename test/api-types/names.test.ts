import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '../../src/errors.js';
import {
  backupTimeFromString,
  backupTimeToString,
  parseAuthid,
  parseBackupType,
  parseNamespace,
  parseUserid,
  validateBackupEpoch,
  validateBackupId,
  validateDatastoreName,
  validateRealm,
  validateTokenName,
} from '../../src/api-types/names.js';

/** Assert `fn` throws a BadRequestError whose message names `param` and quotes the value. */
function refuses(fn: () => unknown, param: string, label: string): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof BadRequestError, `${label}: expected BadRequestError, got ${String(err)}`);
      assert.equal(err.status, 400);
      assert.ok(err.message.startsWith(`invalid ${param} '`), `${label}: message '${err.message}'`);
      return true;
    },
    label,
  );
}

const TRAVERSAL = [
  '..',
  '.',
  '../etc',
  'x/../y',
  'a/b',
  '/abs',
  'a\0b',
  '.hidden',
  '',
  ' x',
  'x y',
  'a\nb',
  '-x',
];

test('backup ids accept PBS ids and refuse every traversal attempt', () => {
  for (const ok of ['100', 'web01', 'web01.example.com', 'a_b-c.d', '_x', 'A', '9..9']) {
    assert.equal(validateBackupId(ok), ok);
  }
  for (const bad of TRAVERSAL) refuses(() => validateBackupId(bad), 'backup-id', JSON.stringify(bad));
  refuses(() => validateBackupId(42), 'backup-id', 'a number');
});

test('the refusal message names the parameter, quotes the value and shows the pattern', () => {
  assert.throws(() => validateBackupId('x/../y'), {
    message: "invalid backup-id 'x/../y': must match [A-Za-z0-9_][A-Za-z0-9._\\-]*",
  });
  assert.throws(() => validateBackupId('a\0b', 'id'), { message: /^invalid id 'a\\x00b'/ });
});

test('backup types are exactly host, vm and ct', () => {
  for (const t of ['host', 'vm', 'ct']) assert.equal(parseBackupType(t), t);
  for (const bad of ['VM', 'lxc', 'vm ', '', 'host/..', 'other']) {
    refuses(() => parseBackupType(bad), 'backup-type', JSON.stringify(bad));
  }
});

test('backup times convert between epoch and RFC 3339 UTC with second resolution', () => {
  assert.equal(backupTimeToString(1593179765), '2020-06-26T13:56:05Z');
  assert.equal(backupTimeFromString('2020-06-26T13:56:05Z'), 1593179765);
  assert.equal(backupTimeToString(1), '1970-01-01T00:00:01Z');
  assert.equal(backupTimeFromString('9999-12-31T23:59:59Z'), 253402300799);
  for (const t of [1, 86399, 951782400 /* 2000-02-29 */, 1718000000, 253402300799]) {
    assert.equal(backupTimeFromString(backupTimeToString(t)), t);
  }
});

test('backup time strings that are not exact UTC seconds or not real dates are refused', () => {
  for (const bad of [
    '2020-06-26T13:56:05',
    '2020-06-26T13:56:05.000Z',
    '2020-06-26T13:56:05+02:00',
    '2020-06-26 13:56:05Z',
    '2023-02-29T00:00:00Z',
    '2024-02-30T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-01-01T24:00:00Z',
    '2024-01-01T00:60:00Z',
    '1970-01-01T00:00:00Z',
    '../2020-06-26T13:56:05Z',
  ]) {
    refuses(() => backupTimeFromString(bad), 'backup-time', bad);
  }
  for (const bad of [0, -1, 1.5, Number.NaN, 253402300800]) {
    refuses(() => validateBackupEpoch(bad), 'backup-time', String(bad));
    refuses(() => backupTimeToString(bad), 'backup-time', String(bad));
  }
});

test('namespaces parse from a/b/c and enforce safe-id components, depth 7 and length 256', () => {
  assert.deepEqual(parseNamespace(''), []);
  assert.deepEqual(parseNamespace('a'), ['a']);
  assert.deepEqual(parseNamespace('site1/cluster.a/pve_1'), ['site1', 'cluster.a', 'pve_1']);
  assert.deepEqual(parseNamespace('1/2/3/4/5/6/7'), ['1', '2', '3', '4', '5', '6', '7']);
  refuses(() => parseNamespace('1/2/3/4/5/6/7/8'), 'ns', 'depth 8');
  const long = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(64)].join('/'); // 256
  assert.equal(long.length, 256);
  assert.equal(parseNamespace(long).length, 4);
  refuses(() => parseNamespace(`${long}x`), 'ns', 'length 257');
  for (const bad of ['/', 'a/', '/a', 'a//b', 'a/../b', '..', 'a/.', '.ns', 'a b', 'a\0', 'a\\b']) {
    refuses(() => parseNamespace(bad), 'ns', JSON.stringify(bad));
  }
});

test('datastore names are safe-ids of 3 to 32 characters', () => {
  for (const ok of ['abc', 'store1', 'backup_disk-2.old', 'x'.repeat(32)])
    assert.equal(validateDatastoreName(ok), ok);
  for (const bad of ['ab', 'x'.repeat(33), '../x', '.abc', 'a/bc', 'abc\0', 'ab c', '']) {
    refuses(() => validateDatastoreName(bad), 'store', JSON.stringify(bad));
  }
  refuses(() => validateDatastoreName('a/b', 'name'), 'name', 'custom parameter name');
});

test('user ids are user@realm with PBS user-name characters and a safe-id realm', () => {
  assert.deepEqual(parseUserid('root@pam'), { userid: 'root@pam', name: 'root', realm: 'pam' });
  // the split is at the last '@', so a user name may contain '@' (e-mail style)
  assert.deepEqual(parseUserid('alice@example.com@pbs'), {
    userid: 'alice@example.com@pbs',
    name: 'alice@example.com',
    realm: 'pbs',
  });
  assert.equal(parseUserid('jürgen@pbs').name, 'jürgen');
  for (const bad of [
    'root',
    '@pam',
    'root@',
    'ro ot@pam',
    'ro:ot@pam',
    'ro/ot@pam',
    'ro\tot@pam',
    'root@pa',
    'root@p/m',
  ]) {
    refuses(() => parseUserid(bad), 'userid', JSON.stringify(bad));
  }
  refuses(() => parseUserid(`${'u'.repeat(60)}@pbs1`), 'userid', '65 characters');
  refuses(() => parseUserid('root@pam!tok'), 'userid', 'a token id is not a user id');
});

test('auth ids are user ids with an optional !token safe-id', () => {
  assert.deepEqual(parseAuthid('root@pam'), {
    userid: 'root@pam',
    name: 'root',
    realm: 'pam',
    authid: 'root@pam',
  });
  assert.deepEqual(parseAuthid('backup@pbs!nightly-1'), {
    userid: 'backup@pbs',
    name: 'backup',
    realm: 'pbs',
    authid: 'backup@pbs!nightly-1',
    tokenName: 'nightly-1',
  });
  // a '!' before the '@' belongs to the user name, not a token
  assert.equal(parseAuthid('we!rd@pbs').tokenName, undefined);
  for (const bad of [
    'root@pam!',
    'root@pam!.x',
    'root@pam!a/b',
    'root@pam!a b',
    'root!tok',
    'x'.repeat(65),
  ]) {
    refuses(() => parseAuthid(bad), 'auth-id', JSON.stringify(bad));
  }
});

test('realms and token names on their own follow the PBS schemas', () => {
  assert.equal(validateRealm('pam'), 'pam');
  refuses(() => validateRealm('ad'), 'realm', 'too short');
  refuses(() => validateRealm('r'.repeat(33)), 'realm', 'too long');
  assert.equal(validateTokenName('nightly'), 'nightly');
  refuses(() => validateTokenName('ab'), 'token-name', 'too short');
  refuses(() => validateTokenName('../x'), 'token-name', 'traversal');
});
