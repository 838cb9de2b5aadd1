/**
 * The CRUD routes of `/config/prune` and `/config/verify` share one shape (PBS
 * `src/api2/config/prune.rs`, `verify.rs`): list with `digest`, create, read with `digest`,
 * update with a `delete` list and `digest`, remove with `digest`. This builds them from a job
 * kind, so the two route modules only declare their schemas and privileges.
 *
 * Permissions are on the job's datastore and namespace, which come from the body or the stored
 * job rather than the URL, so the routes are `authenticated` and check here (the descriptions
 * say what they need). Job state follows the config: created with the job, reset when the
 * schedule changes (so the next run is the first slot after the change, as PBS), removed with it.
 */
import { Type, type TProperties } from 'typebox';
import { BadRequestError, ERR_JOB_EXISTS, ForbiddenError, NotFoundError } from '../../errors.js';
import { jobAclPath, validateJob, type JobConfigFile } from '../../config/job-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import type { ServerContext } from '../../http/context.js';
import type { UserInfo } from '../../http/permissions.js';
import { DigestSchema } from '../../http/schemas.js';
import { lockJob, type JobType } from '../../jobs/job-state.js';

interface JobLike {
  id: string;
  store: string;
  ns?: string;
  schedule?: string;
  extra?: Array<[string, string]>;
}

export interface JobConfigRoutesSpec<T extends JobLike> {
  /** URL below `/config`, e.g. `prune`. */
  path: string;
  /** For messages: "prune job". */
  noun: string;
  /** The job-state type; absent for configs without a job state (maintenance windows). */
  jobType?: JobType;
  file(server: ServerContext): JobConfigFile<T>;
  /** Every configurable property but `id` (all optional in the schema; required ones checked). */
  fields: TProperties;
  /** Properties `delete` may name. */
  deletable: readonly string[];
  /** Privileges of which any one lets a caller see a job. */
  readPrivs: readonly string[];
  /** Privilege needed on the job's path to create, change or remove it. */
  modifyPriv: string;
  /**
   * Checks beyond `modifyPriv` on the job's path, on create, update (before and after) and delete
   * (a sync job's source and owner); throws ForbiddenError.
   */
  checkModify?(userInfo: UserInfo, authId: string, job: T): void;
  /** Whether the caller may also see this job beyond `readPrivs` on its path (a sync job's source). */
  canRead?(userInfo: UserInfo, authId: string, job: T): boolean;
  /** Called after every change was written (maintenance windows apply their holds at once). */
  changed?(server: ServerContext): Promise<void>;
}

/** Strip what the API must not show: unknown stored properties stay in the file only. */
export function jobView<T extends JobLike>(job: T): Omit<T, 'extra'> {
  const { extra: _extra, ...rest } = job;
  return rest;
}

/** Whether `authId` may see jobs on this path (any of `privs`). */
export function canSeeJob(
  userInfo: UserInfo,
  authId: string,
  job: JobLike,
  privs: readonly string[],
): boolean {
  return userInfo.hasPrivs(authId, jobAclPath(job), privs, { partial: true });
}

/** Build the five config routes of one job kind. */
export function jobConfigRoutes<T extends JobLike>(spec: JobConfigRoutesSpec<T>): AnyRoute[] {
  const IdSchema = Type.String({
    pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
    minLength: 3,
    maxLength: 32,
    description: 'Job ID.',
  });
  const base = `/config/${spec.path}`;
  const check = (userInfo: UserInfo, authId: string, job: JobLike) => {
    userInfo.checkPrivs(authId, jobAclPath(job), [spec.modifyPriv]);
    spec.checkModify?.(userInfo, authId, job as T);
  };
  const canRead = (userInfo: UserInfo, authId: string, job: T) =>
    canSeeJob(userInfo, authId, job, spec.readPrivs) && (spec.canRead?.(userInfo, authId, job) ?? true);
  const DeleteSchema = Type.Array(Type.Union(spec.deletable.map((k) => Type.Literal(k))));

  return [
    defineRoute({
      method: 'GET',
      path: base,
      permission: filtered(
        `only the jobs on whose datastore (namespace) the caller has any of ${spec.readPrivs.join(', ')}`,
      ),
      description: `List ${spec.noun}s, with the \`digest\` attribute. Shows the jobs on whose datastore (namespace) the caller has any of ${spec.readPrivs.join(', ')}.`,
      handler: ({ authId, userInfo, server, setAttribute }) => {
        const { jobs, digest } = spec.file(server).read();
        setAttribute('digest', digest);
        return [...jobs.values()].filter((j) => canRead(userInfo, authId, j)).map(jobView);
      },
    }),
    defineRoute({
      method: 'POST',
      path: base,
      body: Type.Object({ id: IdSchema, ...spec.fields }),
      permission: filtered(`${spec.modifyPriv} on the datastore (namespace) the new job names`),
      protected: true,
      description: `Create a ${spec.noun}. Needs ${spec.modifyPriv} on the job's datastore (namespace).`,
      handler: async ({ body, authId, userInfo, server }) => {
        const job = body as unknown as T;
        check(userInfo, authId, job);
        validateJob(spec.file(server).kind, job);
        if (!server.datastores.config.readCached().stores.has(job.store)) {
          throw new BadRequestError(
            `parameter verification failed - 'store': datastore '${job.store}' does not exist`,
            {
              param: 'store',
            },
          );
        }
        await spec.file(server).update((jobs) => {
          if (jobs.has(job.id)) throw ERR_JOB_EXISTS(spec.noun, job.id);
          jobs.set(job.id, job);
        });
        if (spec.jobType) await resetState(server, spec.jobType, job.id);
        await spec.changed?.(server);
        return null;
      },
    }),
    defineRoute({
      method: 'GET',
      path: `${base}/:id`,
      params: Type.Object({ id: IdSchema }),
      permission: filtered(`any of ${spec.readPrivs.join(', ')} on the datastore (namespace) the job names`),
      description: `Read a ${spec.noun}, with the \`digest\` attribute. Needs any of ${spec.readPrivs.join(', ')} on its datastore (namespace).`,
      handler: ({ params, authId, userInfo, server, setAttribute }) => {
        const { jobs, digest } = spec.file(server).read();
        const job = jobs.get(params.id);
        if (!job) throw new NotFoundError(`${spec.noun} '${params.id}' does not exist.`);
        userInfo.checkPrivs(authId, jobAclPath(job), spec.readPrivs, { partial: true });
        if (!canRead(userInfo, authId, job)) {
          throw new ForbiddenError(`permission check failed - no access to ${spec.noun} '${job.id}'`);
        }
        setAttribute('digest', digest);
        return jobView(job);
      },
    }),
    defineRoute({
      method: 'PUT',
      path: `${base}/:id`,
      params: Type.Object({ id: IdSchema }),
      body: Type.Object({
        ...spec.fields,
        delete: Type.Optional(DeleteSchema),
        digest: Type.Optional(DigestSchema),
      }),
      permission: filtered(
        `${spec.modifyPriv} on the job's datastore (namespace), before and after the change`,
      ),
      protected: true,
      description: `Update a ${spec.noun}: set fields, \`delete\` others. Needs ${spec.modifyPriv} on its datastore (namespace), before and after the change.`,
      handler: async ({ params, body, authId, userInfo, server }) => {
        const {
          delete: del,
          digest,
          ...fields
        } = body as Record<string, unknown> & {
          delete?: string[];
          digest?: string;
        };
        let scheduleChanged = false;
        await spec.file(server).update(
          (jobs) => {
            const job = jobs.get(params.id);
            if (!job) throw new NotFoundError(`${spec.noun} '${params.id}' does not exist.`);
            check(userInfo, authId, job);
            const record = job as unknown as Record<string, unknown>;
            const before = job.schedule;
            for (const key of del ?? []) delete record[key];
            Object.assign(record, fields);
            check(userInfo, authId, job); // moving a job to another store or namespace needs rights there
            scheduleChanged = job.schedule !== before;
          },
          { digest },
        );
        if (scheduleChanged && spec.jobType) await resetState(server, spec.jobType, params.id);
        await spec.changed?.(server);
        return null;
      },
    }),
    defineRoute({
      method: 'DELETE',
      path: `${base}/:id`,
      params: Type.Object({ id: IdSchema }),
      query: Type.Object({ digest: Type.Optional(DigestSchema) }),
      permission: filtered(`${spec.modifyPriv} on the datastore (namespace) the job names`),
      protected: true,
      description: `Remove a ${spec.noun} and its job state. Needs ${spec.modifyPriv} on its datastore (namespace).`,
      handler: async ({ params, query, authId, userInfo, server }) => {
        await spec.file(server).update(
          (jobs) => {
            const job = jobs.get(params.id);
            if (!job) throw new NotFoundError(`${spec.noun} '${params.id}' does not exist.`);
            check(userInfo, authId, job);
            jobs.delete(params.id);
          },
          { digest: query.digest },
        );
        if (spec.jobType) {
          const lock = await lockJob(server.datastores.backend.locks, spec.jobType, params.id);
          try {
            await server.datastores.backend.jobStates.remove(spec.jobType, params.id);
          } finally {
            lock.release();
          }
        }
        await spec.changed?.(server);
        return null;
      },
    }),
  ];
}

/** A new or rescheduled job starts over: its first run is the first slot from now. */
async function resetState(server: ServerContext, type: JobType, id: string): Promise<void> {
  const lock = await lockJob(server.datastores.backend.locks, type, id);
  try {
    await server.datastores.backend.jobStates.write(type, id, {
      state: 'created',
      time: Math.floor(Date.now() / 1000),
    });
  } finally {
    lock.release();
  }
}
