/**
 * Cluster mode on etcd (issue 17): admissions per second through the etcd admission backend, with
 * one server and with three servers admitting at once, and how long a mode change takes to reach
 * the other servers: the change itself (one transaction), and the wake-up of a watch on another
 * server (what a drain wait or a UI push sees). A 3-member etcd cluster on loopback
 * (test/helpers/etcd-cluster.ts, --unsafe-no-fsync, so these are coordination costs, not disk
 * costs); the three "servers" are three backends with their own clients and leases in this one
 * process, each talking to a different member first.
 *
 *   node --import tsx bench/cluster-admission.ts [--ops 1000] [--changes 20]
 */
import { startEtcdCluster } from '../test/helpers/etcd-cluster.js';
import { EtcdAdmissionBackend } from '../src/maintenance/etcd-admission-backend.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1]!;
};
const OPS = Number(arg('ops', '1000'));
const CHANGES = Number(arg('changes', '20'));

async function admitLoop(server: EtcdAdmissionBackend, ops: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < ops; i++) {
    const a = await server.admit('bench', 'read', { kind: 'bench' });
    await server.release(a.record.id);
  }
  return (performance.now() - start) / 1000;
}

const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  const cluster = await startEtcdCluster();
  // an uncaught error skips the finally below: stop the members on exit too, or they outlive the bench
  process.once('exit', () => cluster.killSync());
  const servers = [0, 1, 2].map(
    (n) =>
      new EtcdAdmissionBackend({
        endpoints: cluster.endpoints.map((_, i) => cluster.endpoints[(i + n) % 3]!),
        prefix: '/bench/',
        node: `node${n + 1}`,
      }),
  );
  const [a, b] = servers as [EtcdAdmissionBackend, EtcdAdmissionBackend, EtcdAdmissionBackend];
  try {
    await a.defineStore({ name: 'bench', path: '/srv/bench' });
    await admitLoop(a, 100); // warm up: connections, lease
    await Promise.all(servers.map((s) => admitLoop(s, 20)));

    const one = OPS / (await admitLoop(a, OPS));
    const threeSecs = await Promise.all(servers.map((s) => admitLoop(s, OPS)));
    const three = (3 * OPS) / Math.max(...threeSecs);

    const changeMs: number[] = [];
    const wakeMs: number[] = [];
    const watch = b.watch('bench');
    // let the wake-ups of the admissions above pass; `pending` stays the one outstanding wait
    let pending = watch.changed();
    const quiet = () => new Promise<'quiet'>((r) => setTimeout(() => r('quiet'), 300));
    while ((await Promise.race([pending, quiet()])) === true) pending = watch.changed();
    for (let i = 0; i < CHANGES; i++) {
      const woke = pending;
      const t0 = performance.now();
      await a.setMode('bench', i % 2 === 0 ? { type: 'read-only', message: 'bench' } : undefined);
      const t1 = performance.now();
      await woke;
      const t2 = performance.now();
      pending = watch.changed();
      changeMs.push(t1 - t0);
      wakeMs.push(t2 - t0);
      // once the change returned, the other server refuses at its very next admission
      if (i % 2 === 0) {
        await b.admit('bench', 'ingest', { kind: 'backup' }).then(
          () => {
            throw new Error('admitted under read-only');
          },
          (err: { code?: string }) => {
            if (err.code !== 'MAINTENANCE') throw err;
          },
        );
      }
    }
    watch.close();

    console.log(`etcd admission backend, 3-member etcd on loopback (2 cores), ${OPS} operations per server`);
    console.log(
      `admit+release, 1 server:          ${Math.round(one).toString().padStart(6)} ops/s (${(1000 / one).toFixed(2)} ms each)`,
    );
    console.log(`admit+release, 3 servers at once: ${Math.round(three).toString().padStart(6)} ops/s in all`);
    console.log(
      `mode change (one transaction):    median ${pct(changeMs, 0.5).toFixed(1)} ms, p95 ${pct(changeMs, 0.95).toFixed(1)} ms (${CHANGES} changes)`,
    );
    console.log(
      `another server's watch wakes:     median ${pct(wakeMs, 0.5).toFixed(1)} ms, p95 ${pct(wakeMs, 0.95).toFixed(1)} ms after the change began`,
    );
    console.log(
      'refusal on another server after the change returned: at its next admission (checked each time)',
    );
  } finally {
    for (const s of servers) s.close();
    await cluster.stop();
  }
}

await main();
