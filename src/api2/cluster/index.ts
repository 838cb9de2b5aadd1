/**
 * `GET /cluster/status` (Stowage extension, issue 17; docs/cluster.md): the cluster's servers
 * with their leases, operations and the scheduler's leader, and etcd's health as this server
 * sees it. PBS has no cluster of backup servers; the privilege is the one of PBS's node status
 * (Sys.Audit on /system/status). A server without `--cluster` answers `{ "enabled": false }`.
 */
import { Type } from 'typebox';
import { defineRoute, type AnyRoute } from '../../http/route.js';
import { clusterStatus } from '../../cluster/cluster-status.js';

const NodeSchema = Type.Object({
  node: Type.String(),
  lease: Type.Optional(Type.String({ description: "The server's lease (hex)." })),
  ttl: Type.Optional(Type.Integer({ description: 'Seconds left on the lease.' })),
  'granted-ttl': Type.Optional(Type.Integer()),
  state: Type.String({
    description: '`alive`, or `lost`: the lease missed its keep-alives (the server died or lost etcd).',
  }),
  operations: Type.Integer({ description: 'Operations the server holds, over all datastores.' }),
  leader: Type.Boolean({ description: 'Whether the server runs the scheduled jobs.' }),
});

const EndpointSchema = Type.Object({
  endpoint: Type.String(),
  reachable: Type.Boolean(),
  member: Type.Optional(Type.String()),
  version: Type.Optional(Type.String()),
  leader: Type.Optional(Type.Boolean()),
  'db-size': Type.Optional(Type.Integer()),
  errors: Type.Optional(Type.Array(Type.String())),
});

export const ClusterStatusSchema = Type.Object({
  enabled: Type.Boolean({
    description: 'false: this server runs without --cluster (nothing else is answered).',
  }),
  node: Type.Optional(Type.String({ description: "This server's node name." })),
  prefix: Type.Optional(Type.String()),
  'lease-ttl': Type.Optional(Type.Integer()),
  nodes: Type.Optional(Type.Array(NodeSchema)),
  etcd: Type.Optional(
    Type.Object({
      members: Type.Array(
        Type.Object({ name: Type.String(), id: Type.String(), 'client-urls': Type.Array(Type.String()) }),
      ),
      leader: Type.Optional(Type.String({ description: "The raft leader's member name." })),
      endpoints: Type.Array(EndpointSchema),
    }),
  ),
});

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/cluster/status',
    query: Type.Object({}),
    permission: { path: '/system/status', privs: ['Sys.Audit'] },
    description:
      "Stowage: the cluster's servers (node, lease, seconds left on it, alive or lost, operations, " +
      "scheduler leader), etcd's members, raft leader and each endpoint's health, and this server's " +
      'node name. `{ "enabled": false }` on a server without --cluster.',
    returns: ClusterStatusSchema,
    handler: ({ server }) => clusterStatus(server.cluster),
  }),
];
