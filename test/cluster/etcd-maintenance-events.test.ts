/**
 * The cluster's maintenance history (etcd, issue 17) against the event log conformance suite, on
 * the shared 3-member test cluster: the two handles are two servers (their own clients, talking to
 * different members first). Then what only a cluster has: every server shows the same history,
 * with the node that made each change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';
import { EtcdMaintenanceEventLog } from '../../src/maintenance/etcd-maintenance-events.js';
import { EtcdAdmissionBackend } from '../../src/maintenance/etcd-admission-backend.js';
import { maintenanceEventLogConformance } from '../suites/maintenance-event-log-conformance.js';

/** Two servers' logs on a fresh prefix, each with its own client, first member differing. */
async function twoServers(label: string, keep?: number) {
  const etcd = await testEtcd();
  const prefix = uniqueEtcdPrefix(label);
  const rotated = [...etcd.endpoints.slice(1), etcd.endpoints[0]!];
  const open = (node: string, endpoints: string[]) =>
    new EtcdMaintenanceEventLog({
      client: new Etcd3({ hosts: endpoints }),
      prefix,
      node,
      ownsClient: true,
      ...(keep !== undefined && { keep }),
    });
  const log = open('node-a', etcd.endpoints);
  const other = open('node-b', rotated);
  return {
    log,
    other,
    prefix,
    async cleanup() {
      const client = new Etcd3({ hosts: etcd.endpoints });
      await client.delete().prefix(prefix);
      client.close();
      log.close();
      other.close();
    },
  };
}

maintenanceEventLogConformance('etcd (3 members, two servers)', ({ keep }) => twoServers('events', keep));

test('every server of a cluster shows the same history of a store, with the node that made each change', async () => {
  const etcd = await testEtcd();
  const prefix = uniqueEtcdPrefix('shared-history');
  const servers = ['web-a', 'web-b'].map(
    (node) => new EtcdAdmissionBackend({ endpoints: etcd.endpoints, prefix, node, leaseTtlSeconds: 3 }),
  ) as [EtcdAdmissionBackend, EtcdAdmissionBackend];
  const [a, b] = servers;
  try {
    await a.defineStore({ name: 'shared', path: '/srv/stowage/shared' });
    await a.setMode('shared', { type: 'read-only', message: 'disk swap' }, { authId: 'alice@pbs' });
    await b.setHold('shared', 'low-space', { type: 'sealed', message: 'low space: 4% free' });
    await b.setMode('shared', undefined, { authId: 'bob@pbs' });
    const seen = await Promise.all(servers.map((s) => s.events.history('shared')));
    const rows = (i: number) => seen[i]!.map((e) => [e.type, e.node, e.authId ?? e.source]);
    assert.deepEqual(rows(0), [
      ['mode-cleared', 'web-b', 'bob@pbs'],
      ['drained', 'web-b', 'low-space'],
      ['hold-engaged', 'web-b', 'low-space'],
      ['drained', 'web-a', 'operator'],
      ['mode-set', 'web-a', 'alice@pbs'],
    ]);
    assert.deepEqual(seen[1], seen[0], 'both servers answer the same history, ids included');
  } finally {
    await a.client.delete().prefix(prefix);
    for (const s of servers) s.close();
  }
});
