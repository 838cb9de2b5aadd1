/**
 * What a server in cluster mode keeps of its cluster (issue 17): its node name, the etcd
 * admission backend its datastores admit through, and that backend's etcd client (for cluster
 * status, leader election and shared history built on the same connection and lease).
 * `ServerContext.cluster` is undefined on a server without `--cluster`.
 */
import type { Etcd3 } from 'etcd3';
import type { EtcdAdmissionBackend } from '../maintenance/etcd-admission-backend.js';
import type { ClusterSettings } from './cluster-settings.js';

export interface ClusterContext {
  readonly settings: ClusterSettings;
  /** This server's node name (settings.node). */
  readonly node: string;
  readonly backend: EtcdAdmissionBackend;
  readonly client: Etcd3;
}
