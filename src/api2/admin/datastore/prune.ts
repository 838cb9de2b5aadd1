/**
 * `POST /admin/datastore/{store}/prune` (one group, synchronous) and `POST .../prune-datastore`
 * (every group below a namespace, as a `prune` task) — PBS `prune` and `prune_datastore`
 * (reference §2).
 *
 * Class: pruning removes snapshots, so it is a `write` operation. A dry run changes nothing and
 * is admitted as `read`, so an operator can preview a prune on a read-only datastore (PBS admits
 * dry runs as Write and refuses them there).
 */
import { Type } from 'typebox';
import {
  type BackupGroup,
  type BackupNamespace,
  KEEP_OPTION_NAMES,
  type KeepOptions,
  type PruneResult,
} from '../../../datastore/index.js';
import type { DatastoreHandle } from '../../../maintenance/datastore-access.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { ownerChecked, type GroupAccess } from './access.js';
import { GroupQuery, groupOf, KeepSchemas, NsSchema, spawnAdmittedTask, StoreParams } from './common.js';

const MODIFY = ['Datastore.Modify'];
const PRUNE = ['Datastore.Prune'];
/** Datastore.Modify, or Datastore.Prune on owned groups (PBS `prune`, `prune_datastore`). */
const MODIFY_OR_PRUNE_OWNED = ownerChecked({ path: '/datastore/{store}/{ns}', full: MODIFY, owner: PRUNE });

function keepOptions(body: Record<string, unknown>): KeepOptions {
  const out: KeepOptions = {};
  for (const name of KEEP_OPTION_NAMES) {
    const v = body[name];
    if (typeof v === 'number') out[name] = v;
  }
  return out;
}

/** PBS `PruneListItem`. */
function pruneItem(group: BackupGroup, r: PruneResult) {
  return {
    'backup-type': group.type,
    'backup-id': group.id,
    'backup-time': r.dir.time,
    keep: r.keep,
    protected: r.protected,
    ...(r.error !== undefined && { error: r.error }),
  };
}

/**
 * Prune every group the caller may prune below `ns`; returns how many removals failed. Under a
 * read admission (a dry run) only the preview runs: the handle has nothing else.
 */
async function pruneNamespaces(
  handle: DatastoreHandle,
  access: GroupAccess,
  opts: {
    ns: BackupNamespace;
    maxDepth?: number;
    keep: KeepOptions;
    dryRun: boolean;
    log: (line: string) => void;
    signal: AbortSignal;
  },
): Promise<number> {
  let failed = 0;
  const ds = handle.datastore;
  for (const ns of ds.listNamespaces(opts.ns, opts.maxDepth)) {
    // Per namespace: full access with Modify, owned groups only with Prune, else skipped.
    const nsAccess = access.forNamespace(ns);
    if (!nsAccess) continue;
    for (const group of ds.listGroups(ns)) {
      opts.signal.throwIfAborted();
      if (!nsAccess.mayAccess(ds, group)) continue;
      opts.log(`Pruning group ${ns.isRoot() ? '' : `${ns.name}:`}${group}`);
      const results =
        handle.operation !== 'read'
          ? await handle.datastore.prune(group, opts.keep, { dryRun: opts.dryRun })
          : await handle.datastore.prune(group, opts.keep, { dryRun: true });
      for (const r of results) {
        const what = r.keep ? 'keep' : opts.dryRun ? 'would remove' : 'remove';
        opts.log(`${r.dir} ${what}${r.protected ? ' (protected)' : ''}`);
        if (r.error !== undefined) {
          failed++;
          opts.log(`failed to remove ${r.dir}: ${r.error}`);
        }
      }
    }
  }
  return failed;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/prune',
    params: StoreParams,
    body: Type.Object({ ...GroupQuery, ...KeepSchemas, 'dry-run': Type.Optional(Type.Boolean()) }),
    permission: MODIFY_OR_PRUNE_OWNED,
    protected: true,
    description:
      'Prune one backup group with the keep-* options (write operation; a dry run is a read ' +
      'operation). Returns PBS PruneListItem entries {backup-type, backup-id, backup-time, keep, ' +
      'protected}. Datastore.Modify, or Datastore.Prune on a group the caller owns.',
    handler: ({ body, access }) => {
      const group = groupOf(body);
      const dryRun = body['dry-run'] ?? false;
      const keep = keepOptions(body);
      const info = { kind: 'prune', detail: group.toString() };
      const items = (results: PruneResult[]) => results.map((r) => pruneItem(group, r));
      // a dry run is a read admission, whose datastore only offers the preview
      return dryRun
        ? access.withGroup(group, 'read', info, async (ds) =>
            items(await ds.prune(group, keep, { dryRun: true })),
          )
        : access.withGroup(group, 'reclaim', info, async (ds) => items(await ds.prune(group, keep)));
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/prune-datastore',
    params: StoreParams,
    body: Type.Object({
      ns: Type.Optional(NsSchema),
      'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: 7 })),
      'dry-run': Type.Optional(Type.Boolean()),
      ...KeepSchemas,
    }),
    permission: MODIFY_OR_PRUNE_OWNED,
    protected: true,
    returns: Type.String({ description: 'UPID of the prune task.' }),
    description:
      'Prune every group below a namespace as a `prune` task (write operation, admitted before the ' +
      'task exists; a dry run is a read operation). Datastore.Modify or Datastore.Prune on the ' +
      'namespace; with Prune alone only owned groups are pruned. Returns the UPID.',
    handler: ({ params, body, authId, server, access }) => {
      const ns = access.ns;
      const dryRun = body['dry-run'] ?? false;
      const keep = keepOptions(body);
      return spawnAdmittedTask(
        { server, authId },
        params.store,
        dryRun ? 'read' : 'reclaim',
        { kind: 'prune', detail: ns.isRoot() ? undefined : ns.name },
        { type: 'prune', id: ns.isRoot() ? params.store : `${params.store}:${ns.name}` },
        async (task, handle) => {
          task.log(
            `Starting datastore prune on datastore '${params.store}', ${ns.isRoot() ? 'root namespace' : `namespace '${ns.name}'`}${dryRun ? ' (dry run)' : ''}`,
          );
          const failed = await pruneNamespaces(handle, access, {
            ns,
            maxDepth: body['max-depth'],
            keep,
            dryRun,
            log: (line) => task.log(line),
            signal: task.signal,
          });
          if (failed > 0) task.warn(`${failed} snapshot(s) could not be removed`);
        },
      );
    },
  }),
];
