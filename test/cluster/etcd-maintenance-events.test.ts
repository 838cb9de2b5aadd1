/**
 * The cluster's maintenance history (etcd, issue 17) against the event log conformance suite, on
 * the shared 3-member test cluster: the two handles are two servers (their own clients, talking to
 * different members first). Then what only a cluster has: every server shows the same history,
 * with the node that made each change, and one server (the first to claim it) tells each event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { startWebhookListener, until } from '../helpers/notification-listeners.js';
import { notificationConfig } from '../../src/notifications/notification-config.js';
import { Notifier } from '../../src/notifications/notifier.js';
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

test("two servers tailing the cluster's history send one notification per event", async () => {
  const { log, other, cleanup } = await twoServers('notify');
  const http = await startWebhookListener();
  const configDir = mkdtempSync(join(tmpdir(), 'stowage-cluster-notify-'));
  await notificationConfig(configDir).update((m) => {
    m.set('hook', {
      type: 'webhook',
      name: 'hook',
      props: { url: `${http.url}/hook`, method: 'post' },
      priv: {},
    });
    m.set('all', { type: 'matcher', name: 'all', props: { target: ['hook'] }, priv: {} });
  });
  const notifiers = [log, other].map((events) => new Notifier({ configDir, events, pollMs: 50 }));
  try {
    for (const n of notifiers) n.start();
    await new Promise((r) => setTimeout(r, 300)); // both have read where the history stands
    const first = await log.append({ store: 's1', type: 'mode-set', source: 'operator', to: 'read-only' });
    const second = await other.append({ store: 's1', type: 'mode-cleared', source: 'operator', to: 'none' });
    await until('both notifications', () => (http.received.length >= 2 ? true : undefined));
    await new Promise((r) => setTimeout(r, 500)); // a duplicate would have come by now
    assert.equal(http.received.length, 2, http.received.map((r) => r.body).join('\n'));
    assert.deepEqual(
      http.received.map((r) => (JSON.parse(r.body) as { fields?: { event?: string } }).fields?.event).sort(),
      [first.type, second.type].sort(),
    );
  } finally {
    for (const n of notifiers) await n.close();
    await http.close();
    rmSync(configDir, { recursive: true, force: true });
    await cleanup();
  }
});
