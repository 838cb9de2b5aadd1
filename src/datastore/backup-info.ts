/**
 * Namespaces, backup groups and snapshots on disk (reference §7.1, PBS `backup_info.rs`):
 *
 *   <base>/[ns/<a>/ns/<b>/]<type>/<id>/<YYYY-MM-DDTHH:MM:SSZ>/
 *
 * `BackupNamespace`, `BackupGroup` and `BackupDir` validate every part in their constructors, so
 * a relative path can only be built from validated names and never escapes the datastore.
 *
 * Locking: PBS flocks the snapshot and group directories themselves. We take the group and
 * snapshot locks through the datastore's LockService instead (`store.locks`, datastore-locks.ts),
 * whose local implementation keeps them under the run dir, as PBS 4 also moved to: a lock held on
 * a directory inside the datastore is an open file under its mount point, which would keep an
 * `offline` datastore from being unmounted (maintenance.md invariant 7); and a lock that lives
 * apart from the directory it guards survives its removal, so a delete can hold its lock until
 * the very end. Exclusive for a backup or a delete, shared for readers and for flag changes that
 * must not race a running backup.
 */
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  BadRequestError,
  ERR_GROUP_HAS_OWNER,
  ERR_GROUP_OWNER_CHANGED,
  ERR_NAMESPACE_EXISTS,
  ERR_ROOT_NAMESPACE_EXISTS,
  ERR_SNAPSHOT_EXISTS,
  ERR_SNAPSHOT_PROTECTED,
  NotFoundError,
} from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import {
  BACKUP_FILE_REGEX,
  BACKUP_ID_REGEX,
  BACKUP_TIME_REGEX,
  BACKUP_TYPES,
  MAX_NAMESPACE_DEPTH,
  SAFE_ID_REGEX,
  backupTimeFromString,
  backupTimeToString,
  parseAuthid,
  parseBackupType,
  parseNamespace,
  validateBackupId,
  validateNamespaceComponent,
  validateNamespaceComponents,
  type BackupType,
} from '../api-types/names.js';
import { MANIFEST_BLOB_NAME, loadManifest, updateManifest } from './manifest.js';
import type { ContentMirror } from './content-mirror.js';
import type { DatastoreLocks } from './datastore-locks.js';
import type { HeldLock } from './lock-service.js';

export const OWNER_FILE_NAME = 'owner';
export const GROUP_NOTES_FILE_NAME = 'notes';
export const PROTECTED_MARKER_NAME = '.protected';

/** A namespace: `a/b` to users, `ns/a/ns/b` on disk; the root namespace is empty. */
/** ` in namespace 'a/b'` for error messages; nothing for the root namespace. */
function inNamespace(ns: BackupNamespace): string {
  return ns.name === '' ? '' : ` in namespace '${ns.name}'`;
}

export class BackupNamespace {
  readonly components: readonly string[];
  private static readonly ROOT = new BackupNamespace([]);

  private constructor(components: readonly string[]) {
    this.components = Object.freeze([...components]);
  }

  static root(): BackupNamespace {
    return BackupNamespace.ROOT;
  }

  /** Parse the `ns` parameter form `a/b/c` ('' is the root). */
  static parse(ns: string, param = 'ns'): BackupNamespace {
    const parts = parseNamespace(ns, param);
    return parts.length === 0 ? BackupNamespace.ROOT : new BackupNamespace(parts);
  }

  static fromComponents(parts: readonly string[], param = 'ns'): BackupNamespace {
    return parts.length === 0
      ? BackupNamespace.ROOT
      : new BackupNamespace(validateNamespaceComponents(parts, param));
  }

  isRoot(): boolean {
    return this.components.length === 0;
  }

  get depth(): number {
    return this.components.length;
  }

  /** The `ns` parameter form, `a/b`. */
  get name(): string {
    return this.components.join('/');
  }

  /** Relative path inside the datastore, `ns/a/ns/b` ('' for the root). */
  get path(): string {
    return this.components.map((c) => `ns/${c}`).join('/');
  }

  child(name: string): BackupNamespace {
    validateNamespaceComponent(name, 'ns');
    return BackupNamespace.fromComponents([...this.components, name]);
  }

  parent(): BackupNamespace {
    return BackupNamespace.fromComponents(this.components.slice(0, -1));
  }

  equals(other: BackupNamespace): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }
}

/** Order of backup types in listings: PBS sorts ct, host, vm (`BackupType::order`). */
const TYPE_ORDER: Record<BackupType, number> = { ct: 0, host: 1, vm: 2 };

/** `<type>/<id>` inside a namespace. */
export class BackupGroup {
  readonly ns: BackupNamespace;
  readonly type: BackupType;
  readonly id: string;

  constructor(ns: BackupNamespace, type: string, id: string) {
    this.ns = ns;
    this.type = parseBackupType(type);
    this.id = validateBackupId(id);
  }

  /** Relative path inside the datastore, e.g. `ns/a/vm/100` or `host/web01`. */
  get relativePath(): string {
    return this.ns.isRoot() ? `${this.type}/${this.id}` : `${this.ns.path}/${this.type}/${this.id}`;
  }

  snapshot(time: number): BackupDir {
    return new BackupDir(this, time);
  }

  equals(other: BackupGroup): boolean {
    return this.ns.equals(other.ns) && this.type === other.type && this.id === other.id;
  }

  /** `type/id`, as PBS prints a group (the namespace is separate). */
  toString(): string {
    return `${this.type}/${this.id}`;
  }

  /**
   * PBS's group order (`impl Ord for BackupGroup`): by type (ct, host, vm), then ids that are
   * numbers numerically and before all others, the rest as strings.
   */
  static compare(a: BackupGroup, b: BackupGroup): number {
    const ns = a.ns.name < b.ns.name ? -1 : a.ns.name > b.ns.name ? 1 : 0;
    if (ns !== 0) return ns;
    const t = TYPE_ORDER[a.type] - TYPE_ORDER[b.type];
    if (t !== 0) return t;
    const na = /^[0-9]+$/.test(a.id) ? BigInt(a.id) : undefined;
    const nb = /^[0-9]+$/.test(b.id) ? BigInt(b.id) : undefined;
    if (na !== undefined && nb !== undefined) return na < nb ? -1 : na > nb ? 1 : 0;
    if (na !== undefined) return -1;
    if (nb !== undefined) return 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }
}

/** A snapshot: a group plus a backup time (epoch seconds, named in RFC 3339 UTC on disk). */
export class BackupDir {
  readonly group: BackupGroup;
  readonly time: number;
  readonly timeString: string;

  constructor(group: BackupGroup, time: number) {
    this.group = group;
    this.timeString = backupTimeToString(time);
    this.time = time;
  }

  static fromTimeString(group: BackupGroup, timeString: string): BackupDir {
    return new BackupDir(group, backupTimeFromString(timeString));
  }

  get relativePath(): string {
    return `${this.group.relativePath}/${this.timeString}`;
  }

  /** `type/id/time`, as PBS prints a snapshot. */
  toString(): string {
    return `${this.group}/${this.timeString}`;
  }
}

/** Where a datastore's backups live and how its locks are taken; the Datastore facade is one. */
export interface BackupStore {
  readonly basePath: string;
  readonly locks: DatastoreLocks;
  /** The second copy of the backup tree's files (an S3 datastore's `.cnt/`), kept in step here. */
  readonly mirror?: ContentMirror;
}

/**
 * How a manifest change reaches the store's mirror: the new blob is uploaded before it replaces
 * the local one (PBS 4 `update_manifest`), so the bucket is never behind a manifest the cache
 * shows. Undefined without a mirror.
 */
export function manifestUpload(
  store: BackupStore,
  dir: BackupDir,
): ((blob: Buffer) => Promise<void>) | undefined {
  const mirror = store.mirror;
  if (!mirror) return undefined;
  return (blob) => mirror.put(`${dir.relativePath}/${MANIFEST_BLOB_NAME}`, blob);
}

export function namespacePath(store: BackupStore, ns: BackupNamespace): string {
  return ns.isRoot() ? store.basePath : join(store.basePath, ns.path);
}

export function groupPath(store: BackupStore, group: BackupGroup): string {
  return join(store.basePath, group.relativePath);
}

export function snapshotPath(store: BackupStore, dir: BackupDir): string {
  return join(store.basePath, dir.relativePath);
}

function isDir(path: string): boolean {
  try {
    return lstatSync(path).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Directory entries, or [] when the directory does not exist (an empty type dir is normal). */
function readDirOrEmpty(path: string): string[] {
  try {
    return readdirSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function namespaceExists(store: BackupStore, ns: BackupNamespace): boolean {
  return isDir(namespacePath(store, ns));
}

/**
 * The namespace `parent` and every namespace below it, up to `maxDepth` levels further down,
 * parents before children and siblings by name. Directories under `ns/` whose names are not
 * safe-ids are not namespaces and are skipped.
 */
export function listNamespaces(
  store: BackupStore,
  parent: BackupNamespace = BackupNamespace.root(),
  maxDepth = MAX_NAMESPACE_DEPTH,
): BackupNamespace[] {
  if (!namespaceExists(store, parent)) throw new NotFoundError(`namespace '${parent.name}' does not exist`);
  const out: BackupNamespace[] = [];
  const walk = (ns: BackupNamespace, depthLeft: number) => {
    out.push(ns);
    if (depthLeft <= 0 || ns.depth >= MAX_NAMESPACE_DEPTH) return;
    const nsDir = join(namespacePath(store, ns), 'ns');
    const names = readDirOrEmpty(nsDir)
      .filter((n) => SAFE_ID_REGEX.test(n) && isDir(join(nsDir, n)))
      .sort();
    for (const name of names) walk(ns.child(name), depthLeft - 1);
  };
  walk(parent, maxDepth);
  return out;
}

/** Create a namespace whose parent exists (PBS refuses to create intermediate levels implicitly). */
export function createNamespace(store: BackupStore, ns: BackupNamespace): void {
  if (ns.isRoot()) throw ERR_ROOT_NAMESPACE_EXISTS();
  if (!namespaceExists(store, ns.parent())) {
    throw new NotFoundError(`parent namespace '${ns.parent().name}' does not exist`);
  }
  try {
    mkdirSync(namespacePath(store, ns), { recursive: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') mkdirSync(namespacePath(store, ns), { recursive: true });
    else if (code === 'EEXIST') throw ERR_NAMESPACE_EXISTS(ns.name);
    else throw err;
  }
}

/** What a namespace deletion removed (PBS `BackupGroupDeleteStats`). */
export interface NamespaceDeleteStats {
  removedGroups: number;
  protectedSnapshots: number;
  removedSnapshots: number;
}

export interface DeleteNamespaceResult {
  /** False when something stayed: protected snapshots, or groups without `deleteGroups`. */
  removedAll: boolean;
  stats: NamespaceDeleteStats;
}

/** rmdir that ignores a missing or non-empty directory; true when it is gone. */
function removeDirIfEmpty(path: string): boolean {
  try {
    rmdirSync(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Delete a namespace and every namespace below it, deepest first (PBS
 * `remove_namespace_recursive`). With `deleteGroups` each level's groups are destroyed as
 * `deleteGroup` does (protected snapshots, and so their groups, stay); without it only empty
 * namespaces are removed. Either way a level that is not empty afterwards stays and `removedAll`
 * is false. Fails with CONFLICT, as `deleteGroup`, when a backup holds a group's lock.
 */
export async function deleteNamespace(
  store: BackupStore,
  ns: BackupNamespace,
  opts: { deleteGroups?: boolean } = {},
): Promise<DeleteNamespaceResult> {
  if (ns.isRoot())
    throw new BadRequestError("invalid ns '': the root namespace cannot be deleted", { param: 'ns' });
  if (!namespaceExists(store, ns)) throw new NotFoundError(`namespace '${ns.name}' does not exist`);
  const levels = listNamespaces(store, ns).sort((a, b) => b.depth - a.depth);
  const stats: NamespaceDeleteStats = { removedGroups: 0, protectedSnapshots: 0, removedSnapshots: 0 };
  let removedAll = true;
  for (const level of levels) {
    if (opts.deleteGroups) {
      for (const group of listGroups(store, level)) {
        const r = await deleteGroup(store, group);
        stats.removedSnapshots += r.removedSnapshots;
        stats.protectedSnapshots += r.protectedSnapshots;
        if (r.groupRemoved) stats.removedGroups++;
        else removedAll = false;
      }
    }
    const dir = namespacePath(store, level);
    // empty type directories (left by deleted groups) and an empty `ns/` would keep rmdir from working
    for (const type of BACKUP_TYPES) removeDirIfEmpty(join(dir, type));
    removeDirIfEmpty(join(dir, 'ns'));
    if (!removeDirIfEmpty(dir)) removedAll = false;
    else await store.mirror?.deleteDir(level.path);
  }
  return { removedAll, stats };
}

/** The groups of one namespace (not of its children), in PBS's order. */
export function listGroups(store: BackupStore, ns: BackupNamespace): BackupGroup[] {
  if (!namespaceExists(store, ns)) throw new NotFoundError(`namespace '${ns.name}' does not exist`);
  const groups: BackupGroup[] = [];
  for (const type of BACKUP_TYPES) {
    const typeDir = join(namespacePath(store, ns), type);
    for (const id of readDirOrEmpty(typeDir)) {
      if (BACKUP_ID_REGEX.test(id) && isDir(join(typeDir, id))) groups.push(new BackupGroup(ns, type, id));
    }
  }
  return groups.sort(BackupGroup.compare);
}

export function groupExists(store: BackupStore, group: BackupGroup): boolean {
  return isDir(groupPath(store, group));
}

export interface SnapshotInfo {
  dir: BackupDir;
  /** PBS `is_finished`: the manifest exists; a backup writes it last. */
  finished: boolean;
  protected: boolean;
  /** Archive names matching `^.*\.([fd]idx|blob)$`, sorted. */
  files: string[];
}

function archiveNames(path: string): string[] {
  return readDirOrEmpty(path)
    .filter((f) => BACKUP_FILE_REGEX.test(f) && !f.startsWith('.'))
    .sort();
}

/** Snapshots of a group, oldest first. Entries that are not snapshot directories are skipped. */
export function listSnapshots(store: BackupStore, group: BackupGroup): SnapshotInfo[] {
  const gp = groupPath(store, group);
  if (!isDir(gp)) throw new NotFoundError(`backup group '${group}' does not exist${inNamespace(group.ns)}`);
  const out: SnapshotInfo[] = [];
  for (const name of readdirSync(gp)) {
    if (!BACKUP_TIME_REGEX.test(name) || !isDir(join(gp, name))) continue;
    let dir: BackupDir;
    try {
      dir = BackupDir.fromTimeString(group, name);
    } catch {
      continue; // matches the pattern but is no real date (2024-02-30...): not a snapshot
    }
    const files = archiveNames(join(gp, name));
    out.push({
      dir,
      finished: files.includes(MANIFEST_BLOB_NAME),
      protected: existsSync(join(gp, name, PROTECTED_MARKER_NAME)),
      files,
    });
  }
  return out.sort((a, b) => a.dir.time - b.dir.time);
}

export function snapshotExists(store: BackupStore, dir: BackupDir): boolean {
  return isDir(snapshotPath(store, dir));
}

function requireSnapshot(store: BackupStore, dir: BackupDir): string {
  const path = snapshotPath(store, dir);
  if (!isDir(path)) throw new NotFoundError(`snapshot '${dir}' does not exist${inNamespace(dir.group.ns)}`);
  return path;
}

export interface SnapshotFile {
  filename: string;
  size: number;
}

/** The archive files of a snapshot with their sizes on disk, sorted by name. */
export function snapshotFiles(store: BackupStore, dir: BackupDir): SnapshotFile[] {
  const path = requireSnapshot(store, dir);
  const out: SnapshotFile[] = [];
  for (const filename of archiveNames(path)) {
    const st = lstatSync(join(path, filename));
    if (st.isFile()) out.push({ filename, size: st.size });
  }
  return out;
}

/** The group's owner (auth id), from the first line of its `owner` file. */
export function getOwner(store: BackupStore, group: BackupGroup): string {
  const path = join(groupPath(store, group), OWNER_FILE_NAME);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`backup group '${group}' has no owner file`);
    }
    throw err;
  }
  const firstLine = text.split('\n', 1)[0] ?? '';
  return parseAuthid(firstLine.trim(), `owner of ${group}`).authid;
}

/**
 * Write the owner file (`<auth-id>\n`). Without `force` the file must not exist yet: the first
 * backup of a group claims it and nobody else may (PBS `set_owner` with `create_new`).
 */
export function setOwner(
  store: BackupStore,
  group: BackupGroup,
  authId: string,
  opts: { force?: boolean; fsync?: boolean } = {},
): void {
  const id = parseAuthid(authId, 'owner').authid;
  const path = join(groupPath(store, group), OWNER_FILE_NAME);
  if (!groupExists(store, group)) throw new NotFoundError(`backup group '${group}' does not exist`);
  if (opts.force) {
    replaceFile(path, `${id}\n`, { fsync: opts.fsync });
    return;
  }
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw ERR_GROUP_HAS_OWNER(group);
    }
    throw err;
  }
  try {
    writeSync(fd, `${id}\n`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Give a group to `newOwner` (PBS `set_backup_owner`): under the group lock, taken without
 * waiting so a running backup makes it fail with CONFLICT, and only if the owner is still
 * `expectedOwner` (what the caller's permission check was made against). The owner file is
 * replaced atomically.
 */
export async function changeOwner(
  store: BackupStore,
  group: BackupGroup,
  expectedOwner: string,
  newOwner: string,
  opts: { fsync?: boolean } = {},
): Promise<void> {
  const lock = await store.locks.tryLockGroup(group, 'possibly running backup');
  try {
    const owner = getOwner(store, group);
    if (owner !== expectedOwner) {
      throw ERR_GROUP_OWNER_CHANGED(expectedOwner);
    }
    setOwner(store, group, newOwner, { force: true, fsync: opts.fsync });
    await store.mirror?.putFile(`${group.relativePath}/${OWNER_FILE_NAME}`);
  } finally {
    lock.release();
  }
}

/** Group notes; '' when there are none. */
export function getGroupNotes(store: BackupStore, group: BackupGroup): string {
  if (!groupExists(store, group)) throw new NotFoundError(`backup group '${group}' does not exist`);
  try {
    return readFileSync(join(groupPath(store, group), GROUP_NOTES_FILE_NAME), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

export async function setGroupNotes(store: BackupStore, group: BackupGroup, notes: string): Promise<void> {
  if (!groupExists(store, group)) throw new NotFoundError(`backup group '${group}' does not exist`);
  replaceFile(join(groupPath(store, group), GROUP_NOTES_FILE_NAME), notes);
  await store.mirror?.putFile(`${group.relativePath}/${GROUP_NOTES_FILE_NAME}`);
}

export function isProtected(store: BackupStore, dir: BackupDir): boolean {
  return existsSync(join(requireSnapshot(store, dir), PROTECTED_MARKER_NAME));
}

/**
 * Set or clear the `.protected` marker. Takes the snapshot lock shared and without waiting: a
 * running backup or delete (exclusive) refuses the change, a restore in progress does not.
 */
export async function setProtected(store: BackupStore, dir: BackupDir, value: boolean): Promise<void> {
  const path = requireSnapshot(store, dir);
  const lock = await store.locks.tryLockSnapshot(dir, 'backup is running or snapshot is being deleted', {
    shared: true,
  });
  try {
    const marker = join(path, PROTECTED_MARKER_NAME);
    const rel = `${dir.relativePath}/${PROTECTED_MARKER_NAME}`;
    if (value) {
      closeSync(openSync(marker, 'a', 0o644));
      await store.mirror?.putFile(rel);
    } else {
      await store.mirror?.delete(rel);
      rmSync(marker, { force: true });
    }
  } finally {
    lock.release();
  }
}

/** Snapshot notes live in the manifest's `unprotected.notes` (reference §7.5); '' when none. */
export function getSnapshotNotes(store: BackupStore, dir: BackupDir): string {
  const notes = loadManifest(requireSnapshot(store, dir)).unprotected.notes;
  return typeof notes === 'string' ? notes : '';
}

export async function setSnapshotNotes(store: BackupStore, dir: BackupDir, notes: string): Promise<void> {
  const path = requireSnapshot(store, dir);
  await updateManifest(
    path,
    (m) => {
      m.unprotected.notes = notes;
    },
    { lock: (timeoutMs) => store.locks.lockManifest(dir, { timeoutMs }), upload: manifestUpload(store, dir) },
  );
}

/**
 * Remove a snapshot directory. Refused with PROTECTED if it is protected (unless `force`, which
 * only removal of a whole datastore uses), and with CONFLICT if a backup, reader or other delete
 * holds its lock: like PBS we do not wait, a delete must not queue behind a long restore.
 */
export async function deleteSnapshot(
  store: BackupStore,
  dir: BackupDir,
  opts: { force?: boolean } = {},
): Promise<void> {
  const path = requireSnapshot(store, dir);
  const lock = await store.locks.tryLockSnapshot(dir, 'backup is running or snapshot is in use');
  try {
    if (!opts.force && existsSync(join(path, PROTECTED_MARKER_NAME))) {
      throw ERR_SNAPSHOT_PROTECTED(dir, inNamespace(dir.group.ns));
    }
    // The bucket's copy first (an S3 datastore): a refresh must not bring back what is gone here
    await store.mirror?.deleteDir(dir.relativePath);
    // The manifest first: a process killed halfway leaves an unfinished snapshot, which the next
    // start or GC removes (removeAbandonedSnapshots), never a "finished" one missing an index.
    rmSync(join(path, MANIFEST_BLOB_NAME), { force: true });
    rmSync(path, { recursive: true, force: true });
  } finally {
    lock.release();
  }
  // PBS 4 (`BackupDir::destroy`): the last snapshot takes its group, owner and notes with it, so
  // the group id is free for anyone again; not while someone holds the group (a running backup,
  // a prune, which cleans up itself).
  await removeGroupIfEmpty(store, dir.group);
}

export interface DeleteGroupResult {
  removedSnapshots: number;
  protectedSnapshots: number;
  /** False when protected snapshots remain; the group, its owner and notes then stay. */
  groupRemoved: boolean;
}

/**
 * Remove every unprotected snapshot of a group and, if none is protected, the group itself
 * (PBS `BackupGroup::destroy`). Holds the group lock without waiting, so a running backup makes
 * it fail with CONFLICT rather than delete under the writer's feet.
 */
export async function deleteGroup(store: BackupStore, group: BackupGroup): Promise<DeleteGroupResult> {
  if (!groupExists(store, group)) throw new NotFoundError(`backup group '${group}' does not exist`);
  const lock = await store.locks.tryLockGroup(group, 'possibly running backup');
  try {
    let removedSnapshots = 0;
    let protectedSnapshots = 0;
    for (const snap of listSnapshots(store, group)) {
      if (snap.protected) {
        protectedSnapshots++;
        continue;
      }
      await deleteSnapshot(store, snap.dir);
      removedSnapshots++;
    }
    const groupRemoved = protectedSnapshots === 0;
    if (groupRemoved) {
      await store.mirror?.deleteDir(group.relativePath);
      rmSync(groupPath(store, group), { recursive: true, force: true });
    }
    return { removedSnapshots, protectedSnapshots, groupRemoved };
  } finally {
    lock.release();
  }
}

/**
 * Open or create a group for a backup, holding its lock: creates the directories, claims
 * ownership for `authId` if the group is new, and returns the owner on disk (the caller compares
 * it with the requester). Waits for the group lock at most `timeoutMs` (default: fail at once,
 * as two backups of one group must not run together).
 */
export async function createLockedBackupGroup(
  store: BackupStore,
  group: BackupGroup,
  authId: string,
  opts: { timeoutMs?: number } = {},
): Promise<{ owner: string; lock: HeldLock }> {
  if (!namespaceExists(store, group.ns))
    throw new NotFoundError(`namespace '${group.ns.name}' does not exist`);
  parseAuthid(authId, 'owner');
  const lock =
    opts.timeoutMs === undefined
      ? await store.locks.tryLockGroup(group, 'another backup is already running')
      : await store.locks.lockGroup(group, { timeoutMs: opts.timeoutMs });
  try {
    const gp = groupPath(store, group);
    mkdirSync(join(gp, '..'), { recursive: true });
    let created = false;
    try {
      mkdirSync(gp);
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    // PBS only writes the owner when it created the directory, so a crash between mkdir and the
    // owner write leaves a group no backup can ever use again; we let the next backup claim it.
    // the mirror gets the owner with the group's first finished snapshot (SnapshotWriter), so a
    // first backup that fails leaves nothing in the bucket
    if (created || !existsSync(join(gp, OWNER_FILE_NAME))) setOwner(store, group, authId);
    return { owner: getOwner(store, group), lock };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/**
 * Create a new snapshot directory holding its exclusive lock; ALREADY_EXISTS when a snapshot
 * with that time exists. The caller holds the group lock.
 */
export async function createLockedBackupDir(
  store: BackupStore,
  dir: BackupDir,
): Promise<{ path: string; lock: HeldLock }> {
  const path = snapshotPath(store, dir);
  const lock = await store.locks.tryLockSnapshot(dir, 'snapshot is in use');
  try {
    mkdirSync(join(path, '..'), { recursive: true });
    mkdirSync(path);
  } catch (err) {
    lock.release();
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw ERR_SNAPSHOT_EXISTS(dir, inNamespace(dir.group.ns));
    }
    throw err;
  }
  return { path, lock };
}

/** What `removeAbandonedSnapshots` removed. */
export interface AbandonedSnapshotsResult {
  snapshots: BackupDir[];
  groups: BackupGroup[];
}

/**
 * Remove the unfinished snapshots (no manifest) that no live backup session owns: what a server
 * killed mid-backup leaves behind (a snapshot listed as unfinished for good, its `.tmp_didx`
 * never renamed). A session holds its snapshot's lock exclusively from before the directory
 * exists until it finished or removed it, in whichever process it runs, so a snapshot whose lock
 * can be taken without waiting has no session; a graceful restart's old process keeps its
 * running backups. The manifest is checked again under the lock: a session that finished in
 * between released the lock after writing it. Protected snapshots stay (the operator asked so).
 *
 * A group emptied by this goes too, as a failed backup's session removes the group it created
 * (PBS destroys an empty group the same way), under the group lock so a starting backup is not
 * pulled from under its feet. Each removal is one `log` line.
 */
export async function removeAbandonedSnapshots(
  store: BackupStore,
  log: (line: string) => void,
): Promise<AbandonedSnapshotsResult> {
  const result: AbandonedSnapshotsResult = { snapshots: [], groups: [] };
  for (const ns of listNamespaces(store)) {
    for (const group of listGroups(store, ns)) {
      let removedHere = false;
      for (const snap of listSnapshotsOrNone(store, group)) {
        if (snap.finished || snap.protected) continue;
        const lock = await store.locks.lockSnapshotIfFree(snap.dir);
        if (!lock) continue; // a live session (or a reader, a delete) has it
        try {
          const path = snapshotPath(store, snap.dir);
          if (!isDir(path) || existsSync(join(path, MANIFEST_BLOB_NAME))) continue;
          try {
            // what a failed upload left in the bucket; without a manifest it is no snapshot anyway
            await store.mirror?.deleteDir(snap.dir.relativePath);
          } catch (err) {
            log(`warning: ${snap.dir}${inNamespace(ns)}: ${(err as Error).message}`);
          }
          rmSync(path, { recursive: true, force: true });
          removedHere = true;
          result.snapshots.push(snap.dir);
          log(`removed unfinished snapshot ${snap.dir}${inNamespace(ns)}: no backup session owns it`);
        } finally {
          lock.release();
        }
      }
      if (removedHere && (await removeGroupIfEmpty(store, group))) {
        result.groups.push(group);
        log(`removed backup group ${group}${inNamespace(ns)}: no snapshot left`);
      }
    }
  }
  return result;
}

function listSnapshotsOrNone(store: BackupStore, group: BackupGroup): SnapshotInfo[] {
  try {
    return listSnapshots(store, group);
  } catch (err) {
    if (err instanceof NotFoundError) return []; // removed meanwhile
    throw err;
  }
}

/** Remove a group that has no snapshot, unless someone holds its lock; true when removed. */
async function removeGroupIfEmpty(store: BackupStore, group: BackupGroup): Promise<boolean> {
  const lock = await store.locks.lockGroupIfFree(group);
  if (!lock) return false;
  try {
    if (!groupExists(store, group) || listSnapshots(store, group).length > 0) return false;
    await store.mirror?.deleteDir(group.relativePath);
    rmSync(groupPath(store, group), { recursive: true, force: true });
    return true;
  } finally {
    lock.release();
  }
}
