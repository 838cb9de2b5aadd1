/**
 * The etcd admission backend (issue 17) against the admission conformance suite, on the shared
 * 3-member test cluster: the test's backend and each holder process (a stand-in for another
 * Stowage server, with its own backend and lease) talk to different members. The suite's race
 * test is the issue's "one server flips modes while two others admit in a loop", proven by
 * revisions. Then what only a cluster has: lease expiry, etcd out of reach, its lock service.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { testEtcd, uniqueEtcdPrefix, type EtcdTestTarget } from '../helpers/etcd-cluster.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { admissionConformance } from '../suites/admission-conformance.js';
import { EtcdAdmissionBackend } from '../../src/maintenance/etcd-admission-backend.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/etcd-operation-holder.ts', import.meta.url));

/** A backend and holders on a fresh prefix of the shared cluster (the history is the cluster's too). */
function bed(etcd: EtcdTestTarget, label: string, opts: { leaseTtlSeconds?: number } = {}) {
  const prefix = uniqueEtcdPrefix(label);
  const backend = new EtcdAdmissionBackend({
    endpoints: etcd.endpoints,
    prefix,
    node: 'test-node',
    ...opts,
  });
  let holders = 0;
  return {
    backend,
    createStore: (name: string) => backend.defineStore({ name, path: `/srv/stowage/${name}` }),
    /** Holder n talks to member n+1 first (the client fails over to the others). */
    startHolder: (env: Record<string, string> = {}) => {
      const n = ++holders;
      const endpoints = etcd.endpoints.map((_, i) => etcd.endpoints[(i + n) % etcd.endpoints.length]!);
      return new HolderProcess({
        fixture: FIXTURE,
        env: {
          STOWAGE_TEST_ETCD_ENDPOINTS: endpoints.join(','),
          STOWAGE_TEST_ETCD_PREFIX: prefix,
          STOWAGE_TEST_NODE: `node${n}`,
          ...env,
        },
      }).start();
    },
    async cleanup() {
      await backend.client.delete().prefix(prefix);
      backend.close();
    },
  };
}

admissionConformance('etcd (3 members, one server per holder)', async () => {
  const b = bed(await testEtcd(), 'conformance');
  return { ...b, startHolder: () => b.startHolder() };
});

async function refusedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('etcd admission backend: what a cluster adds', () => {
  let etcd: EtcdTestTarget;
  let b: ReturnType<typeof bed>;
  before(async () => {
    etcd = await testEtcd();
    // etcd's smallest lease TTL is about 2 s with the default election timeout
    b = bed(etcd, 'cluster', { leaseTtlSeconds: 2 });
  });
  after(() => b.cleanup());

  test('records carry the node; a server that stops answering loses its operations when its lease expires', async () => {
    await b.createStore('lease');
    const server = await b.startHolder({ STOWAGE_TEST_LEASE_TTL: '2', STOWAGE_TEST_NODE: 'node-hung' });
    try {
      const id = await server.hold('lease', 'ingest', 'backup', 'host/web01');
      const [op] = await b.backend.list('lease');
      assert.deepEqual([op?.id, op?.node, op?.pid], [id, 'node-hung', server.pid]);
      // frozen, not dead: its pid lives on, but it renews nothing (a hung or cut-off server)
      process.kill(server.pid, 'SIGSTOP');
      const watch = b.backend.watch('lease');
      const t0 = Date.now();
      try {
        while ((await b.backend.counts('lease')).write > 0) {
          assert.ok(Date.now() - t0 < 8_000, 'the operation outlived its lease by far');
          await watch.changed();
        }
      } finally {
        watch.close();
      }
      assert.equal(await b.backend.holderAlive(op!), false);
      assert.deepEqual(await b.backend.list('lease'), []);
    } finally {
      process.kill(server.pid, 'SIGCONT');
      await server.kill();
    }
  });

  test('a server that was stopped past its lease learns which operations it lost, and admits again under a new lease', async () => {
    await b.createStore('relapse');
    const server = await b.startHolder({ STOWAGE_TEST_LEASE_TTL: '2', STOWAGE_TEST_NODE: 'node-back' });
    try {
      const id = await server.hold('relapse', 'ingest', 'backup', 'host/web02');
      process.kill(server.pid, 'SIGSTOP');
      const t0 = Date.now();
      while ((await b.backend.counts('relapse')).write > 0) {
        assert.ok(Date.now() - t0 < 8_000, 'the operation outlived its lease by far');
        await new Promise((r) => setTimeout(r, 100));
      }
      process.kill(server.pid, 'SIGCONT');
      // the server cannot know what changed while it did not count: it is told what it lost
      let lost: number[] = [];
      while (!lost.includes(id)) {
        assert.ok(Date.now() - t0 < 15_000, `no lease loss reported (${JSON.stringify(lost)})`);
        lost = (await server.send({ cmd: 'lease-lost' })).ids as number[];
        await new Promise((r) => setTimeout(r, 100));
      }
      const again = await server.hold('relapse', 'ingest', 'backup', 'host/web02');
      assert.ok(again > id);
      assert.deepEqual(
        (await b.backend.list('relapse')).map((o) => [o.id, o.node]),
        [[again, 'node-back']],
      );
    } finally {
      process.kill(server.pid, 'SIGCONT');
      await server.kill();
    }
  });

  test('if-idle is checked at the moment of the change: an admission on another server between its look and its write refuses it', async () => {
    await b.createStore('idle-race');
    const other = await b.startHolder();
    try {
      let admitted: Promise<unknown> | undefined;
      const refused = b.backend.setMode(
        'idle-race',
        { type: 'offline' },
        {
          ifIdle: true,
          // runs after the change found the store idle and before it writes: the other server
          // admits a restore meanwhile (this process blocks, so only the other one can act)
          precondition: () => {
            if (admitted) return;
            admitted = other.send({ cmd: 'lookup', store: 'idle-race', op: 'read', kind: 'restore' });
            const until = Date.now() + 1_500;
            while (Date.now() < until) {
              /* busy: the other process admits in this time */
            }
          },
        },
      );
      await assert.rejects(
        refused,
        (err: { status: number; operations: Array<{ kind: string; pid: number }> }) => {
          assert.equal(err.status, 409);
          assert.deepEqual(
            err.operations.map((o) => [o.kind, o.pid]),
            [['restore', other.pid]],
          );
          return true;
        },
      );
      assert.equal(((await admitted) as { ok: boolean }).ok, true);
      assert.equal(await b.backend.mode('idle-race'), undefined);
    } finally {
      await other.kill();
    }
  });

  test('a server that cannot reach etcd refuses admissions, mode changes and reads with a 503 that says why', async () => {
    await b.createStore('cutoff');
    const cutOff = new EtcdAdmissionBackend({
      endpoints: [`http://127.0.0.1:${await refusedPort()}`],
      prefix: b.backend.prefix,
      node: 'cut-off',
      callTimeoutMs: 1_000,
    });
    try {
      const refusal = {
        code: 'MAINTENANCE',
        status: 503,
        message:
          /^datastore 'cutoff' is unavailable: the cluster's etcd cannot be reached \(.+\); nothing is admitted while the maintenance mode cannot be checked$/,
      };
      await assert.rejects(cutOff.admit('cutoff', 'read', { kind: 'restore' }), refusal);
      await assert.rejects(cutOff.setMode('cutoff', { type: 'offline' }), refusal);
      await assert.rejects(cutOff.counts('cutoff'), { status: 503 });
      // the servers that reach etcd go on as before
      const ok = await b.backend.admit('cutoff', 'read', { kind: 'restore' });
      await b.backend.release(ok.record.id);
    } finally {
      cutOff.client.close();
    }
  });

  test('the member a server talks to going down changes nothing: its operations keep counting, admissions and changes go on', async () => {
    await b.createStore('member-down');
    const before = await b.backend.admit('member-down', 'ingest', { kind: 'backup' });
    // m1 is the test backend's first endpoint
    await etcd.stopMember('m1');
    try {
      // longer than the 2 s lease: it is kept alive through the other members
      await new Promise((r) => setTimeout(r, 2_500));
      assert.deepEqual(
        (await b.backend.list('member-down')).map((o) => o.id),
        [before.record.id],
      );
      const a = await b.backend.admit('member-down', 'ingest', { kind: 'backup' });
      const change = await b.backend.setMode('member-down', { type: 'read-only' });
      assert.deepEqual(
        change.conflicting.map((o) => o.id),
        [before.record.id, a.record.id],
      );
      await assert.rejects(b.backend.admit('member-down', 'ingest', { kind: 'backup' }), {
        code: 'MAINTENANCE',
      });
      await b.backend.release(a.record.id);
      await b.backend.release(before.record.id);
    } finally {
      await etcd.startMember('m1');
    }
  });
});
