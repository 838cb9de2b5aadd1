/**
 * What every route handler can reach: paths, the auth keys, permission snapshots, the task
 * manager. One object per running server, so tests can run several servers in one process.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { AuthKeys } from './auth/auth-keys.js';
import type { LoginLimiter } from './auth/login-limiter.js';
import type { UserInfoCache } from './permissions.js';
import type { TaskManager } from '../tasks/worker-task.js';
import type { DatastoreAccess } from '../maintenance/datastore-access.js';
import type { ClusterContext } from '../cluster/cluster-context.js';

export interface ServerPaths {
  /** user.cfg, acl.cfg, shadow files, keys, certificate (PBS: /etc/proxmox-backup). */
  configDir: string;
  /** Persistent state: task index and logs. */
  dataDir: string;
  /** Volatile state: sockets, pid files (PBS: /run/proxmox-backup). */
  runDir: string;
}

export interface ServerContext {
  paths: ServerPaths;
  keys: AuthKeys;
  userInfo: UserInfoCache;
  tasks: TaskManager;
  /** The one way to reach a datastore: admission under maintenance rules (src/maintenance/). */
  datastores: DatastoreAccess;
  /** The server's cluster in cluster mode (`stowage server --cluster`), else undefined. */
  cluster?: ClusterContext;
  loginLimiter: LoginLimiter;
  /** Delay before answering a failed authentication (PBS waits 3 s). */
  authFailureDelayMs: number;
  log: FastifyBaseLogger;
}
