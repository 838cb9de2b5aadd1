/**
 * Maintenance modes on the server side (design: maintenance.md §1, §5; PBS: reference §1): the
 * stored property string's codec, the refusal error and the transition rule. The mode × class
 * table itself is in src/api-types/maintenance.ts, shared with the CLI and the web UI. Pure.
 */
import { BadRequestError, ERR_DATASTORE_BEING_DELETED, StowageError } from '../errors.js';
import { formatPropertyString, parsePropertyString } from '../config/property-string.js';
import {
  MAINTENANCE_TYPES,
  MAX_MESSAGE_LENGTH,
  describeHold,
  describeMode,
  holdAdmits,
  modeAdmits,
  type MaintenanceMode,
  type MaintenanceType,
  type OperationClass,
  type SystemHold,
} from '../api-types/maintenance.js';

export {
  conflictingClasses,
  describeHold,
  describeMode,
  holdAdmits,
  holdConflictingClasses,
  isWriteClass,
  HOLD_TYPES,
  MAINTENANCE_TYPES,
  MAX_MESSAGE_LENGTH,
  modeAdmits,
  OPERATION_CLASSES,
  OPERATOR_SETTABLE,
  WRITE_CLASSES,
  type HoldType,
  type MaintenanceMode,
  type MaintenanceType,
  type OperationClass,
  type SystemHold,
  type WriteClass,
} from '../api-types/maintenance.js';

/**
 * The modes a datastore may move to from each mode (PBS 4 `set_maintenance_mode`, §1.5): nothing
 * leaves `delete`; `unmount` may be left to anything ("used to reset it after failed unmount, or
 * alternative for aborting unmount task"), `s3-refresh` too ("reset state after refresh finished").
 */
const MAY_LEAVE_TO: Record<MaintenanceType | 'none', (to: MaintenanceType | 'none') => boolean> = {
  none: () => true,
  'read-only': () => true,
  sealed: () => true,
  offline: () => true,
  delete: (to) => to === 'delete',
  unmount: () => true,
  's3-refresh': () => true,
};

function isHold(cause: MaintenanceMode | SystemHold): cause is SystemHold {
  return 'source' in cause;
}

/**
 * The refusal of an admission by the operator's maintenance mode or by a system hold: HTTP 503,
 * CLI exit code MAINTENANCE. Exactly one of `mode` and `hold` is set.
 */
export class MaintenanceError extends StowageError {
  readonly store: string;
  readonly mode?: MaintenanceMode;
  readonly hold?: SystemHold;
  constructor(store: string, cause: MaintenanceMode | SystemHold) {
    const reason = isHold(cause) ? describeHold(cause) : describeMode(cause);
    super('MAINTENANCE', `datastore '${store}' is unavailable: ${reason}`);
    this.store = store;
    if (isHold(cause)) this.hold = cause;
    else this.mode = cause;
  }
}

/**
 * Throw MaintenanceError when the operator's `mode` or one of the system `holds` refuses an
 * operation of class `op` (and kind `kind`, which the drain hold looks at) on `store`. The mode
 * is checked first: its message is the operator's, and it outlives a hold.
 */
export function checkMaintenance(
  store: string,
  mode: MaintenanceMode | undefined,
  op: OperationClass,
  holds: readonly SystemHold[] = [],
  kind?: string,
): void {
  if (mode && !modeAdmits(mode, op)) throw new MaintenanceError(store, mode);
  const hold = holds.find((h) => !holdAdmits(h, op, kind));
  if (hold) throw new MaintenanceError(store, hold);
}

/**
 * Validate a message: at most 64 characters, no control characters (PBS schema, §1.3). `field`
 * names where it came from in the error (a maintenance window's `message` too).
 */
export function validateMaintenanceMessage(message: string, field = 'maintenance-mode'): void {
  const details = field === 'maintenance-mode' ? undefined : { param: field };
  const what = field === 'maintenance-mode' ? 'maintenance-mode: message' : field;
  if ([...message].length > MAX_MESSAGE_LENGTH) {
    throw new BadRequestError(
      `${what} is ${[...message].length} characters long, at most ${MAX_MESSAGE_LENGTH} are allowed`,
      details,
    );
  }
  const ctl = /[\u0000-\u001f\u007f-\u009f]/u.exec(message);
  if (ctl) {
    const code = ctl[0].codePointAt(0)!.toString(16).padStart(4, '0');
    throw new BadRequestError(`${what} must not contain control characters (found U+${code})`, details);
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
    throw ERR_DATASTORE_BEING_DELETED(store);
  }
}
