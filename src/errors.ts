/**
 * The one error family of Stowage. Every error the core raises for an operator carries a stable
 * `code`, the HTTP status the API answers with, and a message written for the operator. The API
 * layer maps these to PBS's error envelope and the CLIs to exit codes in one place each
 * (`src/http/error-envelope.ts`, `src/cli/exit-codes.ts`); nothing matches on message text.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'BAD_CONFIG'
  | 'CONFIG_MODIFIED'
  | 'LOCK_TIMEOUT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'CONFLICT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'MAINTENANCE'
  | 'UNSUPPORTED'
  | 'NOT_MOUNTED'
  | 'CORRUPT_DATA'
  | 'PROTECTED'
  | 'TIMEOUT'
  | 'INTERNAL';

const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  BAD_CONFIG: 500,
  CONFIG_MODIFIED: 409,
  LOCK_TIMEOUT: 503,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  MAINTENANCE: 503,
  // a feature this version lacks (e.g. a PBS 4 removable or S3 datastore): not temporary, so not
  // 503 (which clients treat as "retry later"); 400 as PBS answers its own lookup refusals
  UNSUPPORTED: 400,
  // a removable datastore whose device is not mounted: PBS answers its lookup refusal with 400;
  // not 503 either, since waiting does not help until someone mounts it
  NOT_MOUNTED: 400,
  CORRUPT_DATA: 500,
  PROTECTED: 409,
  TIMEOUT: 504,
  INTERNAL: 500,
};

/** Whether `code` is one of the codes above (e.g. one a server sent back). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(STATUS, code);
}

/** The name of one error of the registry below (`ERR_GROUP_LOCKED`); stable, like `code`. */
export type ErrorId = `ERR_${string}`;

export interface StowageErrorOptions {
  cause?: unknown;
  details?: unknown;
  /** The registry name, set by the named errors below; code tests an error by it, never by text. */
  id?: ErrorId;
}

export class StowageError extends Error {
  /** The coarse category: decides the HTTP status and the CLI exit code; clients see it. */
  readonly code: ErrorCode;
  readonly status: number;
  /** Which error of the registry this is, when it was raised through one (see `createError`). */
  readonly id?: ErrorId;
  /** Structured details for API clients (e.g. the conflicting operations of a refused change). */
  readonly details?: unknown;

  constructor(code: ErrorCode, message: string, options?: StowageErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StowageError';
    this.code = code;
    this.status = STATUS[code];
    this.details = options?.details;
    if (options?.id !== undefined) this.id = options.id;
  }
}

/** Bad input from a client or operator; the message names the parameter that was wrong. */
export class BadRequestError extends StowageError {
  constructor(message: string, details?: unknown) {
    super('BAD_REQUEST', message, { details });
  }
}

/** One problem with one parameter, as the schema check reports it. */
export interface ParameterProblem {
  param: string;
  message: string;
}

/**
 * Parameters that failed the schema check, each named: PBS's wording,
 * `parameter verification failed - 'store': parameter is missing` (several joined by `, `).
 */
export class ParameterError extends BadRequestError {
  readonly problems: readonly ParameterProblem[];

  constructor(problems: readonly ParameterProblem[]) {
    const first = new Map<string, string>();
    for (const p of problems) if (!first.has(p.param)) first.set(p.param, p.message);
    const text = [...first].map(([k, v]) => `'${k}': ${v}`).join(', ');
    super(`parameter verification failed - ${text}`);
    this.problems = problems;
  }

  /** The first problem of each parameter, as the envelope's `errors` object. */
  get errors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const p of this.problems) out[p.param] ??= p.message;
    return out;
  }
}

export class NotFoundError extends StowageError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** Stored data failed a check (magic, CRC, digest, size). Never silently repaired. */
export class CorruptDataError extends StowageError {
  constructor(message: string) {
    super('CORRUPT_DATA', message);
  }
}

/** A configuration file that cannot be parsed. Never treated as "empty" or "no maintenance". */
export class BadConfigError extends StowageError {
  constructor(message: string) {
    super('BAD_CONFIG', message);
  }
}

/** PBS's exact wording for a stale digest (reference §6.1). */
export class ConfigModifiedError extends StowageError {
  constructor() {
    super('CONFIG_MODIFIED', 'detected modified configuration - file changed by other user? Try again.');
  }
}

export class LockTimeoutError extends StowageError {
  constructor(path: string, timeoutMs: number) {
    super('LOCK_TIMEOUT', `Unable to acquire lock "${path}" - got timeout after ${timeoutMs / 1000}s`);
  }
}

/**
 * Failed authentication. Credential failures all carry the same message so that a caller cannot
 * tell a wrong password from an unknown user (reference §8.1).
 */
export class UnauthorizedError extends StowageError {
  constructor(message = 'authentication failed', id?: ErrorId) {
    super('UNAUTHORIZED', message, { id });
  }
}

/** Authenticated, but a privilege is missing; the message names it and the ACL path. */
export class ForbiddenError extends StowageError {
  constructor(message: string) {
    super('FORBIDDEN', message);
  }
}

/**
 * An error that PBS raises with its own HTTP status (`http_err!`) on the backup and reader
 * protocols, where every other error is answered 400 (`src/http/error-envelope.ts`,
 * `protocolErrorResponse`): an unknown path, namespace or file (404), a chunk not registered for
 * download (401).
 */
export class ProtocolHttpError extends StowageError {}

/**
 * HTTP header that carries the `code` of an error answered as a bare message (the backup and
 * reader protocols, where PBS clients expect the message as the body); PBS clients ignore it.
 */
export const ERROR_CODE_HEADER = 'x-stowage-error-code';

export function isStowageError(err: unknown): err is StowageError {
  return err instanceof StowageError;
}

/** What a message template interpolates: names, numbers, and objects that print as their name. */
export type Printable = string | number | { toString(): string };

/**
 * One named error of the registry: call it to get the error to throw (`throw ERR_GC_RUNNING()`),
 * `withOptions` to attach a cause or details, `is` to recognise it in a catch.
 */
export interface NamedError<A extends Printable[]> {
  (...args: A): StowageError;
  readonly id: ErrorId;
  readonly code: ErrorCode;
  /** The operator message alone, for a caller that compares or logs it. */
  format(...args: A): string;
  withOptions(options: Omit<StowageErrorOptions, 'id'>, ...args: A): StowageError;
  is(err: unknown): err is StowageError;
}

/**
 * Declare one named error (fastify's `createError`): its registry name, its coarse `code` (HTTP
 * status, exit code, the `code` clients see) and its message template. `build` makes an instance
 * of a subclass when callers test for one (`UnauthorizedError`).
 */
function createError<A extends Printable[]>(
  id: ErrorId,
  code: ErrorCode,
  message: (...args: A) => string,
  build?: (message: string, id: ErrorId) => StowageError,
): NamedError<A> {
  const withOptions = (options: Omit<StowageErrorOptions, 'id'>, ...args: A): StowageError =>
    build ? build(message(...args), id) : new StowageError(code, message(...args), { ...options, id });
  return Object.assign((...args: A) => withOptions({}, ...args), {
    id,
    code,
    format: message,
    withOptions,
    is: (err: unknown): err is StowageError => err instanceof StowageError && err.id === id,
  });
}

// ---------------------------------------------------------------------------------------------
// The registry. Every error the code raises by name is declared here, once; its message is the
// operator's text (PBS clients print it and tests assert it, so a change here is a wire change).
// ---------------------------------------------------------------------------------------------

// authentication
export const ERR_NO_CREDENTIALS = createError(
  'ERR_NO_CREDENTIALS',
  'UNAUTHORIZED',
  () => 'authentication failed - no authentication credentials provided',
  (message, id) => new UnauthorizedError(message, id),
);
export const ERR_NO_CREDENTIALS_GIVEN = createError(
  'ERR_NO_CREDENTIALS_GIVEN',
  'UNAUTHORIZED',
  (what: string) => `no ${what} given - set STOWAGE_PASSWORD (or PBS_PASSWORD), or run on a terminal`,
);

// datastores and their configuration
export const ERR_DATASTORE_NOT_FOUND = createError(
  'ERR_DATASTORE_NOT_FOUND',
  'NOT_FOUND',
  (store: string) => `datastore '${store}' does not exist`,
);
export const ERR_DATASTORE_CLOSED = createError(
  'ERR_DATASTORE_CLOSED',
  'INTERNAL',
  (store: string) => `datastore '${store}' is closed`,
);
export const ERR_REGISTRY_NOT_LOCAL = createError(
  'ERR_REGISTRY_NOT_LOCAL',
  'INTERNAL',
  () => 'the operation registry is only readable synchronously on the local backend',
);
export const ERR_DATASTORE_EXISTS = createError(
  'ERR_DATASTORE_EXISTS',
  'ALREADY_EXISTS',
  (store: string) => `datastore '${store}' already exists.`,
);
export const ERR_DATASTORE_PATH_IN_USE = createError(
  'ERR_DATASTORE_PATH_IN_USE',
  'ALREADY_EXISTS',
  (path: string) => `a datastore already exists at '${path}'`,
);
export const ERR_DATASTORE_BEING_DELETED = createError(
  'ERR_DATASTORE_BEING_DELETED',
  'CONFLICT',
  (store: string) => `datastore '${store}' is being deleted: its maintenance mode cannot be changed`,
);
export const ERR_DELETE_MODE_RESERVED = createError(
  'ERR_DELETE_MODE_RESERVED',
  'BAD_REQUEST',
  () => "maintenance-mode: type 'delete' is set only by removing the datastore",
);
export const ERR_MAINTENANCE_TYPE_INVALID = createError(
  'ERR_MAINTENANCE_TYPE_INVALID',
  'BAD_REQUEST',
  (type: string, expected: string) => `invalid maintenance type '${type}': expected one of ${expected}`,
);
export const ERR_MAINTENANCE_MODE_UNREADABLE = createError(
  'ERR_MAINTENANCE_MODE_UNREADABLE',
  'MAINTENANCE',
  (store: string, why: string) =>
    `datastore '${store}' is unavailable: its maintenance-mode in datastore.cfg cannot be read (${why}); ` +
    'refusing all operations until an administrator sets or clears the mode',
);
// cluster mode (etcd admission backend, issue 17)
export const ERR_CLUSTER_UNREACHABLE = createError(
  'ERR_CLUSTER_UNREACHABLE',
  'MAINTENANCE',
  (subject: string, why: string) =>
    `${subject} is unavailable: the cluster's etcd cannot be reached (${why}); ` +
    'nothing is admitted while the maintenance mode cannot be checked',
);
/**
 * A server's etcd lease expired under a running operation (cut off from etcd, or stopped, longer
 * than the TTL): the other servers stopped counting it and a maintenance mode may have been set
 * meanwhile, so it must not go on writing.
 */
export const ERR_CLUSTER_LEASE_LOST = createError(
  'ERR_CLUSTER_LEASE_LOST',
  'MAINTENANCE',
  (store: string, node: string, ttlSeconds: number) =>
    `datastore '${store}' operation lost its cluster lease: server '${node}' could not renew it with ` +
    `the cluster's etcd for ${ttlSeconds} s, so the other servers stopped counting the operation ` +
    'and the maintenance mode may have changed meanwhile; the operation is aborted',
);
export const ERR_RESTORE_TARGET_NOT_EMPTY = createError(
  'ERR_RESTORE_TARGET_NOT_EMPTY',
  'BAD_REQUEST',
  (path: string) => `restore target '${path}' exists and is not empty`,
);
export const ERR_RESTORE_TARGET_EXISTS = createError(
  'ERR_RESTORE_TARGET_EXISTS',
  'ALREADY_EXISTS',
  (path: string) =>
    `'${path}' already exists: restore never overwrites a file - move it away or restore elsewhere`,
);
export const ERR_PREVIOUS_SNAPSHOT_CHANGED = createError(
  'ERR_PREVIOUS_SNAPSHOT_CHANGED',
  'CONFLICT',
  (archive: string) =>
    `the previous snapshot's '${archive}' changed during the backup (pruned or replaced?): run the backup again`,
);
export const ERR_DRAIN_TIMEOUT = createError(
  'ERR_DRAIN_TIMEOUT',
  'TIMEOUT',
  (store: string, seconds: number, count: number, operations: string) =>
    `datastore '${store}' did not drain within ${seconds}s: ${count} conflicting operation(s) still running: ${operations}`,
);

export const ERR_DRAIN_TIMEOUT_REVERTED = createError(
  'ERR_DRAIN_TIMEOUT_REVERTED',
  'TIMEOUT',
  (store: string, seconds: number, previous: string, count: number, operations: string) =>
    `datastore '${store}' did not drain within ${seconds}s: maintenance mode reverted to ${previous}; ` +
    `blocked by ${count} operation(s): ${operations}`,
);
export const ERR_DRAIN_TIMEOUT_NOT_REVERTED = createError(
  'ERR_DRAIN_TIMEOUT_NOT_REVERTED',
  'TIMEOUT',
  (store: string, seconds: number, current: string) =>
    `datastore '${store}' did not drain within ${seconds}s and was not reverted: its maintenance mode was changed meanwhile to ${current}`,
);
export const ERR_DRY_RUN_WITH_WAIT = createError(
  'ERR_DRY_RUN_WITH_WAIT',
  'BAD_REQUEST',
  () => '--dry-run changes nothing, so there is nothing to wait for: drop --wait and --on-timeout',
);
export const ERR_CLI_NUMBER_INVALID = createError(
  'ERR_CLI_NUMBER_INVALID',
  'BAD_REQUEST',
  (option: string, value: string, min: number, max: number) =>
    `invalid ${option} '${value}': expected a whole number from ${min} to ${max}`,
);

// removable datastores (src/maintenance/removable-datastore.ts, src/sys/mount.ts)
export const ERR_DATASTORE_NOT_MOUNTED = createError(
  'ERR_DATASTORE_NOT_MOUNTED',
  'NOT_MOUNTED',
  (store: string) => `datastore '${store}' is not mounted`,
);
export const ERR_DATASTORE_DEVICE_FAILED = createError(
  'ERR_DATASTORE_DEVICE_FAILED',
  // as not mounted: waiting does not help, the operator must unmount and mount again
  'NOT_MOUNTED',
  (store: string, why: string) =>
    `datastore '${store}' is unavailable: ${why}; unmount it, reconnect or check the disk, then mount it again`,
);
export const ERR_DESTROY_NOT_MOUNTED = createError(
  'ERR_DESTROY_NOT_MOUNTED',
  'BAD_REQUEST',
  (store: string) => `cannot destroy data on '${store}' unless the datastore is mounted`,
);
export const ERR_DATASTORE_NOT_REMOVABLE = createError(
  'ERR_DATASTORE_NOT_REMOVABLE',
  'BAD_REQUEST',
  (store: string) => `datastore '${store}' is not removable`,
);
export const ERR_DEVICE_NOT_FOUND = createError(
  'ERR_DEVICE_NOT_FOUND',
  'NOT_FOUND',
  (uuid: string) => `no attached device holds a filesystem with UUID '${uuid}'`,
);
export const ERR_MOUNT_COMMAND_FAILED = createError(
  'ERR_MOUNT_COMMAND_FAILED',
  'INTERNAL',
  (command: string, why: string) => `'${command}' failed: ${why}`,
);
export const ERR_NO_DATASTORE_ON_DEVICE = createError(
  'ERR_NO_DATASTORE_ON_DEVICE',
  'BAD_REQUEST',
  (store: string, path: string, uuid: string) =>
    `datastore '${store}': no datastore (no .chunks) at '${path}' on the device with UUID '${uuid}'; unmounted again`,
);
export const ERR_NO_DATASTORE_TO_REUSE = createError(
  'ERR_NO_DATASTORE_TO_REUSE',
  'BAD_REQUEST',
  (path: string) =>
    `parameter verification failed - 'reuse-datastore': no datastore to reuse at '${path}' (it has no .chunks)`,
);
export const ERR_UNMOUNT_MODE_CHANGED = createError(
  'ERR_UNMOUNT_MODE_CHANGED',
  'CONFLICT',
  (store: string, mode: string) =>
    `datastore '${store}': maintenance mode is not 'unmount' any more (now ${mode}): unmount aborted, the device stays mounted`,
);
export const ERR_UNMOUNT_FAILED = createError(
  'ERR_UNMOUNT_FAILED',
  'CONFLICT',
  (store: string, why: string) =>
    `datastore '${store}' could not be unmounted: ${why}; it stays in maintenance mode unmount - ` +
    'run the unmount again, or clear the maintenance mode to keep using it',
);

// groups, snapshots and namespaces
export const ERR_GROUP_LOCKED = createError(
  'ERR_GROUP_LOCKED',
  'CONFLICT',
  (group: Printable, why: string) => `unable to acquire lock on backup group ${group} - ${why}`,
);
export const ERR_SNAPSHOT_LOCKED = createError(
  'ERR_SNAPSHOT_LOCKED',
  'CONFLICT',
  (snapshot: Printable, why: string) => `unable to acquire lock on snapshot ${snapshot} - ${why}`,
);
export const ERR_GROUP_HAS_OWNER = createError(
  'ERR_GROUP_HAS_OWNER',
  'ALREADY_EXISTS',
  (group: Printable) => `backup group '${group}' already has an owner`,
);
export const ERR_GROUP_OWNER_CHANGED = createError(
  'ERR_GROUP_OWNER_CHANGED',
  'CONFLICT',
  (expectedOwner: string) => `${expectedOwner} does not own this group anymore`,
);
export const ERR_GROUP_PARTIALLY_DELETED = createError(
  'ERR_GROUP_PARTIALLY_DELETED',
  'PROTECTED',
  () => 'group only partially deleted due to protected snapshots',
);
/** `where` is `inNamespace(ns)`: empty for the root namespace. */
export const ERR_SNAPSHOT_PROTECTED = createError(
  'ERR_SNAPSHOT_PROTECTED',
  'PROTECTED',
  (snapshot: Printable, where: string) => `cannot remove protected snapshot '${snapshot}'${where}`,
);
/** `where` is `inNamespace(ns)`: empty for the root namespace. */
export const ERR_SNAPSHOT_EXISTS = createError(
  'ERR_SNAPSHOT_EXISTS',
  'ALREADY_EXISTS',
  (snapshot: Printable, where: string) => `snapshot '${snapshot}' already exists${where}`,
);
export const ERR_ROOT_NAMESPACE_EXISTS = createError(
  'ERR_ROOT_NAMESPACE_EXISTS',
  'ALREADY_EXISTS',
  () => 'the root namespace always exists',
);
export const ERR_NAMESPACE_EXISTS = createError(
  'ERR_NAMESPACE_EXISTS',
  'ALREADY_EXISTS',
  (ns: string) => `namespace '${ns}' already exists`,
);
export const ERR_NAMESPACE_HAS_GROUPS = createError(
  'ERR_NAMESPACE_HAS_GROUPS',
  'CONFLICT',
  () => 'only partially deleted due to existing groups but `delete-groups` not true',
);
export const ERR_MANIFEST_SIGNED_PART = createError(
  'ERR_MANIFEST_SIGNED_PART',
  'INTERNAL',
  (snapshotPath: string) => `refusing to change the signed part of manifest in ${snapshotPath}`,
);

// chunk store and index files
export const ERR_CHUNK_DIR_UNREADABLE = createError(
  'ERR_CHUNK_DIR_UNREADABLE',
  'INTERNAL',
  (dir: string, why: string) => `unable to read chunk subdir '${dir}' - ${why}`,
);
export const ERR_DATASTORE_FULL = createError(
  'ERR_DATASTORE_FULL',
  'INTERNAL',
  (path: string, what: string) =>
    `no space left on device: the datastore at '${path}' is full (writing ${what}) - ` +
    'remove snapshots and run garbage collection to free space',
);
export const ERR_NOT_AN_INDEX = createError(
  'ERR_NOT_AN_INDEX',
  'INTERNAL',
  (path: string) => `'${path}' is not an index file`,
);
export const ERR_NOT_A_BLOB_NAME = createError(
  'ERR_NOT_A_BLOB_NAME',
  'INTERNAL',
  (name: string) => `'${name}' is not a blob name`,
);
export const ERR_INDEX_SHORT_READ = createError(
  'ERR_INDEX_SHORT_READ',
  'INTERNAL',
  (path: string) => `fixed index '${path}': short read`,
);
export const ERR_INDEX_WRITER_CLOSED = createError(
  'ERR_INDEX_WRITER_CLOSED',
  'INTERNAL',
  (kind: string, path: string) => `${kind} index writer '${path}' is closed`,
);

// garbage collection and verification
export const ERR_GC_RUNNING = createError(
  'ERR_GC_RUNNING',
  'CONFLICT',
  () => 'Start GC failed - (already running/locked)',
);
export const ERR_VERIFY_FAILED = createError(
  'ERR_VERIFY_FAILED',
  'CORRUPT_DATA',
  () => 'verification failed - please check the log for details',
);
export const ERR_VERIFY_SELECTION = createError(
  'ERR_VERIFY_SELECTION',
  'BAD_REQUEST',
  () =>
    "parameter verification failed - 'backup-type': backup-type and backup-id go together, and backup-time needs both",
);

// backup protocol
export const ERR_SESSION_ENDED = createError(
  'ERR_SESSION_ENDED',
  'CONFLICT',
  () => 'backup session has ended',
);
export const ERR_BASE_SNAPSHOT_REMOVED = createError(
  'ERR_BASE_SNAPSHOT_REMOVED',
  'CONFLICT',
  (base: Printable) =>
    `base snapshot ${base} was removed during backup, cannot finish as chunks might be missing`,
);
export const ERR_BACKUP_NOT_FINISHED = createError(
  'ERR_BACKUP_NOT_FINISHED',
  'CONFLICT',
  () => 'backup ended but finished flag is not set.',
);

// users, tokens and jobs
export const ERR_USER_EXISTS = createError(
  'ERR_USER_EXISTS',
  'ALREADY_EXISTS',
  (userid: string) => `user '${userid}' already exists.`,
);
export const ERR_TOKEN_EXISTS = createError(
  'ERR_TOKEN_EXISTS',
  'ALREADY_EXISTS',
  (tokenid: string) => `token '${tokenid}' already exists.`,
);
/** `noun` is the job kind as the operator reads it ("sync job"). */
export const ERR_JOB_EXISTS = createError(
  'ERR_JOB_EXISTS',
  'ALREADY_EXISTS',
  (noun: string, id: string) => `${noun} '${id}' already exists.`,
);
export const ERR_JOB_RUNNING = createError(
  'ERR_JOB_RUNNING',
  'CONFLICT',
  (title: string, upid: string) => `${title} is already running (${upid})`,
);

// sync between servers
/** PBS's words when a remote cannot be reached or refuses the login (`remote_client`). */
export const ERR_REMOTE_CONNECTION = createError(
  'ERR_REMOTE_CONNECTION',
  'BAD_REQUEST',
  (host: string, why: string) => `remote connection to '${host}' failed - ${why}`,
);
export const ERR_SYNC_FAILED = createError(
  'ERR_SYNC_FAILED',
  'INTERNAL',
  () => 'sync failed with some errors.',
);
export const ERR_SYNC_OWNER_CHECK = createError(
  'ERR_SYNC_OWNER_CHECK',
  'FORBIDDEN',
  (syncOwner: string, owner: string) => `owner check failed (${syncOwner} != ${owner})`,
);
/** A namespace, archive or manifest the sync needs is not on its source. */
export const ERR_SYNC_SOURCE_MISSING = createError(
  'ERR_SYNC_SOURCE_MISSING',
  'NOT_FOUND',
  (what: string) => what,
);

// worker tasks and the server process
export const ERR_SHUTTING_DOWN = createError(
  'ERR_SHUTTING_DOWN',
  'CONFLICT',
  () => 'server is shutting down - not starting new tasks',
);
export const ERR_TASK_ABORTED = createError(
  'ERR_TASK_ABORTED',
  'CONFLICT',
  () => 'abort requested - aborting task',
);
/**
 * The reason an abort request carried from another process through the task index (e.g. a
 * maintenance mode's refusal): the error the aborted task fails with, keeping its code and text.
 * Undefined for a code this version does not know (the task then ends as a plain abort).
 */
export function abortedWith(code: string, message: string): StowageError | undefined {
  if (!isErrorCode(code)) return undefined;
  return new StowageError(code, message, { id: ERR_TASK_ABORTED.id });
}
export const ERR_TASK_FAILED = createError(
  'ERR_TASK_FAILED',
  'INTERNAL',
  (exit: string) => `task failed: ${exit}`,
);

/**
 * A followed task that failed, as the error it failed with: the task status's `error-code`
 * (when the server sent a known one) decides the status and exit code, as it would have had the
 * error been raised by the request itself (a drain timeout exits 6, a maintenance refusal 75).
 */
export function taskFailed(exit: string, errorCode?: unknown): StowageError {
  const err = ERR_TASK_FAILED(exit);
  if (typeof errorCode !== 'string' || !Object.hasOwn(STATUS, errorCode)) return err;
  return new StowageError(errorCode as ErrorCode, err.message, { id: ERR_TASK_FAILED.id });
}
export const ERR_TLS_CERT_CREATE = createError(
  'ERR_TLS_CERT_CREATE',
  'INTERNAL',
  (why: string) => `unable to create the TLS certificate with openssl: ${why}`,
);
export const ERR_NO_LISTEN_SOCKET = createError(
  'ERR_NO_LISTEN_SOCKET',
  'INTERNAL',
  (port: number) => `no listening socket on port ${port} found to hand over`,
);
export const ERR_RESTART_TIMEOUT = createError(
  'ERR_RESTART_TIMEOUT',
  'TIMEOUT',
  (seconds: number) => `new server process not ready after ${seconds} s`,
);
export const ERR_RESTART_CHILD_EXITED = createError(
  'ERR_RESTART_CHILD_EXITED',
  'INTERNAL',
  (how: string) => `new server process exited before serving (${how})`,
);
export const ERR_PROC_STAT_NO_CPU = createError(
  'ERR_PROC_STAT_NO_CPU',
  'INTERNAL',
  () => "failed to find 'cpu' line in /proc/stat",
);

// route declarations (programming errors, found when the server starts)
export const ERR_ROUTE_NO_PERMISSION = createError(
  'ERR_ROUTE_NO_PERMISSION',
  'INTERNAL',
  (route: string) => `route ${route} declares no permission`,
);
export const ERR_ROUTE_NO_DESCRIPTION = createError(
  'ERR_ROUTE_NO_DESCRIPTION',
  'INTERNAL',
  (route: string) => `route ${route} has no description`,
);
export const ERR_ROUTE_UNKNOWN_PERMISSION = createError(
  'ERR_ROUTE_UNKNOWN_PERMISSION',
  'INTERNAL',
  (route: string) => `route ${route} declares an unknown permission`,
);
export const ERR_ROUTE_FILTER_UNEXPLAINED = createError(
  'ERR_ROUTE_FILTER_UNEXPLAINED',
  'INTERNAL',
  (route: string) => `route ${route}: a filtered permission must say how it filters`,
);
export const ERR_ROUTE_UNKNOWN_PARAM = createError(
  'ERR_ROUTE_UNKNOWN_PARAM',
  'INTERNAL',
  (route: string, param: string) => `route ${route}: permission uses unknown parameter '${param}'`,
);
export const ERR_ROUTE_DUPLICATE = createError(
  'ERR_ROUTE_DUPLICATE',
  'INTERNAL',
  (route: string) => `route ${route} is registered twice`,
);

// command-line tools
export const ERR_SERVER_SPEC_INVALID = createError(
  'ERR_SERVER_SPEC_INVALID',
  'BAD_REQUEST',
  (spec: string) => `invalid --server '${spec}': expected HOST[:PORT]`,
);
export const ERR_SERVER_SPEC_BAD_PORT = createError(
  'ERR_SERVER_SPEC_BAD_PORT',
  'BAD_REQUEST',
  (spec: string) => `invalid --server '${spec}': bad port`,
);
export const ERR_NO_SERVER_CONFIG = createError(
  'ERR_NO_SERVER_CONFIG',
  'NOT_FOUND',
  (configDir: string) =>
    `no server configuration in ${configDir} (start the server first with 'stowage server', or pass --config-dir)`,
);

// client: connection, chunk workers, backup writer
export const ERR_CONNECT_FAILED = createError(
  'ERR_CONNECT_FAILED',
  'INTERNAL',
  (host: string, port: number, why: string) => `unable to connect to ${host}:${port} - ${why}`,
);
export const ERR_CONNECTION_CLOSED = createError(
  'ERR_CONNECTION_CLOSED',
  'INTERNAL',
  () => 'connection to the server was lost (the server stopped or restarted, or the network failed)',
);
export const ERR_REQUEST_FAILED = createError(
  'ERR_REQUEST_FAILED',
  'INTERNAL',
  (why: string) => `request failed - ${why}`,
);
export const ERR_PROTOCOL_REQUEST_FAILED = createError(
  'ERR_PROTOCOL_REQUEST_FAILED',
  'INTERNAL',
  (name: string, why: string) => `request ${name} failed - ${why}`,
);
export const ERR_UNEXPECTED_ANSWER = createError(
  'ERR_UNEXPECTED_ANSWER',
  'INTERNAL',
  (text: string) => `unexpected answer from server: ${text}`,
);
export const ERR_RESPONSE_HEAD_TOO_LARGE = createError(
  'ERR_RESPONSE_HEAD_TOO_LARGE',
  'INTERNAL',
  () => 'response head too large',
);
export const ERR_UPGRADE_UNEXPECTED = createError(
  'ERR_UPGRADE_UNEXPECTED',
  'INTERNAL',
  (statusLine: string) => `unexpected answer to upgrade: ${statusLine}`,
);
export const ERR_UPGRADE_CLOSED = createError(
  'ERR_UPGRADE_CLOSED',
  'INTERNAL',
  () => 'server closed the connection during the upgrade',
);
export const ERR_H2_HANDSHAKE = createError(
  'ERR_H2_HANDSHAKE',
  'INTERNAL',
  (why: string) => `HTTP/2 handshake failed - ${why}`,
);
export const ERR_NOT_IN_WORKER = createError(
  'ERR_NOT_IN_WORKER',
  'INTERNAL',
  () => 'chunk-worker must run in a worker thread',
);
export const ERR_CHUNK_NOT_HELD = createError(
  'ERR_CHUNK_NOT_HELD',
  'INTERNAL',
  (id: number) => `no chunk ${id} held`,
);
export const ERR_CHUNK_WORKER_EXITED = createError(
  'ERR_CHUNK_WORKER_EXITED',
  'INTERNAL',
  (exitCode: number) => `chunk worker exited with code ${exitCode}`,
);
export const ERR_RESTORE_WRITER_EXITED = createError(
  'ERR_RESTORE_WRITER_EXITED',
  'INTERNAL',
  (exitCode: number) =>
    exitCode < 0
      ? 'the restore writer was closed'
      : `the restore writer's thread exited with code ${exitCode}`,
);
export const ERR_CHUNK_WORKER_ANSWER = createError(
  'ERR_CHUNK_WORKER_ANSWER',
  'INTERNAL',
  (answer: string, request: string) => `chunk worker answered ${answer} to ${request}`,
);
export const ERR_CHUNK_POOL_CLOSED = createError(
  'ERR_CHUNK_POOL_CLOSED',
  'INTERNAL',
  () => 'chunk pool is closed',
);
export const ERR_IMAGE_SIZE_CHANGED = createError(
  'ERR_IMAGE_SIZE_CHANGED',
  'CONFLICT',
  (image: string, bytes: number, size: number) =>
    `image '${image}' changed size while reading (${bytes} != ${size} bytes)`,
);

// pxar archives (src/pxar/)
export const ERR_PXAR_NOT_A_DIRECTORY = createError(
  'ERR_PXAR_NOT_A_DIRECTORY',
  'BAD_REQUEST',
  (path: string) => `'${path}' is not a directory`,
);
export const ERR_PXAR_NO_CONTENTS = createError(
  'ERR_PXAR_NO_CONTENTS',
  'BAD_REQUEST',
  (path: string) => `'${path}' has no contents in this archive`,
);
export const ERR_PXAR_NOT_A_HARDLINK = createError(
  'ERR_PXAR_NOT_A_HARDLINK',
  'BAD_REQUEST',
  (path: string) => `'${path}' is not a hardlink`,
);
export const ERR_PXAR_PARENT_COMPONENT = createError(
  'ERR_PXAR_PARENT_COMPONENT',
  'BAD_REQUEST',
  () => "'..' is not allowed in an archive path",
);
export const ERR_PXAR_VIRTUAL_FILESYSTEM = createError(
  'ERR_PXAR_VIRTUAL_FILESYSTEM',
  'BAD_REQUEST',
  (root: string) => `refusing to backup a virtual file system ('${root}')`,
);
export const ERR_PXAR_UNKNOWN_FILE_TYPE = createError(
  'ERR_PXAR_UNKNOWN_FILE_TYPE',
  'UNSUPPORTED',
  (path: string) => `'${path}' has an unknown file type`,
);
export const ERR_PXAR_CONTENTS_OUT_OF_ORDER = createError(
  'ERR_PXAR_CONTENTS_OUT_OF_ORDER',
  'CONFLICT',
  () => 'pxar contents are only readable right after their file entry',
);
export const ERR_PXAR_FILE_GREW = createError(
  'ERR_PXAR_FILE_GREW',
  'CONFLICT',
  (name: string, size: number) => `file '${name}' grew beyond ${size} bytes while archiving`,
);
export const ERR_PXAR_FILE_SHRANK = createError(
  'ERR_PXAR_FILE_SHRANK',
  'CONFLICT',
  (name: string, written: number, size: number) =>
    `file '${name}' shrank to ${written} of ${size} bytes while archiving`,
);
export const ERR_PXAR_CHANGED_WHILE_ARCHIVING = createError(
  'ERR_PXAR_CHANGED_WHILE_ARCHIVING',
  'CONFLICT',
  (path: string) => `'${path}' changed while it was archived: run the backup again`,
);
export const ERR_PXAR_INCOMPLETE = createError(
  'ERR_PXAR_INCOMPLETE',
  'CONFLICT',
  () => 'the pxar encoder failed earlier: this archive is incomplete',
);
export const ERR_PXAR_SINK_CLOSED = createError(
  'ERR_PXAR_SINK_CLOSED',
  'INTERNAL',
  () => 'pxar sink closed before it drained',
);
export const ERR_PXAR_UNSAFE_ENTRY = createError(
  'ERR_PXAR_UNSAFE_ENTRY',
  'CORRUPT_DATA',
  (path: string, why: string) => `refusing to extract archive entry '${path}': ${why}`,
);
export const ERR_PXAR_BELOW_SYMLINK = createError(
  'ERR_PXAR_BELOW_SYMLINK',
  'CORRUPT_DATA',
  (path: string, symlink: string) =>
    `refusing to extract archive entry '${path}': it is below the symlink '${symlink}' the archive created`,
);

// extended attributes, POSIX ACLs and file capabilities (src/pxar/linux-xattrs.ts, src/sys/xattr-dump.ts)
export const ERR_XATTR_DUMP_INVALID = createError(
  'ERR_XATTR_DUMP_INVALID',
  'CORRUPT_DATA',
  (line: number, why: string) => `getfattr's output is not understood at line ${line}: ${why}`,
);
export const ERR_LINUX_ACL_INVALID = createError(
  'ERR_LINUX_ACL_INVALID',
  'CORRUPT_DATA',
  (why: string) => `POSIX ACL attribute is invalid: ${why}`,
);

// S3 object stores (src/s3/, the S3 chunk backend)
export const ERR_S3_REQUEST_FAILED = createError(
  'ERR_S3_REQUEST_FAILED',
  'INTERNAL',
  (what: string, detail: string) => `S3 request failed: ${what} - ${detail}`,
);
export const ERR_S3_CERTIFICATE_MISMATCH = createError(
  'ERR_S3_CERTIFICATE_MISMATCH',
  'BAD_REQUEST',
  (got: string, expected: string) =>
    `S3 endpoint certificate fingerprint ${got} does not match the configured fingerprint ${expected}`,
);
export const ERR_S3_BUCKET_UNREACHABLE = createError(
  'ERR_S3_BUCKET_UNREACHABLE',
  'BAD_REQUEST',
  (detail: string) => `parameter verification failed - 'backend': failed to access bucket - ${detail}`,
);
export const ERR_S3_BUCKET_IN_USE = createError(
  'ERR_S3_BUCKET_IN_USE',
  'BAD_REQUEST',
  (store: string, host: string) =>
    `parameter verification failed - 'overwrite-in-use': Bucket already contains datastore '${store}' in use${host ? ` by host ${host}` : ''}`,
);
export const ERR_S3_DESTROY_DATA = createError(
  'ERR_S3_DESTROY_DATA',
  'BAD_REQUEST',
  (store: string) =>
    `parameter verification failed - 'destroy-data': datastore '${store}' keeps its data in an S3 bucket; this Stowage version does not delete bucket objects (remove the datastore without destroy-data, then the objects under '${store}/' with the store's tools)`,
);
export const ERR_NOT_S3_DATASTORE = createError(
  'ERR_NOT_S3_DATASTORE',
  'BAD_REQUEST',
  (store: string) => `store '${store}' not backed by S3`,
);
export const ERR_S3_REFRESH_MODE_CHANGED = createError(
  'ERR_S3_REFRESH_MODE_CHANGED',
  'CONFLICT',
  (store: string, mode: string) =>
    `datastore '${store}': maintenance mode is not 's3-refresh' any more (now ${mode}): refresh aborted, the cache is unchanged`,
);
// not temporary and not the operator's request: refused as a datastore this server cannot serve
export const ERR_S3_ENDPOINT_NOT_CONFIGURED = createError(
  'ERR_S3_ENDPOINT_NOT_CONFIGURED',
  'UNSUPPORTED',
  (store: string, id: string) =>
    `datastore '${store}' uses S3 endpoint '${id}', which is not configured (config/s3)`,
);
export const ERR_S3_CHECK_FAILED = createError(
  'ERR_S3_CHECK_FAILED',
  'BAD_REQUEST',
  (step: string, detail: string) => `${step} failed - ${detail}`,
);
