/**
 * What `GET /api2/json/cluster/status` answers (issue 17, docs/cluster.md; Stowage extension):
 * shared by the server (src/cluster/cluster-status.ts), the CLI and the web UI.
 */

export interface ClusterNodeStatus {
  node: string;
  /** The server's lease in the scheduler's election (hex, as etcdctl prints it). */
  lease?: string;
  /** Seconds left before the lease expires. */
  ttl?: number;
  'granted-ttl'?: number;
  /** alive: keeps its lease; lost: missed keep-alives, its operations go when the lease expires. */
  state: 'alive' | 'lost';
  /** Operations the server holds now, over all datastores. */
  operations: number;
  /** Whether it runs the scheduled jobs. */
  leader: boolean;
}

export interface EtcdEndpointStatus {
  endpoint: string;
  reachable: boolean;
  /** The member's name, etcd version and whether it is the raft leader (when reachable). */
  member?: string;
  version?: string;
  leader?: boolean;
  'db-size'?: number;
  errors?: string[];
}

export interface ClusterStatus {
  enabled: boolean;
  /** This server's node name. */
  node?: string;
  prefix?: string;
  'lease-ttl'?: number;
  nodes?: ClusterNodeStatus[];
  etcd?: {
    members: { name: string; id: string; 'client-urls': string[] }[];
    /** The raft leader's member name, as the reachable members report it. */
    leader?: string;
    endpoints: EtcdEndpointStatus[];
  };
}
