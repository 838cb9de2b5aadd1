/**
 * The test etcd cluster itself (test/helpers/etcd-cluster.ts): three members that agree, and that
 * keep serving writes with one member stopped, as the cluster tests assume.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';

test('the three members serve one keyspace, and two of them go on writing while the third is stopped', async () => {
  const etcd = await testEtcd();
  assert.equal(etcd.endpoints.length, 3);
  const prefix = uniqueEtcdPrefix('cluster-smoke');
  const [c1, c2, c3] = etcd.endpoints.map((h) => new Etcd3({ hosts: h }));
  try {
    // m2 and m3 only until m1 is ours to stop: another test file may have it stopped now
    await c2!.put(`${prefix}a`).value('1');
    assert.equal(await c3!.get(`${prefix}a`).string(), '1');
    await etcd.stopMember('m1');
    try {
      await c2!.put(`${prefix}b`).value('2');
      assert.equal(await c3!.get(`${prefix}b`).string(), '2');
    } finally {
      await etcd.startMember('m1');
    }
    // the restarted member caught up with what was written while it was away (asked again while
    // another test's outage of m1 may have begun since)
    for (const end = Date.now() + 60_000; ;) {
      try {
        assert.equal(await c1!.get(`${prefix}b`).string(), '2');
        break;
      } catch (err) {
        if (Date.now() > end) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    await c2!.delete().prefix(prefix);
  } finally {
    for (const c of [c1, c2, c3]) c?.close();
  }
});
