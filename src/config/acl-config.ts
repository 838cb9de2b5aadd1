/**
 * `acl.cfg` and the role/privilege table, exactly as PBS 4.2 defines them (`pbs-api-types/src/acl.rs`,
 * `pbs-config/src/acl.rs`). A line is `acl:<propagate 0|1>:<path>:<ugid list>:<role list>`.
 * The tree and its role evaluation are pure; the IO helpers add the digest and the lock
 * (`<configDir>/.acl.lck`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadConfigError, BadRequestError } from '../errors.js';
import { withFileLock } from '../sys/file-lock.js';
import { replaceFile } from '../sys/atomic-file.js';
import { checkDigest, configDigest, parseAuthId, SUPERUSER } from './user-config.js';

/** Every privilege PBS knows, in PBS's bit order (the order privilege lists are printed in). */
export const PRIVILEGES = [
  'Sys.Audit',
  'Sys.Modify',
  'Sys.PowerManagement',
  'Datastore.Audit',
  'Datastore.Allocate',
  'Datastore.Modify',
  'Datastore.Read',
  'Datastore.Verify',
  'Datastore.Backup',
  'Datastore.Prune',
  'Permissions.Modify',
  'Remote.Audit',
  'Remote.Modify',
  'Remote.Read',
  'Remote.DatastoreBackup',
  'Remote.DatastoreModify',
  'Remote.DatastorePrune',
  'Sys.Console',
  'Tape.Audit',
  'Tape.Modify',
  'Tape.Write',
  'Tape.Read',
  'Realm.Allocate',
] as const;
export type Privilege = (typeof PRIVILEGES)[number];

/** PBS's built-in roles. Admin has every privilege; NoAccess none and masks inherited roles. */
export const ROLES: Readonly<Record<string, readonly Privilege[]>> = {
  Admin: PRIVILEGES,
  Audit: ['Sys.Audit', 'Datastore.Audit'],
  NoAccess: [],
  DatastoreAdmin: [
    'Datastore.Audit',
    'Datastore.Modify',
    'Datastore.Read',
    'Datastore.Verify',
    'Datastore.Backup',
    'Datastore.Prune',
  ],
  DatastoreReader: ['Datastore.Audit', 'Datastore.Verify', 'Datastore.Read'],
  DatastoreBackup: ['Datastore.Backup'],
  DatastorePowerUser: ['Datastore.Prune', 'Datastore.Backup'],
  DatastoreAudit: ['Datastore.Audit'],
  RemoteAudit: ['Remote.Audit'],
  RemoteAdmin: ['Remote.Audit', 'Remote.Modify', 'Remote.Read'],
  RemoteSyncOperator: ['Remote.Audit', 'Remote.Read'],
  RemoteSyncPushOperator: ['Remote.Audit', 'Remote.DatastoreBackup'],
  RemoteDatastorePowerUser: ['Remote.Audit', 'Remote.DatastoreBackup', 'Remote.DatastorePrune'],
  RemoteDatastoreAdmin: [
    'Remote.Audit',
    'Remote.DatastoreBackup',
    'Remote.DatastoreModify',
    'Remote.DatastorePrune',
  ],
  TapeAudit: ['Tape.Audit'],
  TapeAdmin: ['Tape.Audit', 'Tape.Modify', 'Tape.Read', 'Tape.Write'],
  TapeOperator: ['Tape.Audit', 'Tape.Read', 'Tape.Write'],
  TapeReader: ['Tape.Audit', 'Tape.Read'],
};
export const ROLE_NAMES = Object.keys(ROLES);

/** Each role's description, PBS's doc comment on its `Role` variant (`GET /access/roles` `comment`). */
export const ROLE_COMMENTS: Readonly<Record<string, string>> = {
  Admin: 'Administrator',
  Audit: 'Auditor',
  NoAccess: 'Disable Access',
  DatastoreAdmin: 'Datastore Administrator',
  DatastoreReader: 'Datastore Reader (inspect datastore content and do restores)',
  DatastoreBackup: 'Datastore Backup (backup and restore owned backups)',
  DatastorePowerUser: 'Datastore PowerUser (backup, restore and prune owned backup)',
  DatastoreAudit: 'Datastore Auditor',
  RemoteAudit: 'Remote Auditor',
  RemoteAdmin: 'Remote Administrator',
  RemoteSyncOperator: 'Synchronization Operator',
  RemoteSyncPushOperator: 'Synchronisation Operator (push direction)',
  RemoteDatastorePowerUser: 'Remote Datastore Prune',
  RemoteDatastoreAdmin: 'Remote Datastore Admin',
  TapeAudit: 'Tape Auditor',
  TapeAdmin: 'Tape Administrator',
  TapeOperator: 'Tape Operator',
  TapeReader: 'Tape Reader',
};
export const NO_ACCESS = 'NoAccess';

export function isRole(name: string): boolean {
  return Object.hasOwn(ROLES, name);
}

/** `/a/b/` → `['a', 'b']`. */
export function splitAclPath(path: string): string[] {
  return path.split('/').filter((c) => c !== '');
}

// PBS ACL_PATH_REGEX: `/` or `/safe-id(/safe-id)*`.
export const ACL_PATH_PATTERN = String.raw`^(?:/|(?:/[A-Za-z0-9_][A-Za-z0-9._\-]*)+)$`;

/**
 * PBS `check_acl_path`: only paths that name something PBS knows (depth limits per subtree).
 * Returns an error message, or undefined when the path is acceptable.
 */
export function aclPathError(path: string): string | undefined {
  if (!new RegExp(ACL_PATH_PATTERN).test(path) || path.length > 128) return `invalid acl path '${path}'.`;
  const c = splitAclPath(path);
  const n = c.length;
  const ok = (() => {
    if (n === 0) return true;
    switch (c[0]) {
      case 'access':
        return (
          n === 1 || (n === 2 && ['acl', 'users', 'domains'].includes(c[1]!)) || (c[1] === 'openid' && n <= 3)
        );
      case 'datastore':
        return n <= 2 + 7; // store plus up to MAX_NAMESPACE_DEPTH (7) namespace levels
      case 'remote':
        return n <= 3 + 7; // remote, store, then namespace levels (push sync targets)
      case 'system':
        if (n === 1) return true;
        if (['certificates', 'disks', 'log', 'notifications', 'status', 'tasks', 'time'].includes(c[1]!))
          return n === 2;
        if (['services', 's3-endpoint', 'encryption-keys'].includes(c[1]!)) return n <= 3;
        if (c[1] === 'network')
          return n === 2 || (c[2] === 'dns' && n === 3) || (c[2] === 'interfaces' && n <= 4);
        return false;
      case 'tape':
        return n === 1 || (['device', 'pool', 'job'].includes(c[1]!) && n <= 3);
      default:
        return false;
    }
  })();
  return ok ? undefined : `invalid acl path '${path}'.`;
}

/** role name → propagate flag */
type RoleMap = Map<string, boolean>;

interface AclNode {
  /** auth id (user or token) → roles */
  users: Map<string, RoleMap>;
  /** group name (without `@`) → roles; PBS parses groups but never grants through them. */
  groups: Map<string, RoleMap>;
  children: Map<string, AclNode>;
}

const newNode = (): AclNode => ({ users: new Map(), groups: new Map(), children: new Map() });

function insertRole(map: Map<string, RoleMap>, ugid: string, role: string, propagate: boolean): void {
  let roles = map.get(ugid);
  if (!roles) map.set(ugid, (roles = new Map()));
  // NoAccess excludes every other role on the same node, and vice versa (PBS insert_user_role).
  if (role === NO_ACCESS) roles.clear();
  else roles.delete(NO_ACCESS);
  roles.set(role, propagate);
}

/** One ACL entry as the API lists it (PBS `AclListItem`). */
export interface AclListItem {
  path: string;
  ugid: string;
  ugid_type: 'user' | 'group';
  propagate: boolean;
  roleid: string;
}

/** The parsed acl.cfg. */
export class AclTree {
  readonly root: AclNode = newNode();

  private node(path: string, create: true): AclNode;
  private node(path: string, create: false): AclNode | undefined;
  private node(path: string, create: boolean): AclNode | undefined {
    let node = this.root;
    for (const comp of splitAclPath(path)) {
      let child = node.children.get(comp);
      if (!child) {
        if (!create) return undefined;
        node.children.set(comp, (child = newNode()));
      }
      node = child;
    }
    return node;
  }

  /** Grant `role` to a user/token (or `@group`) on `path`. */
  insert(path: string, ugid: string, role: string, propagate: boolean): void {
    const node = this.node(path, true);
    if (ugid.startsWith('@')) insertRole(node.groups, ugid.slice(1), role, propagate);
    else insertRole(node.users, ugid, role, propagate);
  }

  /** Remove one role of a user/token (or `@group`) on `path`; never fails. */
  delete(path: string, ugid: string, role: string): void {
    const node = this.node(path, false);
    if (!node) return;
    const map = ugid.startsWith('@') ? node.groups : node.users;
    const key = ugid.startsWith('@') ? ugid.slice(1) : ugid;
    map.get(key)?.delete(role);
    if (map.get(key)?.size === 0) map.delete(key);
  }

  /** Drop every entry of `authId` (and, for a user, of its tokens) — used when deleting them. */
  deleteAuthId(authId: string): void {
    const visit = (node: AclNode) => {
      for (const id of [...node.users.keys()]) {
        if (id === authId || (!authId.includes('!') && id.startsWith(`${authId}!`))) node.users.delete(id);
      }
      for (const child of node.children.values()) visit(child);
    };
    visit(this.root);
  }

  /**
   * PBS `AclTree::roles`: roles with the propagate flag along the way, all roles on the last
   * component; a node that has any entry for `authId` replaces what was inherited. Tokens never
   * fall back to group roles.
   */
  roles(authId: string, path: string): RoleMap {
    const comps = splitAclPath(path);
    let node: AclNode | undefined = this.root;
    let result = extractRoles(node, authId, comps.length === 0);
    for (let i = 0; i < comps.length; i++) {
      node = node.children.get(comps[i]!);
      if (!node) break;
      const found = extractRoles(node, authId, i === comps.length - 1);
      if (found.size > 0) result = found;
    }
    return result;
  }

  /**
   * Every path below the root that has a node in the tree (`/datastore`, `/datastore/s1`, ...),
   * whoever the entries are for: PBS's `populate_acl_paths`, the candidate paths of
   * `GET /access/permissions`.
   */
  nodePaths(): string[] {
    const out: string[] = [];
    const visit = (node: AclNode, path: string) => {
      for (const [name, child] of node.children) {
        out.push(`${path}/${name}`);
        visit(child, `${path}/${name}`);
      }
    };
    visit(this.root, '');
    return out;
  }

  /** Whether `authId` holds any of `privs` on `path` or anywhere below it (PBS any_privs_below). */
  anyPrivsBelow(authId: string, path: string, privs: readonly string[]): boolean {
    const hasAny = (node: AclNode, leaf: boolean) =>
      [...extractRoles(node, authId, leaf).keys()].some((r) => ROLES[r]?.some((p) => privs.includes(p)));
    let node: AclNode | undefined = this.root;
    for (const comp of splitAclPath(path)) {
      if (hasAny(node, false)) return true;
      node = node.children.get(comp);
      if (!node) return false;
    }
    if (hasAny(node, false)) return true;
    const below = (n: AclNode): boolean => hasAny(n, true) || [...n.children.values()].some(below);
    return [...node.children.values()].some(below);
  }

  /** All entries, as `GET /access/acl` lists them. */
  list(): AclListItem[] {
    const out: AclListItem[] = [];
    const visit = (node: AclNode, path: string) => {
      for (const [ugid_type, map] of [
        ['user', node.users],
        ['group', node.groups],
      ] as const) {
        for (const [id, roles] of map) {
          for (const [roleid, propagate] of roles) {
            out.push({ path: path || '/', ugid: id, ugid_type, propagate, roleid });
          }
        }
      }
      for (const [name, child] of [...node.children].sort(([a], [b]) => (a < b ? -1 : 1))) {
        visit(child, `${path}/${name}`);
      }
    };
    visit(this.root, '');
    return out;
  }
}

function extractRoles(node: AclNode, authId: string, leaf: boolean): RoleMap {
  const out: RoleMap = new Map();
  const roles = node.users.get(authId);
  if (!roles) return out; // group membership is not implemented in PBS either ("fixme")
  for (const [role, propagate] of roles) {
    if (!propagate && !leaf) continue;
    if (role === NO_ACCESS) return new Map([[NO_ACCESS, false]]);
    out.set(role, propagate);
  }
  return out;
}

/** Parse acl.cfg text (PBS `AclTree::from_raw`). */
export function parseAclConfig(text: string, file = 'acl.cfg'): AclTree {
  const tree = new AclTree();
  text.split('\n').forEach((rawLine, idx) => {
    const line = rawLine.trim();
    if (line === '') return;
    const fail = (what: string): never => {
      throw new BadConfigError(`unable to parse acl config ${file}, line ${idx + 1} - ${what}`);
    };
    const items = line.split(':');
    if (items.length !== 5) fail('wrong number of items.');
    const [kind, prop, path, uglist, rolelist] = items as [string, string, string, string, string];
    if (kind !== 'acl') fail("line does not start with 'acl'.");
    if (prop !== '0' && prop !== '1') fail("expected '0' or '1' for propagate flag.");
    for (const ugid of uglist.split(',').map((v) => v.trim())) {
      if (!ugid.startsWith('@') && !parseAuthId(ugid)) fail(`invalid auth id '${ugid}'`);
      for (const role of rolelist.split(',').map((v) => v.trim())) {
        if (!isRole(role)) fail(`unknown role '${role}'`);
        tree.insert(path, ugid, role, prop === '1');
      }
    }
  });
  return tree;
}

/**
 * Serialize as PBS does (`write_node_config`): per node, non-propagating lines first, users with
 * the same role set grouped on one line, root@pam skipped (it is always Admin).
 */
export function formatAclConfig(tree: AclTree): string {
  const lines: string[] = [];
  const visit = (node: AclNode, path: string) => {
    for (const propagate of [false, true]) {
      // role → sorted ugids holding it with this propagate flag
      const byRole = new Map<string, Set<string>>();
      const add = (ugid: string, roles: RoleMap) => {
        for (const [role, p] of roles) {
          if (p !== propagate) continue;
          if (!byRole.has(role)) byRole.set(role, new Set());
          byRole.get(role)!.add(ugid);
        }
      };
      for (const [id, roles] of node.users) if (id !== SUPERUSER) add(id, roles);
      for (const [group, roles] of node.groups) add(`@${group}`, roles);
      // ugid list → roles
      const byList = new Map<string, string[]>();
      for (const [role, ugids] of byRole) {
        const list = [...ugids].sort().join(',');
        if (!byList.has(list)) byList.set(list, []);
        byList.get(list)!.push(role);
      }
      for (const list of [...byList.keys()].sort()) {
        const roles = byList.get(list)!.sort();
        const roleList = roles.includes(NO_ACCESS) ? NO_ACCESS : roles.join(',');
        lines.push(`acl:${propagate ? 1 : 0}:${path || '/'}:${list}:${roleList}`);
      }
    }
    for (const name of [...node.children.keys()].sort()) visit(node.children.get(name)!, `${path}/${name}`);
  };
  visit(tree.root, '');
  return lines.map((l) => l + '\n').join('');
}

export const aclConfigPath = (configDir: string) => join(configDir, 'acl.cfg');
const lockPath = (configDir: string) => join(configDir, '.acl.lck');

/** Read acl.cfg; a missing file is an empty tree. */
export function readAclConfig(configDir: string): { tree: AclTree; digest: string } {
  let raw = '';
  try {
    raw = readFileSync(aclConfigPath(configDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { tree: parseAclConfig(raw, aclConfigPath(configDir)), digest: configDigest(raw) };
}

/** Read-modify-write acl.cfg under its lock, checking the client's digest first. */
export async function updateAclConfig<T>(
  configDir: string,
  fn: (tree: AclTree) => T | Promise<T>,
  digest?: string,
): Promise<T> {
  return withFileLock(lockPath(configDir), async () => {
    const { tree, digest: current } = readAclConfig(configDir);
    checkDigest(digest, current);
    const result = await fn(tree);
    replaceFile(aclConfigPath(configDir), formatAclConfig(tree), { fsync: true, mode: 0o640 });
    return result;
  });
}

/** Validate an ACL path parameter, naming it in the error. */
export function requireAclPath(path: string): string {
  const err = aclPathError(path);
  if (err) throw new BadRequestError(`parameter verification failed - 'path': ${err}`);
  return path;
}
