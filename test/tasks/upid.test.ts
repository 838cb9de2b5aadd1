import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeWorkerId, formatUpid, parseUpid, unescapeWorkerId } from '../../src/tasks/upid.js';
import { BadRequestError } from '../../src/errors.js';

test("PBS's documented example UPID parses into its fields and formats back identically", () => {
  const text = 'UPID:elsa:00004F37:0039E469:00000000:5CA78B83:garbage_collection::root@pam:';
  const u = parseUpid(text);
  assert.deepEqual(u, {
    node: 'elsa',
    pid: 0x4f37,
    pstart: 0x39e469,
    taskId: 0,
    starttime: 0x5ca78b83,
    workerType: 'garbage_collection',
    workerId: undefined,
    authId: 'root@pam',
  });
  assert.equal(formatUpid(u), text);
});

test('a worker id with slashes and special characters is escaped systemd-style and round-trips', () => {
  assert.equal(escapeWorkerId('store1:host/web01'), 'store1\\x3ahost-web01');
  assert.equal(escapeWorkerId('.hidden'), '\\x2ehidden');
  assert.equal(unescapeWorkerId('store1\\x3ahost-web01'), 'store1:host/web01');
  const u = {
    node: 'pbs1',
    pid: 1234,
    pstart: 0x1_0000_0001, // more than 8 hex digits after 497 days of uptime
    taskId: 7,
    starttime: 1_700_000_000,
    workerType: 'backup',
    workerId: 'store1:host/web01',
    authId: 'alice@pbs!client',
  };
  const text = formatUpid(u);
  assert.equal(
    text,
    'UPID:pbs1:000004D2:100000001:00000007:6553F100:backup:store1\\x3ahost-web01:alice@pbs!client:',
  );
  assert.deepEqual(parseUpid(text), u);
});

test('a string that is not a UPID is a bad request', () => {
  for (const bad of [
    '',
    'UPID:',
    'UPID:node:1:2:3:4:t::root@pam:',
    'UPID:n:00000001:00000002:00000003:00000004:t::root@pam',
  ]) {
    assert.throws(() => parseUpid(bad), BadRequestError, bad);
  }
});
