/**
 * The backup content of a datastore (PBS `src/api2/admin/datastore.rs`, reference §2): groups and
 * snapshots (list, delete), snapshot files, notes of groups and snapshots, the protected flag.
 *
 * Classes per design §2: listings and GETs are `read`; deletions and PUTs are `write`.
 * Privileges are PBS's "A or B+owner" on `/datastore/{store}[/{ns}]`, declared with `ownerChecked`
 * (access.ts); handlers reach the datastore only through `ctx.access`, which checks ownership.
 */
import { Type } from 'typebox';
import { ERR_GROUP_PARTIALLY_DELETED } from '../../../errors.js';
import {
  type BackupDir,
  MANIFEST_BLOB_NAME,
  manifestCryptMode,
  type ReadonlyDatastore,
  type SnapshotInfo,
} from '../../../datastore/index.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { ownerChecked } from './access.js';
import {
  BackupGroupDeleteStatsSchema,
  deleteStatsOf,
  ErrorOnProtectedSchema,
  GroupQuery,
  groupOf,
  NsSchema,
  SnapshotQuery,
  snapshotOf,
  StoreParams,
} from './common.js';

const AUDIT = ['Datastore.Audit'];
const MODIFY = ['Datastore.Modify'];
const BACKUP = ['Datastore.Backup'];
const PRUNE = ['Datastore.Prune'];
const NS_PATH = '/datastore/{store}/{ns}';

/** PBS `BackupContent`. */
interface BackupContent {
  filename: string;
  'crypt-mode'?: string;
  size?: number;
}

/** The first line of notes, as PBS shows them in listings (`comment`). */
function firstLine(notes: string): string | undefined {
  const line = notes.split('\n', 1)[0]?.trim();
  return line ? line : undefined;
}

/**
 * The files of a snapshot as PBS lists them (`get_all_snapshot_files`): the manifest's files with
 * crypt mode and size, plus the manifest itself and any other archive in the directory (the
 * client log). An unfinished snapshot has no manifest: its archive names only.
 */
function contentOf(ds: ReadonlyDatastore, dir: BackupDir, names: readonly string[]) {
  const sizes = new Map(ds.snapshotFiles(dir).map((f) => [f.filename, f.size]));
  if (!names.includes(MANIFEST_BLOB_NAME)) {
    return { files: names.map((filename): BackupContent => ({ filename })), manifest: undefined };
  }
  const manifest = ds.loadManifest(dir);
  const files: BackupContent[] = manifest.files.map((f) => ({
    filename: f.filename,
    'crypt-mode': f['crypt-mode'],
    size: f.size,
  }));
  files.push({
    filename: MANIFEST_BLOB_NAME,
    'crypt-mode': manifestCryptMode(manifest),
    size: sizes.get(MANIFEST_BLOB_NAME),
  });
  for (const name of names) {
    if (!files.some((f) => f.filename === name)) files.push({ filename: name, size: sizes.get(name) });
  }
  return { files, manifest };
}

/** PBS `SnapshotListItem`. */
function snapshotItem(ds: ReadonlyDatastore, info: SnapshotInfo, owner: string | undefined) {
  const { dir } = info;
  const { files, manifest } = contentOf(ds, dir, info.files);
  const size = files.reduce((n, f) => n + (f.size ?? 0), 0);
  const notes = manifest?.unprotected.notes;
  const comment = typeof notes === 'string' ? firstLine(notes) : undefined;
  const verification = manifest?.unprotected.verify_state;
  const fingerprint = manifest?.unprotected['key-fingerprint'];
  return {
    'backup-type': dir.group.type,
    'backup-id': dir.group.id,
    'backup-time': dir.time,
    ...(comment !== undefined && { comment }),
    ...(verification !== undefined && { verification }),
    ...(typeof fingerprint === 'string' && { fingerprint }),
    files,
    ...(manifest && { size }),
    ...(owner !== undefined && { owner }),
    protected: info.protected,
  };
}

function ownerOrUndefined(
  ds: ReadonlyDatastore,
  group: Parameters<ReadonlyDatastore['getOwner']>[0],
): string | undefined {
  try {
    return ds.getOwner(group);
  } catch {
    return undefined;
  }
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/groups',
    params: StoreParams,
    query: Type.Object({ ns: Type.Optional(NsSchema) }),
    permission: ownerChecked({ path: NS_PATH, full: AUDIT, owner: BACKUP }),
    description:
      'List the backup groups of a namespace (read operation), PBS GroupListItem. Datastore.Audit ' +
      'lists all groups; Datastore.Backup only the groups the caller owns. Groups without snapshots ' +
      'are left out, as PBS does.',
    handler: ({ access }) =>
      access.withStore('read', { kind: 'list', detail: 'groups' }, (ds) => {
        const out: unknown[] = [];
        for (const group of ds.listGroups(access.ns)) {
          if (!access.mayAccess(ds, group)) continue;
          const snapshots = ds.listSnapshots(group);
          if (snapshots.length === 0) continue;
          const finished = snapshots.filter((s) => s.finished);
          const last = finished[finished.length - 1] ?? snapshots[snapshots.length - 1]!;
          const owner = ownerOrUndefined(ds, group);
          const comment = firstLine(ds.getNotes(group));
          out.push({
            'backup-type': group.type,
            'backup-id': group.id,
            'last-backup': last.dir.time,
            'backup-count': snapshots.length,
            files: last.files,
            ...(owner !== undefined && { owner }),
            ...(comment !== undefined && { comment }),
          });
        }
        return out;
      }),
  }),
  defineRoute({
    method: 'DELETE',
    path: '/admin/datastore/:store/groups',
    params: StoreParams,
    query: Type.Object({ ...GroupQuery, 'error-on-protected': ErrorOnProtectedSchema }),
    returns: BackupGroupDeleteStatsSchema,
    permission: ownerChecked({ path: NS_PATH, full: MODIFY, owner: PRUNE }),
    protected: true,
    description:
      'Delete a backup group with all its snapshots (write operation), PBS BackupGroupDeleteStats. ' +
      'Protected snapshots, and so the group, stay; then the call fails after deleting the rest, ' +
      'unless `error-on-protected` is false (as a PBS push job sends it). Datastore.Modify, or ' +
      'Datastore.Prune on a group the caller owns.',
    handler: ({ query, access }) => {
      const group = groupOf(query);
      const errorOnProtected = query['error-on-protected'] ?? true;
      return access.withGroup(
        group,
        'reclaim',
        { kind: 'delete-group', detail: group.toString() },
        async (ds) => {
          const result = await ds.deleteGroup(group);
          // PBS `delete_group`: the same words whether it fails or only warns
          if (!result.groupRemoved && errorOnProtected) {
            throw ERR_GROUP_PARTIALLY_DELETED();
          }
          return deleteStatsOf({ ...result, removedGroups: result.groupRemoved ? 1 : 0 });
        },
      );
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/snapshots',
    params: StoreParams,
    query: Type.Object({
      ns: Type.Optional(NsSchema),
      'backup-type': Type.Optional(GroupQuery['backup-type']),
      'backup-id': Type.Optional(GroupQuery['backup-id']),
    }),
    permission: ownerChecked({ path: NS_PATH, full: AUDIT, owner: BACKUP }),
    description:
      'List snapshots (read operation), PBS SnapshotListItem, of one group or of every group of the ' +
      'namespace. Datastore.Audit lists all; Datastore.Backup only those of owned groups.',
    handler: ({ query, access }) => {
      const type = query['backup-type'];
      const id = query['backup-id'];
      return access.withStore('read', { kind: 'list', detail: 'snapshots' }, (ds) => {
        const groups = ds
          .listGroups(access.ns)
          .filter((g) => (type === undefined || g.type === type) && (id === undefined || g.id === id));
        const out: unknown[] = [];
        for (const group of groups) {
          if (!access.mayAccess(ds, group)) continue;
          const owner = ownerOrUndefined(ds, group);
          for (const info of ds.listSnapshots(group)) out.push(snapshotItem(ds, info, owner));
        }
        return out;
      });
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/admin/datastore/:store/snapshots',
    params: StoreParams,
    query: Type.Object(SnapshotQuery),
    permission: ownerChecked({ path: NS_PATH, full: MODIFY, owner: PRUNE }),
    protected: true,
    description:
      'Delete one snapshot (write operation). Datastore.Modify, or Datastore.Prune on a group the ' +
      'caller owns. A protected snapshot is refused.',
    handler: ({ query, access }) => {
      const dir = snapshotOf(query);
      return access.withGroup(
        dir.group,
        'reclaim',
        { kind: 'delete-snapshot', detail: dir.toString() },
        async (ds) => {
          await ds.deleteSnapshot(dir);
          return null;
        },
      );
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/files',
    params: StoreParams,
    query: Type.Object(SnapshotQuery),
    permission: ownerChecked({ path: NS_PATH, full: ['Datastore.Audit', 'Datastore.Read'], owner: BACKUP }),
    description:
      'List the files of a snapshot (read operation), PBS BackupContent. Datastore.Audit or ' +
      'Datastore.Read, or Datastore.Backup on a group the caller owns.',
    handler: ({ query, access }) => {
      const dir = snapshotOf(query);
      return access.withGroup(dir.group, 'read', { kind: 'list', detail: dir.toString() }, (ds) => {
        const names = ds.snapshotFiles(dir).map((f) => f.filename);
        return contentOf(ds, dir, names).files;
      });
    },
  }),
  ...notesRoutes(),
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/protected',
    params: StoreParams,
    query: Type.Object(SnapshotQuery),
    permission: ownerChecked({ path: NS_PATH, full: AUDIT, owner: BACKUP }),
    returns: Type.Boolean(),
    description:
      'Whether a snapshot is protected (read operation). Datastore.Audit, or Datastore.Backup on a ' +
      'group the caller owns.',
    handler: ({ query, access }) => {
      const dir = snapshotOf(query);
      return access.withGroup(dir.group, 'read', { kind: 'protected', detail: dir.toString() }, (ds) =>
        ds.getProtected(dir),
      );
    },
  }),
  defineRoute({
    method: 'PUT',
    path: '/admin/datastore/:store/protected',
    params: StoreParams,
    body: Type.Object({ ...SnapshotQuery, protected: Type.Boolean() }),
    permission: ownerChecked({ path: NS_PATH, full: MODIFY, owner: BACKUP }),
    protected: true,
    description:
      'Protect or unprotect a snapshot (write operation). Datastore.Modify, or Datastore.Backup on a ' +
      'group the caller owns.',
    handler: ({ body, access }) => {
      const dir = snapshotOf(body);
      return access.withGroup(
        dir.group,
        'reclaim',
        { kind: 'protected', detail: dir.toString() },
        async (ds) => {
          await ds.setProtected(dir, body.protected);
          return null;
        },
      );
    },
  }),
];

/** Notes of snapshots (`notes`) and of groups (`group-notes`): GET is read, PUT is write. */
function notesRoutes(): AnyRoute[] {
  const NotesSchema = Type.String({ maxLength: 64 * 1024 });
  return [
    defineRoute({
      method: 'GET',
      path: '/admin/datastore/:store/notes',
      params: StoreParams,
      query: Type.Object(SnapshotQuery),
      permission: ownerChecked({ path: NS_PATH, full: AUDIT, owner: BACKUP }),
      returns: Type.String(),
      description:
        'Notes of a snapshot (read operation). Datastore.Audit, or Datastore.Backup on a group the ' +
        'caller owns.',
      handler: ({ query, access }) => {
        const dir = snapshotOf(query);
        return access.withGroup(dir.group, 'read', { kind: 'notes', detail: dir.toString() }, (ds) =>
          ds.getNotes(dir),
        );
      },
    }),
    defineRoute({
      method: 'PUT',
      path: '/admin/datastore/:store/notes',
      params: StoreParams,
      body: Type.Object({ ...SnapshotQuery, notes: NotesSchema }),
      permission: ownerChecked({ path: NS_PATH, full: MODIFY, owner: BACKUP }),
      protected: true,
      description:
        'Set the notes of a snapshot (write operation). Datastore.Modify, or Datastore.Backup on a ' +
        'group the caller owns.',
      handler: ({ body, access }) => {
        const dir = snapshotOf(body);
        return access.withGroup(
          dir.group,
          'reclaim',
          { kind: 'notes', detail: dir.toString() },
          async (ds) => {
            await ds.setNotes(dir, body.notes);
            return null;
          },
        );
      },
    }),
    defineRoute({
      method: 'GET',
      path: '/admin/datastore/:store/group-notes',
      params: StoreParams,
      query: Type.Object(GroupQuery),
      permission: ownerChecked({ path: NS_PATH, full: AUDIT, owner: BACKUP }),
      returns: Type.String(),
      description:
        'Notes of a backup group (read operation). Datastore.Audit, or Datastore.Backup on a group ' +
        'the caller owns.',
      handler: ({ query, access }) => {
        const group = groupOf(query);
        return access.withGroup(group, 'read', { kind: 'notes', detail: group.toString() }, (ds) =>
          ds.getNotes(group),
        );
      },
    }),
    defineRoute({
      method: 'PUT',
      path: '/admin/datastore/:store/group-notes',
      params: StoreParams,
      body: Type.Object({ ...GroupQuery, notes: NotesSchema }),
      permission: ownerChecked({ path: NS_PATH, full: MODIFY, owner: BACKUP }),
      protected: true,
      description:
        'Set the notes of a backup group (write operation). Datastore.Modify, or Datastore.Backup on ' +
        'a group the caller owns.',
      handler: ({ body, access }) => {
        const group = groupOf(body);
        return access.withGroup(group, 'reclaim', { kind: 'notes', detail: group.toString() }, async (ds) => {
          await ds.setNotes(group, body.notes);
          return null;
        });
      },
    }),
  ];
}
