/**
 * Maintenance modes and operation classes as server, CLI and web UI all see them (design:
 * maintenance.md §1, §5; PBS: reference §1). Depends on nothing, so www/ imports it as is: the
 * mode × class rule is this one table, and a new mode or class is one row or column here.
 *
 * Parsing the stored property string lives in src/maintenance/maintenance-mode.ts (server side,
 * with the error family); the UI has its own lenient display parser.
 */

/**
 * What an admitted operation does to a datastore. PBS has read, write and lookup; Stowage splits
 * write in two so that `sealed` can stop new data while space is freed:
 * - `ingest`: new data comes in (a backup session, a snapshot or blob upload, a namespace made,
 *   a sync into the store);
 * - `reclaim`: existing data is removed or rewritten (prune, snapshot and group deletion, GC,
 *   notes, protection, owner changes, verify recording its result).
 * `lookup` must do no disk IO.
 */
export const OPERATION_CLASSES = ['read', 'ingest', 'reclaim', 'lookup'] as const;
export type OperationClass = (typeof OPERATION_CLASSES)[number];

/** The classes PBS calls `write`. */
export const WRITE_CLASSES = ['ingest', 'reclaim'] as const;
export type WriteClass = (typeof WRITE_CLASSES)[number];

export function isWriteClass(cls: OperationClass): cls is WriteClass {
  return (WRITE_CLASSES as readonly string[]).includes(cls);
}

/**
 * PBS 4's `MaintenanceType` (kebab-case on the wire) and Stowage's `sealed`. `unmount` (PBS 3.3+)
 * is set while a removable datastore is being unmounted, `s3-refresh` (PBS 4) while an S3
 * datastore's local cache is refreshed from the bucket; Stowage honours both (a PBS 4
 * `datastore.cfg` may carry them). `sealed` (Veeam's sealed mode, Elasticsearch's "read-only,
 * allow delete") refuses new data but lets prune, deletion and GC free space: a Stowage extension,
 * stored in the same property string (PBS refuses to load such a datastore.cfg entry).
 */
export const MAINTENANCE_TYPES = [
  'read-only',
  'sealed',
  'offline',
  'delete',
  'unmount',
  's3-refresh',
] as const;
export type MaintenanceType = (typeof MAINTENANCE_TYPES)[number];

export interface MaintenanceMode {
  type: MaintenanceType;
  message?: string;
}

export const MAX_MESSAGE_LENGTH = 64;

/** Which classes each mode admits; `none` is normal service (PBS `MaintenanceMode::check`, §1.2). */
const ADMITS: Record<MaintenanceType | 'none', Record<OperationClass, boolean>> = {
  none: { read: true, ingest: true, reclaim: true, lookup: true },
  'read-only': { read: true, ingest: false, reclaim: false, lookup: true },
  sealed: { read: true, ingest: false, reclaim: true, lookup: true },
  offline: { read: false, ingest: false, reclaim: false, lookup: true },
  delete: { read: false, ingest: false, reclaim: false, lookup: false },
  unmount: { read: false, ingest: false, reclaim: false, lookup: true },
  's3-refresh': { read: false, ingest: false, reclaim: false, lookup: true },
};

/**
 * Modes an operator may set through `PUT /config/datastore/{name}`. PBS 4's update_datastore
 * accepts every type; Stowage keeps `delete` for datastore removal only (a hand-set `delete` can
 * never be left again), and accepts the others as PBS does.
 */
export const OPERATOR_SETTABLE: readonly MaintenanceType[] = [
  'read-only',
  'sealed',
  'offline',
  'unmount',
  's3-refresh',
];

/** Whether `type` is one of PBS's maintenance types (the UI shows an unknown one verbatim). */
export function isMaintenanceType(type: string): type is MaintenanceType {
  return (MAINTENANCE_TYPES as readonly string[]).includes(type);
}

export function modeAdmits(mode: { type: MaintenanceType } | undefined, op: OperationClass): boolean {
  return ADMITS[mode?.type ?? 'none'][op];
}

/**
 * Operation classes whose active operations block the transition into `mode`: the classes it
 * refuses, except `lookup`, which touches no disk and so never holds anything up.
 */
export function conflictingClasses(mode: { type: MaintenanceType } | undefined): OperationClass[] {
  return OPERATION_CLASSES.filter((c) => c !== 'lookup' && !modeAdmits(mode, c));
}

/**
 * The reason text PBS 4 puts after "is unavailable: " (`MaintenanceMode::check`, §1.1):
 * `datastore is being deleted`, `datastore is being unmounted` (no message, as PBS), `S3 refresh
 * maintenance mode: MSG`, `offline maintenance mode: MSG`, `read-only maintenance mode: MSG`.
 * Unlike PBS we do not percent-decode the message, so the error text and the UI show the same
 * string; and with no message we end the sentence instead of leaving a dangling ": ".
 */
export function describeMode(mode: MaintenanceMode): string {
  let base: string;
  switch (mode.type) {
    case 'delete':
      return 'datastore is being deleted';
    case 'unmount':
      return 'datastore is being unmounted';
    case 's3-refresh':
      base = 'S3 refresh maintenance mode';
      break;
    default:
      base = `${mode.type} maintenance mode`;
  }
  return mode.message ? `${base}: ${mode.message}` : base;
}

/** The label PBS's web UI shows for a type (`PBS.Utils.renderMaintenance`, §4.2). */
export const MAINTENANCE_TYPE_LABELS: Readonly<Record<MaintenanceType, string>> = {
  'read-only': 'Read-only',
  sealed: 'Sealed',
  offline: 'Offline',
  delete: 'Being deleted',
  unmount: 'Unmounting',
  's3-refresh': 'S3 refresh',
};

/**
 * System holds (Nexus's "system freeze"): restrictions Stowage puts on a datastore itself, apart
 * from the operator's mode, each under its own source (`low-space`, `window:<id>`). Clearing the
 * operator's mode does not lift them; a forced release does. A hold of type `drain` (a window's
 * drain-before period) refuses new long operations only, whatever their class.
 */
export const HOLD_TYPES = ['read-only', 'sealed', 'offline', 'drain'] as const;
export type HoldType = (typeof HOLD_TYPES)[number];

export interface SystemHold {
  /** Who holds it: `low-space`, or `window:<id>`. One hold per source and store. */
  source: string;
  type: HoldType;
  /** Shown to every refused client. */
  message: string;
  /** Epoch milliseconds when it was engaged. */
  since: number;
  authId?: string;
}

/** The operation kinds a `drain` hold refuses: the long ones a maintenance window must not meet. */
export const LONG_OPERATION_KINDS: readonly string[] = ['backup', 'verify', 'gc', 'sync'];

export function isHoldType(type: unknown): type is HoldType {
  return (HOLD_TYPES as readonly unknown[]).includes(type);
}

/** Whether `hold` admits an operation of class `cls` and kind `kind`. */
export function holdAdmits(hold: Pick<SystemHold, 'type'>, cls: OperationClass, kind?: string): boolean {
  const type = hold.type;
  if (type === 'drain') return cls === 'lookup' || kind === undefined || !LONG_OPERATION_KINDS.includes(kind);
  return ADMITS[type][cls];
}

/**
 * Classes whose active operations block the transition into `hold` (the drain hold: none by class;
 * it only stops new long operations, and its window's own hold does the draining).
 */
export function holdConflictingClasses(hold: Pick<SystemHold, 'type'>): OperationClass[] {
  const type = hold.type;
  if (type === 'drain') return [];
  return OPERATION_CLASSES.filter((c) => c !== 'lookup' && !ADMITS[type][c]);
}

/** The reason a hold gives after "is unavailable: " (its message says what and why). */
export function describeHold(hold: Pick<SystemHold, 'message'>): string {
  return hold.message;
}

export const HOLD_TYPE_LABELS: Readonly<Record<HoldType, string>> = {
  'read-only': 'Read-only',
  sealed: 'Sealed',
  offline: 'Offline',
  drain: 'Draining',
};
