/**
 * Changing a datastore's configuration (PBS `update_datastore`, reference §6.1): the one path for
 * the API (`PUT /config/datastore/{name}`) and through it the admin CLI.
 *
 * Order as PBS: digest check, `delete` list, fields, maintenance-mode parse (400 naming
 * `maintenance-mode`) and transition check. Everything that can be validated is validated before
 * anything is written, so bad input leaves datastore.cfg byte-identical. Then one write: with a
 * mode change it is the admission backend's `setMode` (atomic with admissions, design §3
 * invariant 1) carrying the other fields along; without one, a plain write under the change lock.
 */
import { KEEP_OPTION_NAMES } from '../api-types/prune-options.js';
import { validateCalendarEvent } from '../api-types/calendar-event.js';
import {
  PERCENT_KEYS,
  validateDatastoreConfig,
  type DatastoreConfig,
  type PercentKey,
} from '../config/datastore-config.js';
import { BadRequestError, ConfigModifiedError, NotFoundError, ParameterError } from '../errors.js';
import { storedMaintenanceMode, type DatastoreAccess } from './datastore-access.js';
import { conflictingOperations, setMaintenanceMode } from './maintenance-control.js';
import type { OperationRecord } from './operation-registry.js';
import {
  checkTransition,
  OPERATOR_SETTABLE,
  parseMaintenanceMode,
  type MaintenanceMode,
} from './maintenance-mode.js';

export type StringField = 'comment' | 'gc-schedule' | 'notification-mode' | 'notify-user' | 'tuning';
export const STRING_FIELDS: readonly StringField[] = [
  'comment',
  'gc-schedule',
  'notification-mode',
  'notify-user',
  'tuning',
];
/**
 * Properties kept in `extra`, as PBS writes them: `notify` (Stowage only stores it) and
 * `gc-on-unmount` (read by the unmount of a removable datastore, removable-datastore.ts).
 */
const EXTRA_FIELDS = ['notify', 'gc-on-unmount'] as const;

/** PBS `DeletableProperty` of the datastore update. */
const DELETABLE = new Set([
  'comment',
  'gc-schedule',
  'prune-schedule',
  ...KEEP_OPTION_NAMES,
  'verify-new',
  'notify-user',
  'notify',
  'notification-mode',
  'tuning',
  'maintenance-mode',
  'gc-on-unmount',
  // PBS 4; Stowage only stores them
  'notification-thresholds',
  'counter-reset-schedule',
  // Stowage's low-space thresholds (back to their defaults)
  ...PERCENT_KEYS,
]);

/** The fields a client may set on create and update (PBS DataStoreConfigUpdater, minus the mode). */
export type DatastoreFields = Partial<Record<StringField | 'notify', string>> & {
  'verify-new'?: boolean;
  'gc-on-unmount'?: boolean;
} & Partial<Record<PercentKey, number>>;

/** `delete` as an array or a comma/semicolon/space separated list (PBS's CLI and GUI send both). */
function parseDeleteList(value: string | readonly string[] | undefined): string[] {
  const items = [value ?? []]
    .flat()
    .flatMap((v) => v.split(/[,;\s]+/))
    .filter((v) => v !== '');
  for (const item of items) {
    if (!DELETABLE.has(item)) {
      throw new BadRequestError(`parameter verification failed - 'delete': unknown property '${item}'`);
    }
  }
  return items;
}

/**
 * Parse a maintenance-mode given by an operator, never `delete`: a bad one is PBS's 400
 * `parameter verification failed - 'maintenance-mode': ...`, with the parameter in `errors`.
 */
export function operatorMode(text: string): MaintenanceMode {
  const refusal = (message: string) =>
    new ParameterError([{ param: 'maintenance-mode', message: message.replace(/^maintenance-mode: /, '') }]);
  let mode: MaintenanceMode;
  try {
    mode = parseMaintenanceMode(text);
  } catch (err) {
    throw err instanceof BadRequestError ? refusal(err.message) : err;
  }
  if (!OPERATOR_SETTABLE.includes(mode.type)) {
    throw refusal(
      `type '${mode.type}' cannot be set by hand (only ${OPERATOR_SETTABLE.join(', ')}; 'delete' is set by removing the datastore)`,
    );
  }
  return mode;
}

interface FieldChanges {
  set: DatastoreFields;
  remove: string[];
}

/** Apply set fields and removed properties to `cfg` in place (the mode is `setMode`'s business). */
export function applyFields(cfg: DatastoreConfig, changes: FieldChanges): void {
  for (const key of changes.remove) {
    if (key === 'maintenance-mode') continue;
    if (
      key === 'verify-new' ||
      (STRING_FIELDS as readonly string[]).includes(key) ||
      (PERCENT_KEYS as readonly string[]).includes(key)
    ) {
      delete cfg[key as StringField | 'verify-new' | PercentKey];
    } else {
      cfg.extra = (cfg.extra ?? []).filter(([k]) => k !== key);
    }
  }
  for (const [key, value] of Object.entries(changes.set)) {
    if (value === undefined) continue;
    if ((EXTRA_FIELDS as readonly string[]).includes(key)) {
      const extra = (cfg.extra ?? []).filter(([k]) => k !== key);
      const at = (cfg.extra ?? []).findIndex(([k]) => k === key);
      extra.splice(at < 0 ? extra.length : at, 0, [key, String(value)]);
      cfg.extra = extra;
    } else if (key === 'verify-new') {
      cfg['verify-new'] = value as boolean;
    } else if ((PERCENT_KEYS as readonly string[]).includes(key)) {
      cfg[key as PercentKey] = value as number;
    } else {
      cfg[key as StringField] = value as string;
    }
  }
  if (cfg.extra?.length === 0) delete cfg.extra;
}

/** A configuration as written: valid for datastore.cfg, and a gc-schedule the scheduler understands. */
export function validateNewConfig(cfg: DatastoreConfig): void {
  validateDatastoreConfig(cfg);
  if (cfg['gc-schedule'] !== undefined) validateCalendarEvent(cfg['gc-schedule'], 'gc-schedule');
}

/** An unfrozen deep copy of a stored config. */
function copyConfig(cfg: DatastoreConfig): DatastoreConfig {
  return { ...cfg, ...(cfg.extra && { extra: cfg.extra.map(([k, v]) => [k, v] as [string, string]) }) };
}

/** PBS's updater: fields to set, properties to delete, the mode, and the guards. */
export interface DatastoreUpdate {
  set: DatastoreFields;
  delete?: string | readonly string[];
  'maintenance-mode'?: string;
  digest?: string;
  /** Stowage: refuse a mode change (ConflictingOperationsError, 409) while conflicting operations run. */
  ifIdle?: boolean;
  /** Who asks, for the maintenance history. */
  authId?: string;
}

export interface DatastoreUpdateResult {
  /** The configuration digest after the update. */
  digest: string;
  /** Operations still running that the mode now in force refuses. */
  conflicting: number;
  /** The GC schedule changed: a new one starts from now (the caller resets the GC job state). */
  gcScheduleChanged: boolean;
}

/** What an update was checked to be, before anything is written. */
interface CheckedUpdate {
  digest: string;
  changes: FieldChanges;
  /** Present when the update changes the mode (`mode` undefined: cleared). */
  modeChange: { mode: MaintenanceMode | undefined } | undefined;
  /** The mode in force before the update (undefined for none or an unparsable stored value). */
  modeBefore: MaintenanceMode | undefined;
  hasFieldChanges: boolean;
  gcScheduleChanged: boolean;
}

/** Validate `update` against the stored configuration; throws what the update would answer. */
function checkUpdate(access: DatastoreAccess, name: string, update: DatastoreUpdate): CheckedUpdate {
  const current = access.config.read();
  if (update.digest !== undefined && update.digest !== current.digest) throw new ConfigModifiedError();
  const stored = current.stores.get(name);
  if (!stored) throw new NotFoundError(`datastore '${name}' does not exist`);
  const remove = parseDeleteList(update.delete);
  const changes: FieldChanges = { set: update.set, remove };
  const candidate = copyConfig(stored);
  applyFields(candidate, changes);
  validateNewConfig(candidate);
  let modeBefore: MaintenanceMode | undefined;
  try {
    modeBefore = storedMaintenanceMode(stored);
  } catch {
    modeBefore = undefined; // an unparsable stored value may be replaced (setMode agrees)
  }
  let modeChange: CheckedUpdate['modeChange'];
  if (remove.includes('maintenance-mode')) modeChange = { mode: undefined };
  const modeText = update['maintenance-mode'];
  if (modeText !== undefined) modeChange = { mode: operatorMode(modeText) };
  if (modeChange) checkTransition(name, modeBefore, modeChange.mode);
  return {
    digest: current.digest,
    changes,
    modeChange,
    modeBefore,
    hasFieldChanges:
      remove.some((k) => k !== 'maintenance-mode') || Object.values(update.set).some((v) => v !== undefined),
    gcScheduleChanged: candidate['gc-schedule'] !== stored['gc-schedule'],
  };
}

/** What an update would do, answered without doing it (`dry-run`). */
export interface DatastoreUpdatePreview {
  /** The mode that would be in force afterwards (undefined: none). */
  mode: MaintenanceMode | undefined;
  /** Whether the update changes the mode at all. */
  modeChanges: boolean;
  /**
   * Operations running now that the resulting mode refuses: they would go on running (graceful),
   * block the drain, or make an `if-idle` change refused.
   */
  conflicting: OperationRecord[];
}

/**
 * Check `update` exactly as `updateDatastore` would (the same 400/404/409 refusals) and say what it
 * would do to running operations, writing nothing: datastore.cfg stays byte-identical.
 */
export async function previewDatastoreUpdate(
  access: DatastoreAccess,
  name: string,
  update: DatastoreUpdate,
): Promise<DatastoreUpdatePreview> {
  const checked = checkUpdate(access, name, update);
  const mode = checked.modeChange ? checked.modeChange.mode : checked.modeBefore;
  return {
    mode,
    modeChanges: checked.modeChange !== undefined,
    conflicting: await conflictingOperations(access, name, mode),
  };
}

/**
 * Update datastore `name` as PBS does, writing datastore.cfg once. A maintenance-mode change is
 * graceful: running operations finish, new conflicting ones are refused from the moment this
 * returns (or, with `ifIdle`, ConflictingOperationsError and nothing changes).
 */
export async function updateDatastore(
  access: DatastoreAccess,
  name: string,
  update: DatastoreUpdate,
): Promise<DatastoreUpdateResult> {
  // 1. validate everything before writing anything
  const { changes, modeChange, hasFieldChanges, gcScheduleChanged, ...checked } = checkUpdate(
    access,
    name,
    update,
  );

  // 2. one write: the mode atomically with admissions, the other fields along with it
  let digest = update.digest ?? checked.digest;
  if (modeChange) {
    const r = await setMaintenanceMode(access, name, modeChange.mode, {
      ifIdle: update.ifIdle,
      digest: update.digest,
      ...(update.authId !== undefined && { authId: update.authId }),
      ...(hasFieldChanges && { alsoApply: (cfg: DatastoreConfig) => applyFields(cfg, changes) }),
    });
    digest = r.digest;
  } else if (hasFieldChanges) {
    const lock = await access.lockConfig('change');
    try {
      const snap = await access.config.update(
        (stores) => {
          const cfg = stores.get(name);
          if (!cfg) throw new NotFoundError(`datastore '${name}' does not exist`);
          applyFields(cfg, changes);
        },
        { digest: update.digest, lockHeld: true },
      );
      digest = snap.digest;
    } finally {
      lock.release();
    }
  }

  let conflicting = 0;
  try {
    const cfg = access.datastoreConfig(name);
    conflicting = (await conflictingOperations(access, name, storedMaintenanceMode(cfg))).length;
  } catch {
    conflicting = 0;
  }
  return { digest, conflicting, gcScheduleChanged: hasFieldChanges && gcScheduleChanged };
}
