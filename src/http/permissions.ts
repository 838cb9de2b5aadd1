/**
 * Privilege evaluation, PBS's `CachedUserInfo`: the roles an auth id holds on an ACL path (see
 * `AclTree.roles` for inheritance), turned into privileges. `root@pam` has every privilege; an API
 * token gets its own ACL privileges intersected with its owner's (privilege separation,
 * reference §8.1); a disabled or expired user or token has none.
 */
import { statSync } from 'node:fs';
import { ForbiddenError } from '../errors.js';
import {
  aclConfigPath,
  readAclConfig,
  ROLES,
  PRIVILEGES,
  type AclTree,
  type Privilege,
} from '../config/acl-config.js';
import {
  authIdUser,
  isActiveAuthId,
  isTokenId,
  readUserConfig,
  SUPERUSER,
  userConfigPath,
  type UserConfig,
} from '../config/user-config.js';

export { PRIVILEGES, ROLES } from '../config/acl-config.js';

export interface PrivCheckOptions {
  /** Any one of the listed privileges suffices (proxmox-router's `partial`). */
  partial?: boolean;
}

/** A snapshot of user.cfg and acl.cfg for permission checks. */
export class UserInfo {
  constructor(
    readonly users: UserConfig,
    readonly acl: AclTree,
  ) {}

  isSuperuser(authId: string): boolean {
    return authId === SUPERUSER;
  }

  isActive(authId: string): boolean {
    return isActiveAuthId(this.users, authId);
  }

  /** The privileges `authId` holds on `path`. */
  userPrivs(authId: string, path: string): Set<string> {
    return new Set(this.privsDetails(authId, path).keys());
  }

  /**
   * PBS `lookup_privs_details`: each privilege `authId` holds on `path` (in PBS's privilege order),
   * mapped to whether it propagates to the paths below (true when any role granting it was
   * granted with propagate). A token keeps only what its owner holds, and a privilege propagates
   * only if it propagates for both.
   */
  privsDetails(authId: string, path: string): Map<Privilege, boolean> {
    if (this.isSuperuser(authId)) return new Map(PRIVILEGES.map((p) => [p, true]));
    if (!this.isActive(authId)) return new Map();
    const found = new Map<Privilege, boolean>();
    for (const [role, propagate] of this.acl.roles(authId, path)) {
      for (const p of ROLES[role] ?? []) found.set(p, (found.get(p) ?? false) || propagate);
    }
    if (isTokenId(authId)) {
      const owner = this.privsDetails(authIdUser(authId), path);
      for (const [p, propagate] of found) {
        if (owner.has(p)) found.set(p, propagate && owner.get(p)!);
        else found.delete(p);
      }
    }
    return new Map(PRIVILEGES.filter((p) => found.has(p)).map((p) => [p, found.get(p)!]));
  }

  /** Whether the check would pass (no throw). */
  hasPrivs(authId: string, path: string, privs: readonly string[], opts: PrivCheckOptions = {}): boolean {
    const held = this.userPrivs(authId, path);
    return opts.partial ? privs.some((p) => held.has(p)) : privs.every((p) => held.has(p));
  }

  /**
   * Throw ForbiddenError naming what is missing: `permission check failed - missing
   * Datastore.Audit on /datastore/x` (`|` between alternatives when `partial`).
   */
  checkPrivs(authId: string, path: string, privs: readonly string[], opts: PrivCheckOptions = {}): void {
    if (this.hasPrivs(authId, path, privs, opts)) return;
    const held = this.userPrivs(authId, path);
    const missing = opts.partial ? privs : privs.filter((p) => !held.has(p));
    throw new ForbiddenError(
      `permission check failed - missing ${missing.join(opts.partial ? '|' : ', ')} on ${normalizePath(path)}`,
    );
  }

  /** Whether `authId` holds any of `privs` on `path` or below (for listings filtered per object). */
  anyPrivsBelow(authId: string, path: string, privs: readonly string[]): boolean {
    if (this.isSuperuser(authId)) return true;
    if (!this.isActive(authId)) return false;
    const own = this.acl.anyPrivsBelow(authId, path, privs);
    if (!own || !isTokenId(authId)) return own;
    return this.acl.anyPrivsBelow(authIdUser(authId), path, privs);
  }
}

function normalizePath(path: string): string {
  return '/' + path.split('/').filter(Boolean).join('/');
}

interface FileStamp {
  mtimeMs: number;
  size: number;
  ino: number;
}

function stamp(path: string): FileStamp | undefined {
  try {
    const st = statSync(path);
    return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const sameStamp = (a: FileStamp | undefined, b: FileStamp | undefined) =>
  a === b ||
  (a !== undefined && b !== undefined && a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino);

/**
 * Per-request UserInfo without re-parsing unchanged files: re-reads user.cfg/acl.cfg when their
 * mtime, size or inode changed (every writer replaces the file by rename, so the inode changes),
 * which also picks up changes made by the CLI or another process.
 */
export class UserInfoCache {
  private cached?: { info: UserInfo; users?: FileStamp; acl?: FileStamp };

  constructor(private readonly configDir: string) {}

  get(): UserInfo {
    const users = stamp(userConfigPath(this.configDir));
    const acl = stamp(aclConfigPath(this.configDir));
    const c = this.cached;
    if (c && sameStamp(c.users, users) && sameStamp(c.acl, acl)) return c.info;
    const info = new UserInfo(readUserConfig(this.configDir).config, readAclConfig(this.configDir).tree);
    this.cached = { info, users, acl };
    return info;
  }
}

/**
 * The ACL path of a datastore or of a namespace in it (`/datastore/STORE/a/b`), as PBS builds it
 * for every datastore privilege check (API routes and the backup/reader protocols alike).
 */
export function datastoreAclPath(store: string, ns?: { readonly components: readonly string[] }): string {
  return ['', 'datastore', store, ...(ns?.components ?? [])].join('/');
}
