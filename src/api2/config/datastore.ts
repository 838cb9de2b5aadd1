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
 * The handlers translate HTTP only: creating, updating and removing are domain functions in
 * src/maintenance/ (create-datastore.ts, update-datastore.ts, remove-datastore.ts), which the quick
 * start uses too.
 */
import { forgetDatastoreJobs } from '../../jobs/datastore-jobs.js';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { ConfigModifiedError, ERR_S3_DESTROY_DATA, NotFoundError } from '../../errors.js';
import { PERCENT_KEYS, type DatastoreConfig } from '../../config/datastore-config.js';
import { createDatastore, prepareDatastoreCreation } from '../../maintenance/create-datastore.js';
import { isS3Datastore } from '../../maintenance/chunk-backend-for.js';
import { ConflictingOperationsError, conflictingOperations } from '../../maintenance/maintenance-control.js';
import { removeDatastore } from '../../maintenance/remove-datastore.js';
import { checkSupportedDatastore } from '../../maintenance/unsupported-datastore.js';
import { checkDestroyable, isRemovable } from '../../maintenance/removable-datastore.js';
import {
  previewDatastoreUpdate,
  STRING_FIELDS,
  updateDatastore,
  type DatastoreUpdate,
} from '../../maintenance/update-datastore.js';
import { formatMaintenanceMode } from '../../maintenance/maintenance-mode.js';
import { jobsRefusedBy } from '../../jobs/scheduler.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { CommentSchema, DigestSchema, UseridSchema } from '../../http/schemas.js';
import { operationItem, OperationItemSchema, StoreSchema } from '../admin/datastore/common.js';

const NAME_PARAMS = Type.Object({ name: StoreSchema });
/** PBS: creating or removing a removable datastore also needs this (it mounts and unmounts devices). */
const DISKS_MODIFY = { path: '/system/disks', privs: ['Sys.Modify'] } as const;
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
  'gc-on-unmount': Type.Optional(
    Type.Boolean({ description: 'Removable datastores: run garbage collection before unmounting (PBS).' }),
  ),
  'low-space-hold': Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 100,
      description:
        'Stowage: hold the datastore against new data (backups, sync, uploads; prune, GC and restores go on) ' +
        'when less than this percent of its filesystem is free; 0 disables the hold. Default 5.',
    }),
  ),
  'low-space-release': Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 100,
      description:
        'Stowage: lift the low-space hold once more than this percent is free; must be above low-space-hold. Default 10.',
    }),
  ),
};

/** A datastore's configuration as PBS sends it (kebab-case keys, keep-* as numbers). */
export function datastoreConfigJson(cfg: DatastoreConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { name: cfg.name, path: cfg.path };
  for (const key of ['maintenance-mode', 'backing-device', 'backend', ...STRING_FIELDS] as const) {
    if (cfg[key] !== undefined) out[key] = cfg[key];
  }
  if (cfg['verify-new'] !== undefined) out['verify-new'] = cfg['verify-new'];
  for (const key of PERCENT_KEYS) if (cfg[key] !== undefined) out[key] = cfg[key];
  for (const [key, value] of cfg.extra ?? []) {
    if (/^keep-/.test(key) && /^[0-9]+$/.test(value)) out[key] = Number(value);
    else if (key === 'gc-on-unmount' && /^(true|false)$/.test(value)) out[key] = value === 'true';
    else out[key] = value;
  }
  return out;
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
    details: { operations: err.operations.map((op) => operationItem(op)) },
  });
  return reply;
}

/** What `PUT /config/datastore/{name}` answers with `dry-run`. */
const DryRunSchema = Type.Object({
  'dry-run': Type.Literal(true),
  'mode-changes': Type.Boolean({ description: 'Whether the update changes the maintenance mode.' }),
  'maintenance-mode': Type.Optional(
    Type.String({ description: 'The mode that would be in force afterwards (absent: none).' }),
  ),
  conflicting: Type.Array(OperationItemSchema, {
    description: 'Operations running now that the resulting mode refuses.',
  }),
  'skipped-jobs': Type.Array(
    Type.Object({
      type: Type.String(),
      id: Type.String(),
      schedule: Type.Optional(Type.String()),
      'next-run': Type.Optional(Type.Integer()),
    }),
    { description: 'Scheduled jobs of the datastore that the resulting mode would record as skipped.' },
  ),
});

/** PBS create parameters beyond the updatable ones. */
const CreateOnlyFields = {
  'backing-device': Type.Optional(
    Type.String({
      maxLength: 36,
      description:
        'The filesystem UUID of the device of a removable datastore; `path` is then relative to the ' +
        "device's root. The task mounts the device and creates (or reuses) the datastore on it.",
    }),
  ),
  'reuse-datastore': Type.Optional(
    Type.Boolean({ description: 'Reuse the datastore already at the path instead of creating one (PBS).' }),
  ),
};

/** PBS 4 create parameters of the datastore backend. */
const BackendCreateFields = {
  backend: Type.Optional(
    Type.String({
      maxLength: 1024,
      description:
        'PBS 4 datastore backend: `type=filesystem` (the default) or ' +
        '`type=s3,client=ENDPOINT-ID,bucket=NAME[,max-cache-size=SIZE]` (chunks and metadata in the ' +
        'bucket under `NAME/`, `path` the local cache).',
    }),
  ),
  'overwrite-in-use': Type.Optional(
    Type.Boolean({
      description:
        "S3 datastores: create even when the bucket's `.in-use` marker says another host uses the store (PBS 4).",
    }),
  ),
};

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
      ...CreateOnlyFields,
      ...BackendCreateFields,
    }),
    permission: { path: '/datastore', privs: ['Datastore.Allocate'] },
    protected: true,
    returns: Type.String({ description: 'UPID of the create-datastore task.' }),
    description:
      'Create a datastore as a `create-datastore` task (creating the chunk store takes a while) and ' +
      'return its UPID. The path must be absolute, outside every other datastore, and a missing or ' +
      'empty directory (with `reuse-datastore`, one holding a datastore). With `backing-device` ' +
      "(a removable datastore; also Sys.Modify on /system/disks) the path is relative to the device's " +
      'root: the task mounts the device, creates or reuses the datastore there and leaves it mounted. ' +
      'With an S3 `backend` the bucket is checked first (it must answer, and its `.in-use` marker must ' +
      'not name a host unless `overwrite-in-use`); the task writes the marker with this host name. ' +
      'Prune settings belong to prune jobs (/config/prune).',
    handler: async ({ body, authId, userInfo, server }) => {
      const {
        name,
        path,
        'maintenance-mode': mode,
        'backing-device': backingDevice,
        'reuse-datastore': reuseDatastore,
        'overwrite-in-use': overwriteInUse,
        backend,
        ...set
      } = body;
      // PBS: a removable datastore also needs Sys.Modify on /system/disks (its device is mounted)
      if (backingDevice !== undefined) userInfo.checkPrivs(authId, DISKS_MODIFY.path, DISKS_MODIFY.privs);
      const prepared = await prepareDatastoreCreation(server.datastores, {
        name,
        path,
        set,
        ...(mode !== undefined && { 'maintenance-mode': mode }),
        ...(backingDevice !== undefined && { 'backing-device': backingDevice }),
        ...(reuseDatastore !== undefined && { reuseDatastore }),
        ...(backend !== undefined && { backend }),
        ...(overwriteInUse !== undefined && { overwriteInUse }),
      });
      try {
        return server.tasks.spawnTask('create-datastore', name, authId, (task) =>
          createDatastore(server.datastores, prepared, {
            log: (line) => task.log(line),
            runDir: server.paths.runDir,
          }),
        );
      } catch (err) {
        prepared.cancel();
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
      'dry-run': Type.Optional(
        Type.Boolean({
          description:
            'Stowage: check the update and answer what it would do, changing nothing: the resulting ' +
            '`maintenance-mode`, the running operations it refuses (`conflicting`) and the scheduled ' +
            'jobs it would skip (`skipped-jobs`).',
        }),
      ),
    }),
    permission: { path: '/datastore/{name}', privs: ['Datastore.Modify'] },
    protected: true,
    returns: Type.Union([Type.Null(), DryRunSchema]),
    description:
      'Update a datastore configuration (PBS order: digest, `delete` list, fields, maintenance-mode). ' +
      'A maintenance-mode change is graceful: running operations finish, new conflicting ones are ' +
      'refused from the moment this returns; the `conflicting` attribute counts those still running. ' +
      "Type 'delete' cannot be set by hand. With `if-idle` the change is refused with 409 instead. " +
      'With `dry-run` nothing is written: the answer says what would conflict and which jobs would be skipped.',
    handler: async ({ params, body, authId, server, reply, setAttribute }) => {
      const {
        delete: del,
        digest,
        'if-idle': ifIdle,
        'dry-run': dryRun,
        'maintenance-mode': mode,
        ...set
      } = body;
      const update: DatastoreUpdate = {
        set,
        ...(del !== undefined && { delete: del }),
        ...(mode !== undefined && { 'maintenance-mode': mode }),
        ...(digest !== undefined && { digest }),
        ...(ifIdle !== undefined && { ifIdle }),
        authId,
      };
      if (dryRun) {
        const preview = await previewDatastoreUpdate(server.datastores, params.name, update);
        setAttribute('digest', server.datastores.config.read().digest);
        return {
          'dry-run': true,
          'mode-changes': preview.modeChanges,
          ...(preview.mode && { 'maintenance-mode': formatMaintenanceMode(preview.mode) }),
          conflicting: preview.conflicting.map((op) => operationItem(op)),
          'skipped-jobs': await jobsRefusedBy(server, params.name, preview.mode),
        };
      }
      let result;
      try {
        result = await updateDatastore(server.datastores, params.name, update);
      } catch (err) {
        if (err instanceof ConflictingOperationsError) return sendConflict(reply, err, 'if-idle');
        throw err;
      }
      // as PBS: a new GC schedule starts from now, not from the old schedule's last run
      if (result.gcScheduleChanged)
        await server.datastores.backend.jobStates.remove('garbage_collection', params.name);
      setAttribute('conflicting', result.conflicting);
      setAttribute('digest', result.digest);
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
    handler: async ({ params, query, authId, userInfo, server, reply }) => {
      const access = server.datastores;
      const name = params.name;
      const current = access.config.read();
      if (query.digest !== undefined && query.digest !== current.digest) throw new ConfigModifiedError();
      const stored = current.stores.get(name);
      if (!stored) throw new NotFoundError(`datastore '${name}' does not exist`);
      // PBS: a removable datastore also needs Sys.Modify on /system/disks
      if (isRemovable(stored)) userInfo.checkPrivs(authId, DISKS_MODIFY.path, DISKS_MODIFY.privs);
      // an S3 datastore's data is not ours to delete; a removable one's only while mounted
      if (query['destroy-data']) {
        checkSupportedDatastore(stored);
        if (isS3Datastore(stored)) throw ERR_S3_DESTROY_DATA(name);
        checkDestroyable(stored);
      }
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
        await forgetDatastoreJobs(server.paths, server.datastores.backend.jobStates, name, {
          keepJobConfigs: query['keep-job-configs'] ?? false,
          log: (line) => task.log(line),
        });
      });
    },
  }),
];
