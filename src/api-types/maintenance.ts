/**
 * Maintenance modes and operation classes as server, CLI and web UI all see them (design:
 * maintenance.md §1, §5; PBS: reference §1). Depends on nothing, so www/ imports it as is: the
 * mode × class rule is this one table, and a new mode or class is one row or column here.
 *
 * Parsing the stored property string lives in src/maintenance/maintenance-mode.ts (server side,
 * with the error family); the UI has its own lenient display parser.
 */

/** What an admitted operation does to a datastore. `lookup` must do no disk IO. */
export const OPERATION_CLASSES = ['read', 'write', 'lookup'] as const;
export type OperationClass = (typeof OPERATION_CLASSES)[number];

/**
 * PBS 4's `MaintenanceType` (kebab-case on the wire). `unmount` (PBS 3.3+) is set while a
 * removable datastore is being unmounted, `s3-refresh` (PBS 4) while an S3 datastore's local cache
 * is refreshed from the bucket; Stowage honours both (a PBS 4 `datastore.cfg` may carry them).
 */
export const MAINTENANCE_TYPES = ['read-only', 'offline', 'delete', 'unmount', 's3-refresh'] as const;
export type MaintenanceType = (typeof MAINTENANCE_TYPES)[number];

export interface MaintenanceMode {
  type: MaintenanceType;
  message?: string;
}

export const MAX_MESSAGE_LENGTH = 64;

/** Which classes each mode admits; `none` is normal service (PBS `MaintenanceMode::check`, §1.2). */
const ADMITS: Record<MaintenanceType | 'none', Record<OperationClass, boolean>> = {
  none: { read: true, write: true, lookup: true },
  'read-only': { read: true, write: false, lookup: true },
  offline: { read: false, write: false, lookup: true },
  delete: { read: false, write: false, lookup: false },
  unmount: { read: false, write: false, lookup: true },
  's3-refresh': { read: false, write: false, lookup: true },
};

/**
 * Modes an operator may set through `PUT /config/datastore/{name}`. PBS 4's update_datastore
 * accepts every type; Stowage keeps `delete` for datastore removal only (a hand-set `delete` can
 * never be left again), and accepts the others as PBS does.
 */
export const OPERATOR_SETTABLE: readonly MaintenanceType[] = [
  'read-only',
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
  offline: 'Offline',
  delete: 'Being deleted',
  unmount: 'Unmounting',
  's3-refresh': 'S3 refresh',
};
