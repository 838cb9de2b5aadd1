import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatastoreConfigFile } from '../config/datastore-config.js';
import type { StowagePaths } from '../config/paths.js';
import { DatastoreAccess, type ChunkBackendOpener } from './datastore-access.js';
import { LocalAdmissionBackend } from './local-admission-backend.js';
import { LocalLockService } from './local-lock-service.js';
import { SqliteOperationRegistry } from './sqlite-operation-registry.js';
import { SqliteMaintenanceEventLog } from './maintenance-events.js';
import { LowSpaceMonitor } from './low-space-monitor.js';
import { FileJobStateStore } from '../jobs/job-state.js';
import { EtcdAdmissionBackend } from './etcd-admission-backend.js';
import { EtcdDatastoreConfig } from './etcd-datastore-config.js';
import {
  resolveClusterSettings,
  type ClusterSettings,
  type ClusterTls,
} from '../cluster/cluster-settings.js';
import type { ClusterContext } from '../cluster/cluster-context.js';

/** The registry file every process of one Stowage instance shares (tmpfs under /run when installed). */
export function operationRegistryPath(paths: Pick<StowagePaths, 'runDir'>): string {
  return join(paths.runDir, 'active-operations.sqlite');
}

/** The maintenance history of the instance: under the data dir, so it outlives reboots. */
export function maintenanceEventLogPath(paths: Pick<StowagePaths, 'dataDir'>): string {
  return join(paths.dataDir, 'maintenance-events.sqlite');
}

/** Where an operator's forced release of the low-space hold is kept (low-space-monitor.ts). */
export function lowSpaceOverrideDir(paths: Pick<StowagePaths, 'dataDir'>): string {
  return join(paths.dataDir, 'low-space-override');
}

/** Datastore access for this process, on the instance's config dir and shared operation registry. */
export function openDatastoreAccess(
  paths: StowagePaths,
  opts: { lockTimeoutMs?: number; openChunks?: ChunkBackendOpener } = {},
): DatastoreAccess {
  const { openChunks, ...backendOpts } = opts;
  const config = new DatastoreConfigFile(paths.configDir);
  const backend = new LocalAdmissionBackend({
    config,
    registry: new SqliteOperationRegistry(operationRegistryPath(paths)),
    events: new SqliteMaintenanceEventLog(maintenanceEventLogPath(paths)),
    jobStates: new FileJobStateStore(paths.dataDir),
    locks: new LocalLockService({ runDir: paths.runDir, dataDir: paths.dataDir, config }),
    ...backendOpts,
  });
  const lowSpace = new LowSpaceMonitor({ config, backend, overrideDir: lowSpaceOverrideDir(paths) });
  return new DatastoreAccess({ config, backend, openChunks, lowSpace });
}

/** A process's datastore access, and its cluster when the instance is in cluster mode. */
export interface InstanceDatastores {
  access: DatastoreAccess;
  cluster?: ClusterContext;
}

/**
 * The datastore access of a server or admin process of this instance: on the host's own
 * datastore.cfg and operation registry, or, in cluster mode, on the cluster's etcd (admission,
 * locks and the datastore configuration). `cluster` undefined: as the instance's server last
 * recorded (`<config dir>/cluster.json`, cluster-settings.ts); false: local whatever is recorded.
 * In cluster mode it rejects when etcd cannot be reached (ERR_CLUSTER_UNREACHABLE).
 */
export async function openInstanceDatastores(
  paths: StowagePaths,
  opts: { cluster?: ClusterSettings | false; openChunks?: ChunkBackendOpener } = {},
): Promise<InstanceDatastores> {
  const settings = resolveClusterSettings(paths.configDir, opts.cluster);
  if (!settings) return { access: openDatastoreAccess(paths, { openChunks: opts.openChunks }) };
  const backend = new EtcdAdmissionBackend({
    endpoints: settings.endpoints,
    prefix: settings.prefix,
    node: settings.node,
    leaseTtlSeconds: settings.leaseTtlSeconds,
    // the maintenance history is the cluster's, in etcd (etcd-maintenance-events.ts)
    ...(settings.tls && { etcdOptions: { credentials: etcdCredentials(settings.tls) } }),
  });
  let config: EtcdDatastoreConfig;
  try {
    config = await EtcdDatastoreConfig.open({
      client: backend.client,
      prefix: backend.prefix,
      configDir: paths.configDir,
      unreachable: (subject, err) => backend.unreachable(subject, err),
    });
  } catch (err) {
    backend.close();
    throw err;
  }
  backend.onConfigWritten((store, value, revision) => config.learn(store, value, revision));
  const lowSpace = new LowSpaceMonitor({ config, backend, overrideDir: lowSpaceOverrideDir(paths) });
  const access = new DatastoreAccess({ config, backend, openChunks: opts.openChunks, lowSpace });
  return { access, cluster: { settings, node: settings.node, backend, client: backend.client } };
}

/** TLS to etcd: the CA (none: the system's roots) and a client certificate when given. */
export function etcdCredentials(tls: ClusterTls): {
  rootCertificate: Buffer;
  privateKey?: Buffer;
  certChain?: Buffer;
} {
  return {
    // grpc's createSsl takes a missing root as "the system's roots"
    rootCertificate: (tls.ca !== undefined ? readFileSync(tls.ca) : undefined) as Buffer,
    ...(tls.cert !== undefined &&
      tls.key !== undefined && {
        certChain: readFileSync(tls.cert),
        privateKey: readFileSync(tls.key),
      }),
  };
}
