/**
 * The cluster page (issue 17, docs/cluster.md): the servers of the cluster with their state, the
 * operations each holds, who runs the scheduled jobs and how long each lease has left, and the
 * health of etcd as this server sees it. Polled like the active operations: a server that dies
 * turns "lost" within a few seconds and disappears once its lease expired.
 */
import { api } from '../api.js';
import { ErrorBox, Loading } from '../components.js';
import { bytes } from '../format.js';
import { useApi } from '../hooks.js';
import type { ClusterStatus } from '../types.js';

const POLL_MS = 2500;

export function Cluster() {
  const status = useApi(
    async (signal) => (await api.get<ClusterStatus>('/cluster/status', undefined, signal)).data,
    [],
    POLL_MS,
  );
  const s = status.data;
  return (
    <section aria-labelledby="cluster-heading">
      <h1 id="cluster-heading">Cluster</h1>
      <ErrorBox error={status.error} title="Could not load the cluster status" />
      {!s ? (
        status.loading && <Loading what="the cluster status" />
      ) : !s.enabled ? (
        <p class="muted">This server is not in cluster mode (it was started without --cluster).</p>
      ) : (
        <>
          <p>
            This server is <strong>{s.node}</strong>; the cluster's state is under <code>{s.prefix}</code> in
            etcd, with a lease TTL of {s['lease-ttl']} s.
          </p>
          <h2>Servers</h2>
          <div class="overflow-auto">
            <table class="striped" data-testid="cluster-nodes">
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">State</th>
                  <th scope="col">Operations</th>
                  <th scope="col">Scheduled jobs</th>
                  <th scope="col">Lease left</th>
                </tr>
              </thead>
              <tbody>
                {(s.nodes ?? []).map((n) => (
                  <tr key={n.node}>
                    <td>
                      {n.node}
                      {n.node === s.node && <span class="muted"> (this server)</span>}
                    </td>
                    <td>
                      <span
                        class={n.state === 'alive' ? 'task-ok' : 'task-error'}
                        title={
                          n.state === 'lost'
                            ? 'missed its keep-alives: its operations count until the lease expires'
                            : undefined
                        }
                      >
                        {n.state}
                      </span>
                    </td>
                    <td>{n.operations}</td>
                    <td>{n.leader ? 'runs them (leader)' : ''}</td>
                    <td>{n.ttl === undefined ? '–' : `${n.ttl} s of ${n['granted-ttl'] ?? '?'} s`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {s.etcd && (
            <>
              <h2>etcd</h2>
              <p>
                {s.etcd.members.length} member(s); raft leader: {s.etcd.leader ?? 'unknown'}
              </p>
              <div class="overflow-auto">
                <table class="striped" data-testid="cluster-etcd">
                  <thead>
                    <tr>
                      <th scope="col">Endpoint</th>
                      <th scope="col">Reachable</th>
                      <th scope="col">Member</th>
                      <th scope="col">Version</th>
                      <th scope="col">Database</th>
                      <th scope="col">Errors</th>
                    </tr>
                  </thead>
                  <tbody>
                    {s.etcd.endpoints.map((e) => (
                      <tr key={e.endpoint}>
                        <td>{e.endpoint}</td>
                        <td>
                          <span class={e.reachable ? 'task-ok' : 'task-error'}>
                            {e.reachable ? 'yes' : 'no'}
                          </span>
                        </td>
                        <td>
                          {e.member ?? '–'}
                          {e.leader && <span class="muted"> (leader)</span>}
                        </td>
                        <td>{e.version ?? '–'}</td>
                        <td>{e['db-size'] === undefined ? '–' : bytes(e['db-size'])}</td>
                        <td>{e.errors?.join('; ') ?? ''}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}
        </>
      )}
    </section>
  );
}
