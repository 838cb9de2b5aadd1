/**
 * `POST /admin/datastore/{store}/verify` (PBS `verify`, reference §2): verify a snapshot, a group
 * or every group below a namespace, as a worker task admitted before it is created.
 *
 * PBS admits verify as Read although it writes (verify_state in manifests, renamed corrupt
 * chunks), so it modifies read-only datastores. Stowage (docs/adr/002-verify-is-a-write.md):
 * - by default verify is a `write` operation and records its results as PBS does;
 * - with `read-only=true` it is a `read` operation that changes nothing on the datastore and only
 *   reports in its task log, so it also runs on a datastore in read-only maintenance.
 */
import { Type } from 'typebox';
import { ERR_VERIFY_FAILED, ERR_VERIFY_SELECTION } from '../../../errors.js';
import {
  type BackupDir,
  type BackupGroup,
  type BackupManifest,
  type BackupNamespace,
  createVerifyCache,
  type ReadonlyDatastore,
} from '../../../datastore/index.js';
import type { DatastoreHandle } from '../../../maintenance/datastore-access.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import type { WorkerTask } from '../../../tasks/worker-task.js';
import { parseUpid } from '../../../tasks/upid.js';
import { ownerChecked, type GroupAccess } from './access.js';
import {
  BackupIdSchema,
  BackupTimeSchema,
  BackupTypeSchema,
  groupOf,
  NsSchema,
  spawnAdmittedTask,
  StoreParams,
} from './common.js';

const VERIFY = ['Datastore.Verify'];
const BACKUP = ['Datastore.Backup'];

/**
 * PBS `verify_filter`: with `ignoreVerified`, skip snapshots whose last verification passed,
 * unless it is more than `outdatedAfter` days old.
 */
export function needsVerify(
  manifest: BackupManifest | undefined,
  ignoreVerified: boolean,
  outdatedAfter: number | undefined,
  nowSec = Date.now() / 1000,
): boolean {
  if (!ignoreVerified || !manifest) return true;
  const state = manifest.unprotected.verify_state;
  if (!state || state.state !== 'ok') return true;
  if (outdatedAfter === undefined) return false;
  let verifiedAt: number;
  try {
    verifiedAt = parseUpid(state.upid).starttime;
  } catch {
    return true; // a verify state we cannot date is treated as outdated
  }
  return Math.floor((nowSec - verifiedAt) / 86400) > outdatedAfter;
}

interface VerifyPlan {
  ns: BackupNamespace;
  group?: BackupGroup;
  dir?: BackupDir;
  maxDepth?: number;
  ignoreVerified: boolean;
  outdatedAfter?: number;
  readOnly: boolean;
}

/** The snapshots to verify, in PBS's order (groups sorted, snapshots newest first). */
function snapshotsToVerify(ds: ReadonlyDatastore, plan: VerifyPlan, access: GroupAccess): BackupDir[] {
  if (plan.dir) return [plan.dir];
  const groups: Array<{ group: BackupGroup; access: GroupAccess }> = [];
  if (plan.group) groups.push({ group: plan.group, access });
  else {
    for (const ns of ds.listNamespaces(plan.ns, plan.maxDepth)) {
      const nsAccess = access.forNamespace(ns);
      if (!nsAccess) continue;
      for (const group of ds.listGroups(ns)) groups.push({ group, access: nsAccess });
    }
  }
  const out: BackupDir[] = [];
  for (const { group, access: a } of groups) {
    if (!a.mayAccess(ds, group)) continue;
    for (const info of ds.listSnapshots(group).reverse()) out.push(info.dir);
  }
  return out;
}

async function runVerify(
  task: WorkerTask,
  handle: DatastoreHandle,
  plan: VerifyPlan,
  snapshots: BackupDir[],
): Promise<void> {
  const ds = handle.datastore;
  const cache = createVerifyCache();
  const failed: string[] = [];
  let done = 0;
  task.log(
    `verify datastore ${ds.name}${plan.readOnly ? ' (read-only: nothing is recorded on the datastore)' : ''}`,
  );
  for (const dir of snapshots) {
    task.throwIfAborted();
    let manifest: BackupManifest | undefined;
    try {
      manifest = ds.loadManifest(dir);
    } catch {
      manifest = undefined; // unfinished or unreadable: verifySnapshot reports it
    }
    if (!needsVerify(manifest, plan.ignoreVerified, plan.outdatedAfter)) {
      task.log(`SKIPPED: verify ${dir} (recently verified)`);
    } else {
      const opts = { upid: task.upid, cache, log: (line: string) => task.log(line), signal: task.signal };
      // the mode follows the admission (`read-only` admits as read): only write records anything
      const result =
        handle.operation !== 'read'
          ? await handle.datastore.verifySnapshot(dir, { ...opts, mode: 'write' })
          : await handle.datastore.verifySnapshot(dir, { ...opts, mode: 'read' });
      for (const e of result.errors) task.log(`  ${e}`);
      if (!result.ok) failed.push(dir.toString());
    }
    done++;
    task.progress(done / snapshots.length);
  }
  if (failed.length > 0) {
    task.log('Failed to verify the following snapshots/groups:');
    for (const f of failed) task.log(`\t${f}`);
    throw ERR_VERIFY_FAILED();
  }
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/verify',
    params: StoreParams,
    body: Type.Object({
      ns: Type.Optional(NsSchema),
      'backup-type': Type.Optional(BackupTypeSchema),
      'backup-id': Type.Optional(BackupIdSchema),
      'backup-time': Type.Optional(BackupTimeSchema),
      'ignore-verified': Type.Optional(
        Type.Boolean({ description: 'Skip verified snapshots (default true).' }),
      ),
      'outdated-after': Type.Optional(
        Type.Integer({ minimum: 1, description: 'Days after which a verification is outdated.' }),
      ),
      'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: 7 })),
      'read-only': Type.Optional(
        Type.Boolean({
          description:
            'Stowage: verify as a read operation that records nothing on the datastore (no verify state, ' +
            'no renamed chunks); results only in the task log. Works on a read-only datastore.',
        }),
      ),
    }),
    permission: ownerChecked({ path: '/datastore/{store}/{ns}', full: VERIFY, owner: BACKUP }),
    protected: true,
    returns: Type.String({ description: 'UPID of the verify task.' }),
    description:
      'Verify a snapshot, a group or every group below a namespace as a task (write operation: ' +
      'records verify_state and renames corrupt chunks; with `read-only` a read operation that ' +
      'records nothing). Datastore.Verify, or Datastore.Backup on groups the caller owns. Returns the UPID.',
    handler: async ({ params, body, authId, server, access }) => {
      const ns = access.ns;
      const type = body['backup-type'];
      const id = body['backup-id'];
      const time = body['backup-time'];
      if ((type === undefined) !== (id === undefined) || (time !== undefined && type === undefined)) {
        throw ERR_VERIFY_SELECTION();
      }
      const group =
        type !== undefined && id !== undefined
          ? groupOf({ ns: body.ns, 'backup-type': type, 'backup-id': id })
          : undefined;
      const dir = group && time !== undefined ? group.snapshot(time) : undefined;
      const readOnly = body['read-only'] ?? false;
      const plan: VerifyPlan = {
        ns,
        group,
        dir,
        maxDepth: body['max-depth'],
        ignoreVerified: body['ignore-verified'] ?? true,
        outdatedAfter: body['outdated-after'],
        readOnly,
      };
      const target = dir?.toString() ?? group?.toString() ?? (ns.isRoot() ? undefined : ns.name);
      const workerType = dir ? 'verify_snapshot' : group ? 'verify_group' : 'verify';
      const workerId = [
        params.store,
        ...(ns.isRoot() ? [] : [ns.name]),
        ...(target && group ? [target] : []),
      ].join(':');
      return spawnAdmittedTask(
        { server, authId },
        params.store,
        readOnly ? 'read' : 'reclaim',
        { kind: 'verify', detail: target },
        {
          type: workerType,
          id: workerId,
          check: (ds) => {
            if (group) access.check(ds, group);
          },
        },
        async (task, handle) => {
          const snapshots = snapshotsToVerify(handle.datastore, plan, access);
          await runVerify(task, handle, plan, snapshots);
        },
      );
    },
  }),
];
