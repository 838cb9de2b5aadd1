/**
 * Cluster mode's datastore configuration (issue 17): two servers' datastore access (as
 * `stowage server --cluster` opens it) on one prefix of the shared 3-member etcd. A datastore
 * created, changed or removed through one is what the other serves; a maintenance mode set through
 * one refuses on the other; two changes at once cannot lose one; an admin process of the same
 * instance follows the server's recorded cluster settings.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';
import {
  openInstanceDatastores,
  type InstanceDatastores,
} from '../../src/maintenance/open-datastore-access.js';
import { createDatastore, prepareDatastoreCreation } from '../../src/maintenance/create-datastore.js';
import { updateDatastore } from '../../src/maintenance/update-datastore.js';
import { removeDatastore } from '../../src/maintenance/remove-datastore.js';
import { writeInstanceClusterSettings, type ClusterSettings } from '../../src/cluster/cluster-settings.js';
import type { StowagePaths } from '../../src/config/paths.js';

const info = { kind: 'backup', detail: 'host/web01', authId: 'root@pam' };

async function eventually(what: string, check: () => boolean, timeoutMs = 2_000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    assert.ok(Date.now() - t0 < timeoutMs, `${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cluster mode: one datastore configuration for every server', () => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-cluster-config-'));
  const shared = join(root, 'shared');
  let settings: (node: string) => ClusterSettings;
  let a: InstanceDatastores;
  let b: InstanceDatastores;
  const pathsOf = (node: string): StowagePaths => ({
    configDir: join(root, node, 'etc'),
    dataDir: join(root, node),
    runDir: join(root, node, 'run'),
  });

  before(async () => {
    const etcd = await testEtcd();
    const prefix = uniqueEtcdPrefix('config');
    settings = (node) => ({ endpoints: etcd.endpoints, prefix, node, leaseTtlSeconds: 3 });
    a = await openInstanceDatastores(pathsOf('a'), { cluster: settings('a') });
    b = await openInstanceDatastores(pathsOf('b'), { cluster: settings('b') });
  });
  after(async () => {
    await a.cluster?.client.delete().prefix(a.cluster.settings.prefix);
    a.access.close();
    b.access.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('a datastore created through one server is served by the other; a mode set on the other refuses on the first', async () => {
    assert.equal(a.cluster?.node, 'a');
    const prepared = await prepareDatastoreCreation(a.access, { name: 'store1', path: shared, set: {} });
    await createDatastore(a.access, prepared);
    // its own change at once, the other's through the watch
    assert.ok(a.access.config.read().stores.has('store1'));
    await eventually('b sees store1', () => b.access.config.read().stores.has('store1'));
    // nothing of it in either host's datastore.cfg
    assert.equal(a.access.config.configDir, pathsOf('a').configDir);

    const op = await a.access.lookupDatastore('store1', 'ingest', info);
    assert.deepEqual(
      (await b.access.backend.list('store1')).map((o) => [o.id, o.node]),
      [[op.record.id, 'a']],
    );
    const { conflicting } = await updateDatastore(b.access, 'store1', {
      set: {},
      'maintenance-mode': 'read-only,message="disk swap"',
    });
    assert.equal(conflicting, 1);
    await assert.rejects(a.access.lookupDatastore('store1', 'ingest', info), {
      message: "datastore 'store1' is unavailable: read-only maintenance mode: disk swap",
    });
    await eventually('a shows the mode', () =>
      /read-only/.test(a.access.config.read().stores.get('store1')?.['maintenance-mode'] ?? ''),
    );
    await op.release();
    await updateDatastore(a.access, 'store1', { set: {}, delete: 'maintenance-mode' });
    const again = await b.access.lookupDatastore('store1', 'read', info);
    await again.release();
  });

  test('a change made on a stale digest is refused; one made meanwhile is kept', async () => {
    await eventually('b has store1', () => b.access.config.read().stores.has('store1'));
    const { digest } = b.access.config.read();
    assert.equal(a.access.config.read().digest, digest);
    await updateDatastore(a.access, 'store1', { set: { comment: 'by a' } });
    await assert.rejects(
      b.access.config.update((s) => void (s.get('store1')!.comment = 'by b'), { digest }),
      { code: 'CONFIG_MODIFIED' },
    );
    await eventually(
      'b sees the comment',
      () => b.access.config.read().stores.get('store1')?.comment === 'by a',
    );
    // the same change without a digest applies on top of the other's
    await b.access.config.update((s) => void (s.get('store1')!['gc-schedule'] = 'daily'));
    const stored = a.access.datastoreConfig('store1');
    await eventually('a sees both', () => a.access.datastoreConfig('store1')['gc-schedule'] === 'daily');
    assert.equal(stored.comment, 'by a');
  });

  test("an admin process of an instance follows its server's cluster settings (cluster.json)", async () => {
    const paths = pathsOf('a');
    writeInstanceClusterSettings(paths.configDir, settings('a'));
    const admin = await openInstanceDatastores(paths);
    try {
      assert.equal(admin.cluster?.node, 'a');
      assert.ok(admin.access.config.read().stores.has('store1'));
    } finally {
      admin.access.close();
    }
    writeInstanceClusterSettings(paths.configDir, undefined);
    const local = await openInstanceDatastores(paths);
    try {
      assert.equal(local.cluster, undefined);
      assert.equal(local.access.config.read().stores.size, 0);
    } finally {
      local.access.close();
    }
  });

  test('a datastore removed through one server is gone from the other', async () => {
    await removeDatastore(b.access, 'store1');
    assert.equal(b.access.config.read().stores.has('store1'), false);
    await eventually('a no longer has store1', () => !a.access.config.read().stores.has('store1'));
    await assert.rejects(a.access.lookupDatastore('store1', 'read', info), {
      message: "datastore 'store1' does not exist",
    });
  });
});
