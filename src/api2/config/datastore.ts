/**
 * `/config/datastore` and `/config/datastore/{name}` (PBS `src/api2/config/datastore.rs`,
 * reference §6.1): list, create, read, update (including `maintenance-mode`), remove.
 *
 * Maintenance changes go through `setMaintenanceMode`, which writes the mode under the lock every
 * admission holds, so once the PUT returns no new conflicting operation is admitted (design §3
 * invariant 1). Graceful by default: operations already running go on, and the response says how
 * many (`conflicting` attribute). Stowage's `if-idle` refuses the change instead (409 with the
 * operations) while any conflicting operation runs.
 *
 * Update order as PBS: digest check, `delete` list, fields, maintenance-mode parse (400 naming
 * `maintenance-mode`) and transition check. Everything that can be validated is validated before
 * anything is written, so bad input leaves datastore.cfg byte-identical.
 */
import { validateCalendarEvent } from '../../api-types/calendar-event.js';
import { pruneJobConfig, verifyJobConfig } from '../../config/job-config.js';
import { removeJobState } from '../../server/jobs/job-state.js';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import {
  BadRequestError,
  ConfigModifiedError,
  NotFoundError,
  ParameterError,
  StowageError,
} from '../../errors.js';
import {
  datastoreAbsolutePath,
  parseDatastoreBackend,
  validateDatastoreConfig,
  type DatastoreConfig,
} from '../../config/datastore-config.js';
import { Datastore } from '../../datastore/datastore.js';
import type { DatastoreAccess } from '../../maintenance/datastore-access.js';
import { storedMaintenanceMode } from '../../maintenance/datastore-access.js';
import {
  ConflictingOperationsError,
  conflictingOperations,
  setMaintenanceMode,
} from '../../maintenance/maintenance-control.js';
import {
  checkTransition,
  formatMaintenanceMode,
  OPERATOR_SETTABLE,
  parseMaintenanceMode,
  type MaintenanceMode,
} from '../../maintenance/maintenance-mode.js';
import { removeDatastore } from '../../maintenance/remove-datastore.js';
import { checkSupportedDatastore } from '../../maintenance/unsupported-datastore.js';
import { defineRoute, filtered, type AnyRoute } from '../../server/route.js';
import { CommentSchema, DigestSchema, UseridSchema } from '../../server/schemas.js';
import { operationItem, StoreSchema } from '../admin/datastore/common.js';

const NAME_PARAMS = Type.Object({ name: StoreSchema });
const SingleLine = Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', maxLength: 256 });

/** Fields a client may set on create and update (PBS DataStoreConfig, minus name and path). */
const UpdatableFields = {
  comment: Type.Optional(CommentSchema),
  'gc-schedule': Type.Optional(SingleLine),
  'maintenance-mode': Type.Optional(Type.String({ maxLength: 1024 })),
  'notification-mode': Type.Optional(
    Type.Union([Type.Literal('legacy-sendmail'), Type.Literal('notification-system')]),
  ),
  'notify-user': Type.Optional(UseridSchema),
  notify: Type.Optional(SingleLine),
  tuning: Type.Optional(SingleLine),
  'verify-new': Type.Optional(Type.Boolean()),
};

type StringField = 'comment' | 'gc-schedule' | 'notification-mode' | 'notify-user' | 'tuning';
const STRING_FIELDS: readonly StringField[] = [
  'comment',
  'gc-schedule',
  'notification-mode',
  'notify-user',
  'tuning',
];
/** Properties kept in `extra` (PBS knows them, Stowage only stores them). */
const EXTRA_FIELDS = ['notify'] as const;

/** PBS `DeletableProperty` of the datastore update. */
const DELETABLE = new Set([
  'comment',
  'gc-schedule',
  'prune-schedule',
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
  'verify-new',
  'notify-user',
  'notify',
  'notification-mode',
  'tuning',
  'maintenance-mode',
  // PBS 4; Stowage only stores them
  'gc-on-unmount',
  'notification-thresholds',
  'counter-reset-schedule',
]);

/** A datastore's configuration as PBS sends it (kebab-case keys, keep-* as numbers). */
export function datastoreConfigJson(cfg: DatastoreConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { name: cfg.name, path: cfg.path };
  for (const key of ['maintenance-mode', 'backing-device', 'backend', ...STRING_FIELDS] as const) {
    if (cfg[key] !== undefined) out[key] = cfg[key];
  }
  if (cfg['verify-new'] !== undefined) out['verify-new'] = cfg['verify-new'];
  for (const [key, value] of cfg.extra ?? []) {
    if (/^keep-/.test(key) && /^[0-9]+$/.test(value)) out[key] = Number(value);
    else if (key === 'gc-on-unmount' && /^(true|false)$/.test(value)) out[key] = value === 'true';
    else out[key] = value;
  }
  return out;
}

/** `delete` as an array or a comma/semicolon/space separated list (PBS's CLI and GUI send both). */
function parseDeleteList(value: string | string[] | undefined): string[] {
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
function operatorMode(text: string): MaintenanceMode {
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
  set: Partial<Record<StringField | 'notify', string>> & { 'verify-new'?: boolean };
  remove: string[];
}

function applyFields(cfg: DatastoreConfig, changes: FieldChanges): void {
  for (const key of changes.remove) {
    if (key === 'maintenance-mode') continue; // setMaintenanceMode's business
    if (key === 'verify-new' || (STRING_FIELDS as readonly string[]).includes(key)) {
      delete cfg[key as StringField | 'verify-new'];
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
    } else {
      cfg[key as StringField] = value as string;
    }
  }
  if (cfg.extra?.length === 0) delete cfg.extra;
}

/** gc-schedule must be a calendar event the scheduler understands. */
function validateSchedule(cfg: DatastoreConfig): void {
  if (cfg['gc-schedule'] !== undefined) validateCalendarEvent(cfg['gc-schedule'], 'gc-schedule');
}

/** An unfrozen deep copy of a stored config. */
function copyConfig(cfg: DatastoreConfig): DatastoreConfig {
  return { ...cfg, ...(cfg.extra && { extra: cfg.extra.map(([k, v]) => [k, v] as [string, string]) }) };
}

/**
 * Send a 409 for conflicting operations with the list in the envelope: `errors` names the
 * parameter that asked for idleness, `details.operations` lists them in the active-operations shape.
 */
function sendConflict(reply: FastifyReply, err: ConflictingOperationsError, param: string): FastifyReply {
  void reply.status(err.status).send({
    data: null,
    message: err.message,
    errors: { [param]: `${err.operations.length} conflicting operation(s) active` },
    details: { operations: err.operations.map(operationItem) },
  });
  return reply;
}

function normalizePath(path: string): string {
  if (!isAbsolute(path)) {
    throw new BadRequestError(`parameter verification failed - 'path': path must be absolute, not '${path}'`);
  }
  const p = resolve(path);
  if (p === '/')
    throw new BadRequestError("parameter verification failed - 'path': refusing the root directory");
  return p;
}

/** Refuse a path inside another datastore, containing one, or an existing non-empty directory. */
function checkNewPath(access: DatastoreAccess, path: string): void {
  for (const other of access.config.read().stores.values()) {
    // a removable datastore's path is relative to its device; it lives at its mount point (PBS)
    const o = resolve(datastoreAbsolutePath(other));
    if (path === o || path.startsWith(`${o}/`) || o.startsWith(`${path}/`)) {
      throw new BadRequestError(
        `parameter verification failed - 'path': '${path}' overlaps datastore '${other.name}' at '${o}'`,
      );
    }
  }
  if (!existsSync(path)) return;
  if (!statSync(path).isDirectory()) {
    throw new BadRequestError(`parameter verification failed - 'path': '${path}' is not a directory`);
  }
  const entries = readdirSync(path).filter((e) => e !== 'lost+found');
  if (entries.length > 0) {
    throw new BadRequestError(`parameter verification failed - 'path': directory '${path}' is not empty`);
  }
}

/**
 * PBS 4 create parameters for datastores this version cannot serve: accepted by the schema so the
 * refusal names them (rather than "additional properties"), then refused.
 */
const UnsupportedCreateFields = {
  'backing-device': Type.Optional(
    Type.String({ description: 'PBS 4 removable datastores: not supported by this Stowage version.' }),
  ),
  backend: Type.Optional(
    Type.String({ description: 'PBS 4 datastore backends (S3): not supported by this Stowage version.' }),
  ),
};

/** 400 naming the parameter: Stowage cannot create removable or S3 datastores (yet). */
function refuseUnsupportedCreate(backingDevice: string | undefined, backend: string | undefined): void {
  if (backingDevice !== undefined) {
    throw new BadRequestError(
      "parameter verification failed - 'backing-device': removable datastores are not supported by this Stowage version",
      { param: 'backing-device' },
    );
  }
  if (backend === undefined) return;
  const type = (() => {
    try {
      return parseDatastoreBackend({ name: 'new', path: '/', backend }).type;
    } catch {
      return undefined;
    }
  })();
  if (type !== 'filesystem') {
    throw new BadRequestError(
      `parameter verification failed - 'backend': datastore backends other than the local filesystem (here '${backend}') are not supported by this Stowage version`,
      { param: 'backend' },
    );
  }
}

/** Names being created by a running task, per server, so two creations cannot race. */
const creating = new WeakMap<DatastoreAccess, Set<string>>();

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/config/datastore',
    permission: filtered('only the datastores on which the caller has Datastore.Audit'),
    description:
      'List the datastore configurations (with the `digest` attribute), filtered to the stores on ' +
      'which the caller has Datastore.Audit.',
    handler: ({ authId, userInfo, server, setAttribute }) => {
      const { stores, digest } = server.datastores.config.read();
      setAttribute('digest', digest);
      return [...stores.values()]
        .filter((cfg) => userInfo.hasPrivs(authId, `/datastore/${cfg.name}`, ['Datastore.Audit']))
        .map(datastoreConfigJson);
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/config/datastore/:name',
    params: NAME_PARAMS,
    permission: { path: '/datastore/{name}', privs: ['Datastore.Audit'] },
    description: 'Read one datastore configuration, with the `digest` attribute.',
    handler: ({ params, server, setAttribute }) => {
      const { stores, digest } = server.datastores.config.read();
      const cfg = stores.get(params.name);
      if (!cfg) throw new NotFoundError(`datastore '${params.name}' does not exist`);
      setAttribute('digest', digest);
      return datastoreConfigJson(cfg);
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/config/datastore',
    body: Type.Object({
      name: StoreSchema,
      path: Type.String({ minLength: 1, maxLength: 4096 }),
      ...UpdatableFields,
      ...UnsupportedCreateFields,
    }),
    permission: { path: '/datastore', privs: ['Datastore.Allocate'] },
    protected: true,
    returns: Type.String({ description: 'UPID of the create-datastore task.' }),
    description:
      'Create a datastore as a `create-datastore` task (creating the chunk store takes a while) and ' +
      'return its UPID. The path must be absolute, outside every other datastore, and a missing or ' +
      'empty directory. Prune settings belong to prune jobs (/config/prune).',
    handler: ({ body, authId, server }) => {
      const access = server.datastores;
      const {
        name,
        path: rawPath,
        'maintenance-mode': modeText,
        'backing-device': backingDevice,
        backend,
        ...fields
      } = body;
      refuseUnsupportedCreate(backingDevice, backend);
      const path = normalizePath(rawPath);
      const candidate: DatastoreConfig = { name, path, ...(backend !== undefined && { backend }) };
      applyFields(candidate, { set: fields, remove: [] });
      if (modeText !== undefined)
        candidate['maintenance-mode'] = formatMaintenanceMode(operatorMode(modeText));
      validateDatastoreConfig(candidate);
      validateSchedule(candidate);
      const pending = creating.get(access) ?? new Set<string>();
      creating.set(access, pending);
      if (access.config.read().stores.has(name) || pending.has(name)) {
        throw new StowageError('ALREADY_EXISTS', `datastore '${name}' already exists.`);
      }
      checkNewPath(access, path);
      for (const p of pending) {
        if (p === path || p.startsWith(`${path}/`) || path.startsWith(`${p}/`)) {
          throw new BadRequestError(`parameter verification failed - 'path': '${path}' is being created`);
        }
      }
      pending.add(name);
      pending.add(path);
      const existed = existsSync(path);
      try {
        return server.tasks.spawnTask('create-datastore', name, authId, async (task) => {
          try {
            task.log(`create datastore '${name}' at ${path}`);
            Datastore.create(name, path, { runDir: server.paths.runDir }).close();
            task.log('chunk store created');
            const lock = await access.lockConfig('change');
            try {
              await access.config.update(
                (stores) => {
                  if (stores.has(name))
                    throw new StowageError('ALREADY_EXISTS', `datastore '${name}' already exists.`);
                  stores.set(name, candidate);
                },
                { lockHeld: true },
              );
            } catch (err) {
              // leave nothing behind that would make the path unusable for the next attempt
              if (existed)
                for (const e of ['.chunks', '.lock']) rmSync(join(path, e), { recursive: true, force: true });
              else rmSync(path, { recursive: true, force: true });
              throw err;
            } finally {
              lock.release();
            }
            task.log(`datastore '${name}' added to the configuration`);
          } finally {
            pending.delete(name);
            pending.delete(path);
          }
        });
      } catch (err) {
        pending.delete(name);
        pending.delete(path);
        throw err;
      }
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/config/datastore/:name',
    params: NAME_PARAMS,
    body: Type.Object({
      ...UpdatableFields,
      delete: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
      digest: Type.Optional(DigestSchema),
      'if-idle': Type.Optional(
        Type.Boolean({
          description:
            'Stowage: refuse the maintenance-mode change (409 with the operations) while operations ' +
            'it would refuse are running, instead of letting them finish.',
        }),
      ),
    }),
    permission: { path: '/datastore/{name}', privs: ['Datastore.Modify'] },
    protected: true,
    description:
      'Update a datastore configuration (PBS order: digest, `delete` list, fields, maintenance-mode). ' +
      'A maintenance-mode change is graceful: running operations finish, new conflicting ones are ' +
      'refused from the moment this returns; the `conflicting` attribute counts those still running. ' +
      "Type 'delete' cannot be set by hand. With `if-idle` the change is refused with 409 instead.",
    handler: async ({ params, body, server, reply, setAttribute }) => {
      const access = server.datastores;
      const name = params.name;
      const { delete: del, digest, 'if-idle': ifIdle, 'maintenance-mode': modeText, ...fields } = body;

      // 1. validate everything before writing anything
      const current = access.config.read();
      if (digest !== undefined && digest !== current.digest) throw new ConfigModifiedError();
      const stored = current.stores.get(name);
      if (!stored) throw new NotFoundError(`datastore '${name}' does not exist`);
      const remove = parseDeleteList(del);
      const changes: FieldChanges = { set: fields, remove };
      const candidate = copyConfig(stored);
      applyFields(candidate, changes);
      validateDatastoreConfig(candidate);
      validateSchedule(candidate);
      const gcScheduleChanged = candidate['gc-schedule'] !== stored['gc-schedule'];
      let modeChange: { mode: MaintenanceMode | undefined } | undefined;
      if (remove.includes('maintenance-mode')) modeChange = { mode: undefined };
      if (modeText !== undefined) modeChange = { mode: operatorMode(modeText) };
      if (modeChange) {
        let from: MaintenanceMode | undefined;
        try {
          from = storedMaintenanceMode(stored);
        } catch {
          from = undefined; // an unparsable stored value may be replaced (setMaintenanceMode agrees)
        }
        checkTransition(name, from, modeChange.mode);
      }
      const hasFieldChanges = remove.some((k) => k !== 'maintenance-mode') || Object.keys(fields).length > 0;

      // 2. the mode first, atomically with admissions: a refusal (if-idle, stale digest) changes nothing
      let newDigest = digest;
      try {
        if (modeChange) {
          const r = await setMaintenanceMode(access, name, modeChange.mode, { ifIdle, digest });
          newDigest = r.digest;
        }
      } catch (err) {
        if (err instanceof ConflictingOperationsError) return sendConflict(reply, err, 'if-idle');
        throw err;
      }

      // 3. the other fields, against the file the mode change left (or the client's digest)
      if (hasFieldChanges) {
        const lock = await access.lockConfig('change');
        try {
          const snap = await access.config.update(
            (stores) => {
              const cfg = stores.get(name);
              if (!cfg) throw new NotFoundError(`datastore '${name}' does not exist`);
              applyFields(cfg, changes);
            },
            { digest: newDigest, lockHeld: true },
          );
          newDigest = snap.digest;
        } finally {
          lock.release();
        }
        // as PBS: a new GC schedule starts from now, not from the old schedule's last run
        if (gcScheduleChanged) removeJobState(server.paths.dataDir, 'garbage_collection', name);
      }

      const cfg = access.datastoreConfig(name);
      let conflicting = 0;
      try {
        conflicting = (await conflictingOperations(access, name, storedMaintenanceMode(cfg))).length;
      } catch {
        conflicting = 0;
      }
      setAttribute('conflicting', conflicting);
      setAttribute('digest', newDigest ?? access.config.read().digest);
      return null;
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/config/datastore/:name',
    params: NAME_PARAMS,
    query: Type.Object({
      'keep-job-configs': Type.Optional(Type.Boolean()),
      'destroy-data': Type.Optional(Type.Boolean()),
      digest: Type.Optional(DigestSchema),
      'if-idle': Type.Optional(
        Type.Boolean({ description: 'Stowage: refuse (409 with the operations) while any operation runs.' }),
      ),
      timeout: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 86400,
          description:
            'Stowage: seconds to wait for running operations (default 60); then the removal is abandoned and the previous mode restored.',
        }),
      ),
    }),
    permission: { path: '/datastore/{name}', privs: ['Datastore.Allocate'] },
    protected: true,
    returns: Type.String({ description: 'UPID of the delete-datastore task.' }),
    description:
      'Remove a datastore as a `delete-datastore` task: set maintenance mode delete (nothing new is ' +
      'admitted), wait for running operations (at most `timeout`), remove the data when `destroy-data`, ' +
      'then the configuration. If it cannot drain, the previous mode is restored. With `if-idle` a busy ' +
      'datastore is refused at once with 409.',
    handler: async ({ params, query, authId, server, reply }) => {
      const access = server.datastores;
      const name = params.name;
      const current = access.config.read();
      if (query.digest !== undefined && query.digest !== current.digest) throw new ConfigModifiedError();
      const stored = current.stores.get(name);
      if (!stored) throw new NotFoundError(`datastore '${name}' does not exist`);
      // its data is not ours to delete (nor reachable: a removable one's path is on a device)
      if (query['destroy-data']) checkSupportedDatastore(stored);
      if (query['if-idle']) {
        const active = await conflictingOperations(access, name, { type: 'delete' });
        if (active.length > 0) {
          return sendConflict(
            reply,
            new ConflictingOperationsError(`datastore '${name}' is in use, not removed`, active),
            'if-idle',
          );
        }
      }
      return server.tasks.spawnTask('delete-datastore', name, authId, async (task) => {
        const result = await removeDatastore(access, name, {
          destroyData: query['destroy-data'] ?? false,
          ifIdle: query['if-idle'] ?? false,
          timeoutMs: (query.timeout ?? 60) * 1000,
          digest: query.digest,
          log: (line) => task.log(line),
          signal: task.signal,
        });
        if (!query['destroy-data']) task.log(`data left in place at ${result.path}`);
        // after the removal succeeded (PBS removes them first, losing them when removal fails)
        removeJobState(server.paths.dataDir, 'garbage_collection', name);
        if (!query['keep-job-configs']) {
          for (const file of [
            pruneJobConfig(server.paths.configDir),
            verifyJobConfig(server.paths.configDir),
          ]) {
            const removed: string[] = [];
            await file.update((jobs) => {
              for (const [id, job] of jobs) {
                if (job.store === name) {
                  jobs.delete(id);
                  removed.push(id);
                }
              }
            });
            for (const id of removed) {
              removeJobState(
                server.paths.dataDir,
                file.kind.sectionType === 'prune' ? 'prunejob' : 'verificationjob',
                id,
              );
              task.log(`removed job '${id}'`);
            }
          }
        }
      });
    },
  }),
];
