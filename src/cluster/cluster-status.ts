/**
 * What `GET /api2/json/cluster/status` answers (issue 17, docs/cluster.md): the cluster's servers
 * with their leases and operations, who runs the scheduled jobs, and the health of etcd as seen
 * from this server. Read from etcd on every request; without a cluster, `{ enabled: false }`.
 *
 * A server is known by its scheduler's candidacy in the leader election (every `stowage server`
 * of a cluster campaigns, under a lease with the cluster's TTL) and by its running operations.
 * The client keeps a lease alive every TTL/3 seconds, so a lease with half its TTL or less left
 * has missed keep-alives: its server died or is cut off from etcd, and its operations count
 * until the lease expires ("lost": the UI shows them as "lost with node N").
 */
import { Etcd3 } from 'etcd3';
import type { ClusterContext } from './cluster-context.js';
import { etcdCredentials } from '../maintenance/open-datastore-access.js';
import { schedulerCandidates } from '../jobs/etcd-scheduler-leadership.js';
import type { ClusterNodeStatus, ClusterStatus, EtcdEndpointStatus } from '../api-types/cluster-status.js';

export type { ClusterNodeStatus, ClusterStatus, EtcdEndpointStatus };

const ENDPOINT_TIMEOUT_MS = 2_000;
const message = (err: unknown) => (err instanceof Error ? err.message.split('\n')[0]! : String(err));

/** One endpoint's own answer (a client of its own: the shared one fails over to other members). */
async function endpointStatus(cluster: ClusterContext, endpoint: string): Promise<EtcdEndpointStatus> {
  const client = new Etcd3({
    hosts: [endpoint],
    dialTimeout: ENDPOINT_TIMEOUT_MS,
    ...(cluster.settings.tls && { credentials: etcdCredentials(cluster.settings.tls) }),
    defaultCallOptions: () => ({ deadline: Date.now() + ENDPOINT_TIMEOUT_MS }),
  });
  try {
    const s = await client.maintenance.status();
    return {
      endpoint,
      reachable: true,
      version: s.version,
      'db-size': Number(s.dbSize),
      leader: s.leader === s.header.member_id,
      ...(s.errors.length > 0 && { errors: s.errors }),
      member: s.header.member_id,
    };
  } catch (err) {
    return { endpoint, reachable: false, errors: [message(err)] };
  } finally {
    client.close();
  }
}

/** A lease's seconds left and granted TTL (undefined: etcd does not know it, or cannot be asked). */
async function leaseTtl(client: Etcd3, lease: string): Promise<{ ttl: number; granted: number } | undefined> {
  return client.leaseClient.leaseTimeToLive({ ID: lease }).then(
    (r) => (Number(r.TTL) < 0 ? undefined : { ttl: Number(r.TTL), granted: Number(r.grantedTTL) }),
    () => undefined,
  );
}

/**
 * Whether a lease is kept alive (see the file comment): more than half its TTL left. etcd reports
 * the seconds left truncated (1.9 s left reads 1), so a lease is lost only once even the most it
 * can have left is half its TTL or less: with a 2 s TTL a live lease reads 1 right after each
 * keep-alive, which `ttl > granted / 2` took for lost.
 */
function leaseAlive(t: { ttl: number; granted: number } | undefined): boolean {
  return t !== undefined && t.ttl + 1 > t.granted / 2;
}

/** The leases among `leases` whose server missed its keep-alives (the operations are "lost with node N"). */
export async function lostLeases(client: Etcd3, leases: Iterable<string>): Promise<Set<string>> {
  const lost = new Set<string>();
  await Promise.all(
    [...new Set(leases)].map(async (lease) => {
      if (!leaseAlive(await leaseTtl(client, lease))) lost.add(lease);
    }),
  );
  return lost;
}

export async function clusterStatus(cluster: ClusterContext | undefined): Promise<ClusterStatus> {
  if (!cluster) return { enabled: false };
  const { client, settings } = cluster;
  const [candidates, operations, members, endpoints] = await Promise.all([
    schedulerCandidates(client, settings.prefix),
    cluster.backend.list(),
    client.cluster.memberList({}).then(
      (r) => r.members,
      () => [],
    ),
    Promise.all(settings.endpoints.map((e) => endpointStatus(cluster, e))),
  ]);
  const names = new Map(members.map((m) => [m.ID, m.name]));
  for (const e of endpoints) if (e.member !== undefined) e.member = names.get(e.member) ?? e.member;
  const leaderEndpoint = endpoints.find((e) => e.leader);

  const opsByNode = new Map<string, number>();
  for (const op of operations) {
    if (op.node !== undefined) opsByNode.set(op.node, (opsByNode.get(op.node) ?? 0) + 1);
  }
  const nodes: ClusterNodeStatus[] = [];
  for (const [i, c] of candidates.entries()) {
    if (nodes.some((n) => n.node === c.node)) continue; // a restarted server's old candidacy
    const ttl = await leaseTtl(client, c.lease);
    nodes.push({
      node: c.node,
      lease: BigInt(c.lease).toString(16),
      ...(ttl && { ttl: Math.max(0, ttl.ttl), 'granted-ttl': ttl.granted }),
      state: leaseAlive(ttl) ? 'alive' : 'lost',
      operations: opsByNode.get(c.node) ?? 0,
      leader: i === 0,
    });
  }
  // operations of a process that runs no scheduler (an admin command)
  for (const [node, count] of opsByNode) {
    if (!nodes.some((n) => n.node === node))
      nodes.push({ node, state: 'alive', operations: count, leader: false });
  }
  return {
    enabled: true,
    node: cluster.node,
    prefix: settings.prefix,
    'lease-ttl': settings.leaseTtlSeconds,
    nodes,
    etcd: {
      members: members.map((m) => ({
        name: m.name,
        id: BigInt(m.ID).toString(16),
        'client-urls': m.clientURLs,
      })),
      ...(leaderEndpoint?.member !== undefined && { leader: leaderEndpoint.member }),
      endpoints,
    },
  };
}
