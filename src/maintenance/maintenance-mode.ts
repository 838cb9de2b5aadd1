/**
 * Maintenance modes and operation classes (design: maintenance.md §1, §5; PBS: reference §1).
 * Pure: the mode × class rule is one table, so a new mode or class is one row or column.
 */
import { BadRequestError, StowageError } from '../errors.js';
import { formatPropertyString, parsePropertyString } from '../config/property-string.js';

/** What an admitted operation does to a datastore. `lookup` must do no disk IO. */
export const OPERATION_CLASSES = ['read', 'write', 'lookup'] as const;
export type OperationClass = (typeof OPERATION_CLASSES)[number];

export const MAINTENANCE_TYPES = ['read-only', 'offline', 'delete'] as const;
export type MaintenanceType = (typeof MAINTENANCE_TYPES)[number];

export interface MaintenanceMode {
  type: MaintenanceType;
  message?: string;
}

/** Which classes each mode admits; `none` is normal service. */
const ADMITS: Record<MaintenanceType | 'none', Record<OperationClass, boolean>> = {
  none: { read: true, write: true, lookup: true },
  'read-only': { read: true, write: false, lookup: true },
  offline: { read: false, write: false, lookup: true },
  delete: { read: false, write: false, lookup: false },
};

/** The modes a datastore may move to from each mode (PBS §1.5: nothing leaves `delete`). */
const MAY_LEAVE_TO: Record<MaintenanceType | 'none', (to: MaintenanceType | 'none') => boolean> = {
  none: () => true,
  'read-only': () => true,
  offline: () => true,
  delete: (to) => to === 'delete',
};

/** Modes an operator may set by hand; `delete` is set only by datastore removal. */
export const OPERATOR_SETTABLE: readonly MaintenanceType[] = ['read-only', 'offline'];

export const MAX_MESSAGE_LENGTH = 64;

export function modeAdmits(mode: MaintenanceMode | undefined, op: OperationClass): boolean {
  return ADMITS[mode?.type ?? 'none'][op];
}

/** The refusal of an admission by maintenance mode: HTTP 503, CLI exit code MAINTENANCE. */
export class MaintenanceError extends StowageError {
  readonly store: string;
  readonly mode: MaintenanceMode;
  constructor(store: string, mode: MaintenanceMode) {
    super('MAINTENANCE', `datastore '${store}' is unavailable: ${describeMode(mode)}`);
    this.store = store;
    this.mode = mode;
  }
}

/**
 * The reason text PBS uses after "is unavailable: " (§1.1). Unlike PBS we do not percent-decode
 * the message, so the error text and the UI show the same string; and with no message we end the
 * sentence instead of leaving a dangling ": ".
 */
export function describeMode(mode: MaintenanceMode): string {
  if (mode.type === 'delete') return 'datastore is being deleted';
  const base = `${mode.type} maintenance mode`;
  return mode.message ? `${base}: ${mode.message}` : base;
}

/** Throw MaintenanceError when `mode` refuses an operation of class `op` on `store`. */
export function checkMaintenance(store: string, mode: MaintenanceMode | undefined, op: OperationClass): void {
  if (mode && !modeAdmits(mode, op)) throw new MaintenanceError(store, mode);
}

/** Validate a message: at most 64 characters, no control characters (PBS schema, §1.3). */
export function validateMaintenanceMessage(message: string): void {
  if ([...message].length > MAX_MESSAGE_LENGTH) {
    throw new BadRequestError(
      `maintenance-mode: message is ${[...message].length} characters long, at most ${MAX_MESSAGE_LENGTH} are allowed`,
    );
  }
  const ctl = /[\u0000-\u001f\u007f-\u009f]/u.exec(message);
  if (ctl) {
    const code = ctl[0].codePointAt(0)!.toString(16).padStart(4, '0');
    throw new BadRequestError(
      `maintenance-mode: message must not contain control characters (found U+${code})`,
    );
  }
}

function parseType(value: string): MaintenanceType {
  if ((MAINTENANCE_TYPES as readonly string[]).includes(value)) return value as MaintenanceType;
  throw new BadRequestError(
    `maintenance-mode: unknown type '${value}' (expected one of ${MAINTENANCE_TYPES.join(', ')})`,
  );
}

/**
 * Parse the `maintenance-mode` property string. Accepts both spellings PBS has written
 * (`type=offline,message="x"` before 3.2.0, `offline,message=x` after). Throws BadRequestError
 * naming the field on anything else — callers must never treat a failure as "no maintenance".
 */
export function parseMaintenanceMode(text: string): MaintenanceMode {
  const entries = parsePropertyString(text, { defaultKey: 'type', name: 'maintenance-mode' });
  let type: MaintenanceType | undefined;
  let message: string | undefined;
  for (const [key, value] of entries) {
    if (key === 'type') type = parseType(value);
    else if (key === 'message') message = value;
    else throw new BadRequestError(`maintenance-mode: unknown property '${key}'`);
  }
  if (!type) throw new BadRequestError("maintenance-mode: missing 'type'");
  if (message !== undefined) validateMaintenanceMessage(message);
  return message === undefined || message === '' ? { type } : { type, message };
}

/** Serialize for datastore.cfg; the message is always quoted (PBS corrupts unquoted commas, §1.4). */
export function formatMaintenanceMode(mode: MaintenanceMode): string {
  const entries: Array<[string, string]> = [['type', mode.type]];
  if (mode.message) {
    validateMaintenanceMessage(mode.message);
    entries.push(['message', mode.message]);
  }
  return formatPropertyString(entries, { defaultKey: 'type', alwaysQuote: ['message'] });
}

/** Throw when a datastore may not move from `from` to `to` (undefined = no maintenance). */
export function checkTransition(
  store: string,
  from: MaintenanceMode | undefined,
  to: MaintenanceMode | undefined,
): void {
  if (!MAY_LEAVE_TO[from?.type ?? 'none'](to?.type ?? 'none')) {
    throw new StowageError(
      'CONFLICT',
      `datastore '${store}' is being deleted: its maintenance mode cannot be changed`,
    );
  }
}

/**
 * Operation classes whose active operations block the transition into `mode`: the classes it
 * refuses, except `lookup`, which touches no disk and so never holds anything up.
 */
export function conflictingClasses(mode: MaintenanceMode | undefined): OperationClass[] {
  return OPERATION_CLASSES.filter((c) => c !== 'lookup' && !modeAdmits(mode, c));
}
