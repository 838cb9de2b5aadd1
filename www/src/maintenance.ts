/**
 * Maintenance mode as the UI sees it: the raw `maintenance-mode` property string from the API,
 * parsed for display, and the string the edit dialog sends back. The types, labels and which
 * operations each mode refuses come from the server's own table (src/api-types/maintenance.ts).
 */
import {
  conflictingClasses as serverConflictingClasses,
  isMaintenanceType,
  MAINTENANCE_TYPE_LABELS,
  MAX_MESSAGE_LENGTH,
  modeAdmits,
  type MaintenanceType,
  type OperationClass,
} from '../../src/api-types/maintenance.js';

export { MAX_MESSAGE_LENGTH, type MaintenanceType };

export interface MaintenanceMode {
  /** Known types; anything else is shown verbatim so an unknown mode is never hidden. */
  type: MaintenanceType | string;
  message?: string;
}

/**
 * Parse a property string such as `read-only,message="disk swap"` or the pre-3.2 spelling
 * `type=offline,message=x` (PBS reference §1.4). Quoted values allow `\"`, `\\` and `\n`.
 * Unlike PBS's old `parseMaintenanceMode` this does not split on the first comma, so a quoted
 * message containing commas is shown whole.
 */
export function parseMaintenance(raw: string | undefined | null): MaintenanceMode | undefined {
  if (!raw) return undefined;
  const props: Record<string, string> = {};
  let i = 0;
  while (i < raw.length) {
    let key = '';
    let value = '';
    let j = i;
    while (j < raw.length && raw[j] !== '=' && raw[j] !== ',') j++;
    if (raw[j] === '=') {
      key = raw.slice(i, j);
      j++;
    } else {
      key = 'type';
      j = i;
    }
    if (raw[j] === '"') {
      j++;
      while (j < raw.length && raw[j] !== '"') {
        if (raw[j] === '\\' && j + 1 < raw.length) {
          j++;
          value += raw[j] === 'n' ? '\n' : raw[j];
        } else value += raw[j];
        j++;
      }
      j++; // closing quote
    } else {
      const end = raw.indexOf(',', j);
      value = raw.slice(j, end === -1 ? raw.length : end);
      j = end === -1 ? raw.length : end;
    }
    props[key.trim()] = value;
    while (j < raw.length && raw[j] !== ',') j++;
    i = j + 1;
  }
  const type = props.type ?? 'unknown';
  return props.message ? { type, message: props.message } : { type };
}

/**
 * The property string for the PUT. The message is always quoted, with `\` and `"` escaped,
 * because PBS writes a comma-containing message unquoted and then cannot read it back (§1.4).
 */
export function formatMaintenance(type: MaintenanceType, message: string): string {
  if (!message) return type;
  return `${type},message="${message.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The form's check, mirroring the server's schema (at most 64 characters, no control chars). */
export function messageProblem(message: string): string | undefined {
  const length = [...message].length;
  if (length > MAX_MESSAGE_LENGTH) {
    return `The message is ${length} characters long; at most ${MAX_MESSAGE_LENGTH} are allowed.`;
  }
  const ctl = /[\u0000-\u001f\u007f-\u009f]/u.exec(message);
  if (ctl) {
    const code = ctl[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `The message must not contain control characters (found U+${code}).`;
  }
  return undefined;
}

/** "Read-only", "Offline", "Being deleted", "Unmounting", "S3 refresh"; an unknown type verbatim. */
export function typeLabel(type: string): string {
  return isMaintenanceType(type) ? MAINTENANCE_TYPE_LABELS[type] : type;
}

/** One line for titles and screen readers: "read-only maintenance: disk swap". */
export function describe(mode: MaintenanceMode): string {
  if (mode.type === 'delete') return 'datastore is being deleted';
  if (mode.type === 'unmount') return 'datastore is being unmounted';
  const name = mode.type === 's3-refresh' ? 'S3 refresh' : mode.type;
  return `${name} maintenance${mode.message ? `: ${mode.message}` : ''}`;
}

/** Operation classes whose running operations hold up the mode (lookup never does). */
export function conflictingClasses(mode: MaintenanceMode | undefined): string[] {
  if (mode === undefined) return [];
  // a type this UI does not know yet is assumed to refuse reads and writes, as the server would
  return isMaintenanceType(mode.type) ? serverConflictingClasses({ type: mode.type }) : ['read', 'ingest', 'reclaim'];
}

/** Whether the mode refuses operations of class `op` (an unknown type refuses reads and writes). */
export function refuses(mode: MaintenanceMode | undefined, op: OperationClass): boolean {
  if (mode === undefined) return false;
  return isMaintenanceType(mode.type) ? !modeAdmits({ type: mode.type }, op) : op !== 'lookup';
}
