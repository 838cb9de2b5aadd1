/**
 * Names that end up in paths or ACLs: backup types, ids, times, namespaces, datastore names,
 * user ids, auth ids and token names. The patterns are PBS's (`pbs-api-types/src/lib.rs`,
 * `datastore.rs`, `userid.rs`; reference §7.1), so a name one server accepts the other accepts
 * too. Every validator throws a BadRequestError naming the parameter; nothing that passes can
 * contain `/`, NUL, a leading dot or `..` as a path component, so joining validated parts can
 * never leave the directory they are joined to.
 */
import { BadRequestError } from '../errors.js';

/** PBS `PROXMOX_SAFE_ID_REGEX_STR`: no leading dot or dash, no slash, no whitespace. */
export const SAFE_ID_REGEX_STR = '[A-Za-z0-9_][A-Za-z0-9._\\-]*';
export const BACKUP_ID_REGEX_STR = SAFE_ID_REGEX_STR;
export const BACKUP_TYPE_REGEX_STR = '(?:host|vm|ct)';
export const BACKUP_TIME_REGEX_STR = '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z';
/**
 * PBS `USER_NAME_REGEX_STR` `[^\s:/[:cntrl:]]+`: colons are refused because user names are stored
 * in colon-separated lists, slashes because they delimit API paths. `[:cntrl:]` is ASCII only in
 * Rust's regex crate, hence the explicit range.
 */
export const USER_NAME_REGEX_STR = '[^\\s:/\\x00-\\x1f\\x7f]+';

export const SAFE_ID_REGEX = new RegExp(`^${SAFE_ID_REGEX_STR}$`);

/** PBS `UUID_FORMAT` (a removable datastore's `backing-device`): the canonical 8-4-4-4-12 hex form. */
export const FILESYSTEM_UUID_RE =
  /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
export const BACKUP_ID_REGEX = new RegExp(`^${BACKUP_ID_REGEX_STR}$`);
export const BACKUP_TYPE_REGEX = new RegExp(`^${BACKUP_TYPE_REGEX_STR}$`);
export const BACKUP_TIME_REGEX = new RegExp(`^${BACKUP_TIME_REGEX_STR}$`);
/** Files the snapshot list APIs consider (PBS `BACKUP_FILE_REGEX`). */
export const BACKUP_FILE_REGEX = /^.*\.([fd]idx|blob)$/;
export const USER_NAME_REGEX = new RegExp(`^${USER_NAME_REGEX_STR}$`, 'u');

export const BACKUP_TYPES = ['vm', 'ct', 'host'] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];

/** Root is depth 0, so there are eight levels in total (PBS `MAX_NAMESPACE_DEPTH`). */
export const MAX_NAMESPACE_DEPTH = 7;
/** Length of the `a/b/c` form, slashes included, without the `ns/` directories. */
export const MAX_NAMESPACE_LENGTH = 256;
export const DATASTORE_NAME_MIN_LENGTH = 3;
export const DATASTORE_NAME_MAX_LENGTH = 32;
/** PBS `Userid::API_SCHEMA` and `Authid::API_SCHEMA`. */
export const AUTH_ID_MIN_LENGTH = 3;
export const AUTH_ID_MAX_LENGTH = 64;
/** PBS `PROXMOX_AUTH_REALM_STRING_SCHEMA`. */
export const REALM_MIN_LENGTH = 3;
export const REALM_MAX_LENGTH = 32;
/** PBS `PROXMOX_TOKEN_NAME_SCHEMA`. */
export const TOKEN_NAME_MIN_LENGTH = 3;
export const TOKEN_NAME_MAX_LENGTH = 64;

/** Largest epoch whose RFC 3339 form still has a four-digit year (9999-12-31T23:59:59Z). */
export const MAX_BACKUP_TIME = 253402300799;

/** Echo a rejected value safely: control characters escaped, long values cut. */
function show(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  const escaped = text.replace(
    /[\x00-\x1f\x7f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return escaped.length > 80 ? `${escaped.slice(0, 77)}...` : escaped;
}

function invalid(param: string, value: unknown, why: string): BadRequestError {
  return new BadRequestError(`invalid ${param} '${show(value)}': ${why}`, { param });
}

function requireString(value: unknown, param: string): string {
  if (typeof value !== 'string') throw invalid(param, value, 'must be a string');
  return value;
}

/** `host`, `vm` or `ct`. */
export function parseBackupType(value: unknown, param = 'backup-type'): BackupType {
  const s = requireString(value, param);
  if (!BACKUP_TYPE_REGEX.test(s)) throw invalid(param, s, 'must be one of vm, ct, host');
  return s as BackupType;
}

/** A backup id such as `100` or `web01.example.com`. */
export function validateBackupId(value: unknown, param = 'backup-id'): string {
  const s = requireString(value, param);
  if (!BACKUP_ID_REGEX.test(s)) throw invalid(param, s, `must match ${BACKUP_ID_REGEX_STR}`);
  return s;
}

/** A backup time in epoch seconds: an integer from 1 (PBS `BACKUP_TIME_SCHEMA`) to year 9999. */
export function validateBackupEpoch(value: unknown, param = 'backup-time'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_BACKUP_TIME) {
    throw invalid(param, value, `must be an integer epoch from 1 to ${MAX_BACKUP_TIME}`);
  }
  return value;
}

/** Epoch seconds to the snapshot directory name, RFC 3339 UTC with second resolution. */
export function backupTimeToString(epoch: number, param = 'backup-time'): string {
  validateBackupEpoch(epoch, param);
  return new Date(epoch * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A snapshot directory name back to epoch seconds. Only the exact PBS form is accepted (no
 * offsets, no fractions), and the date must exist: `2024-02-30T00:00:00Z` is refused rather than
 * silently rolled over into March.
 */
export function backupTimeFromString(value: unknown, param = 'backup-time'): number {
  const s = requireString(value, param);
  const why = 'must be a UTC time of the form YYYY-MM-DDTHH:MM:SSZ';
  if (!BACKUP_TIME_REGEX.test(s)) throw invalid(param, s, why);
  const ms = Date.parse(s);
  if (!Number.isFinite(ms)) throw invalid(param, s, why);
  const epoch = ms / 1000;
  if (epoch < 1 || new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') !== s) throw invalid(param, s, why);
  return epoch;
}

/** One namespace level (a safe-id); the parameter name says where it came from. */
export function validateNamespaceComponent(value: unknown, param = 'ns'): string {
  const s = requireString(value, param);
  if (!SAFE_ID_REGEX.test(s))
    throw invalid(param, s, `each namespace component must match ${SAFE_ID_REGEX_STR}`);
  return s;
}

/**
 * The `ns` parameter (`a/b/c`, empty for the root namespace) into its components, checking each
 * component, the depth (at most 7) and the total length (at most 256), as PBS's
 * `BackupNamespace::new`.
 */
export function parseNamespace(value: unknown, param = 'ns'): string[] {
  const s = requireString(value, param);
  if (s === '') return [];
  if (s.length > MAX_NAMESPACE_LENGTH) {
    throw invalid(param, s, `namespace longer than ${MAX_NAMESPACE_LENGTH} characters`);
  }
  const parts = s.split('/');
  if (parts.length > MAX_NAMESPACE_DEPTH) {
    throw invalid(param, s, `namespace deeper than ${MAX_NAMESPACE_DEPTH} levels`);
  }
  for (const part of parts) {
    if (!SAFE_ID_REGEX.test(part)) {
      throw invalid(param, s, `component '${show(part)}' must match ${SAFE_ID_REGEX_STR}`);
    }
  }
  return parts;
}

/** Check already split components (depth, length, each a safe-id). */
export function validateNamespaceComponents(parts: readonly string[], param = 'ns'): string[] {
  for (const part of parts) validateNamespaceComponent(part, param);
  return parseNamespace(parts.join('/'), param);
}

/** A datastore name: a safe-id of 3 to 32 characters (PBS `DATASTORE_SCHEMA`). */
export function validateDatastoreName(value: unknown, param = 'store'): string {
  const s = requireString(value, param);
  if (s.length < DATASTORE_NAME_MIN_LENGTH || s.length > DATASTORE_NAME_MAX_LENGTH) {
    throw invalid(
      param,
      s,
      `must be ${DATASTORE_NAME_MIN_LENGTH} to ${DATASTORE_NAME_MAX_LENGTH} characters long`,
    );
  }
  if (!SAFE_ID_REGEX.test(s)) throw invalid(param, s, `must match ${SAFE_ID_REGEX_STR}`);
  return s;
}

/** An authentication realm such as `pam` or `pbs`: a safe-id of 3 to 32 characters. */
export function validateRealm(value: unknown, param = 'realm'): string {
  const s = requireString(value, param);
  if (s.length < REALM_MIN_LENGTH || s.length > REALM_MAX_LENGTH || !SAFE_ID_REGEX.test(s)) {
    throw invalid(
      param,
      s,
      `must match ${SAFE_ID_REGEX_STR} with ${REALM_MIN_LENGTH} to ${REALM_MAX_LENGTH} characters`,
    );
  }
  return s;
}

/** An API token name as given to the token API: a safe-id of 3 to 64 characters. */
export function validateTokenName(value: unknown, param = 'token-name'): string {
  const s = requireString(value, param);
  if (s.length < TOKEN_NAME_MIN_LENGTH || s.length > TOKEN_NAME_MAX_LENGTH || !SAFE_ID_REGEX.test(s)) {
    throw invalid(
      param,
      s,
      `must match ${SAFE_ID_REGEX_STR} with ${TOKEN_NAME_MIN_LENGTH} to ${TOKEN_NAME_MAX_LENGTH} characters`,
    );
  }
  return s;
}

export interface Userid {
  /** `name@realm` */
  readonly userid: string;
  readonly name: string;
  readonly realm: string;
}

export interface Authid extends Userid {
  /** `name@realm` or `name@realm!token` */
  readonly authid: string;
  readonly tokenName?: string;
}

function splitUserid(s: string, param: string, original: string): Userid {
  // PBS splits at the last '@': the user name part may itself contain '@'.
  const at = s.lastIndexOf('@');
  if (at < 0) throw invalid(param, original, 'must have the form user@realm');
  const name = s.slice(0, at);
  const realm = s.slice(at + 1);
  if (!USER_NAME_REGEX.test(name)) {
    throw invalid(
      param,
      original,
      'the user name part must not be empty nor contain whitespace, control characters, : or /',
    );
  }
  if (realm.length < REALM_MIN_LENGTH || realm.length > REALM_MAX_LENGTH || !SAFE_ID_REGEX.test(realm)) {
    throw invalid(
      param,
      original,
      `the realm must match ${SAFE_ID_REGEX_STR} with ${REALM_MIN_LENGTH} to ${REALM_MAX_LENGTH} characters`,
    );
  }
  return { userid: s, name, realm };
}

function checkAuthLength(s: string, param: string): void {
  if (s.length < AUTH_ID_MIN_LENGTH || s.length > AUTH_ID_MAX_LENGTH) {
    throw invalid(param, s, `must be ${AUTH_ID_MIN_LENGTH} to ${AUTH_ID_MAX_LENGTH} characters long`);
  }
}

/** A user id `name@realm` (PBS `Userid`); refuses token ids. */
export function parseUserid(value: unknown, param = 'userid'): Userid {
  const s = requireString(value, param);
  checkAuthLength(s, param);
  return splitUserid(s, param, s);
}

/**
 * A user or token id, `name@realm` or `name@realm!token` (PBS `Authid`): the token separator is
 * the last `!` after the last `@`. The token part is checked against the safe-id pattern only, as
 * PBS's `Tokenname` does; the overall length limit applies to the whole id.
 */
export function parseAuthid(value: unknown, param = 'auth-id'): Authid {
  const s = requireString(value, param);
  checkAuthLength(s, param);
  const at = s.lastIndexOf('@');
  const bang = s.lastIndexOf('!');
  if (at >= 0 && bang > at) {
    const tokenName = s.slice(bang + 1);
    if (!SAFE_ID_REGEX.test(tokenName)) {
      throw invalid(param, s, `the token name must match ${SAFE_ID_REGEX_STR}`);
    }
    const user = splitUserid(s.slice(0, bang), param, s);
    return { ...user, authid: s, tokenName };
  }
  return { ...splitUserid(s, param, s), authid: s };
}
