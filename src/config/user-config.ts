/**
 * `user.cfg`: users (`user: name@realm`) and API token definitions (`token: name@realm!token`) in
 * PBS's section-config format, plus the user/auth-id syntax PBS uses everywhere (`root@pam`,
 * `backup@pbs!client`). The codec is pure; the IO helpers read with a digest and write under
 * `<configDir>/.user.lck` as PBS does (`pbs-config/src/user.rs`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadConfigError, BadRequestError, ConfigModifiedError } from '../errors.js';
import { withFileLock } from '../sys/file-lock.js';
import { replaceFile } from '../sys/atomic-file.js';
import {
  formatSectionConfig,
  parseSectionConfig,
  sectionProp,
  setSectionProp,
  type Section,
} from './section-config.js';

// PBS: user name `[^\s:/[:cntrl:]]+`, realm and token name are "safe ids" (pbs-api-types userid.rs).
// We also refuse `!` in the name so that `name@realm!token` splits one way only.
const USER_NAME = String.raw`[^\s:/\x00-\x1f\x7f!]+`;
const SAFE_ID = String.raw`[A-Za-z0-9_][A-Za-z0-9._\-]*`;
export const USERID_PATTERN = `^${USER_NAME}@${SAFE_ID}$`;
export const TOKEN_NAME_PATTERN = `^${SAFE_ID}$`;
export const AUTHID_PATTERN = `^${USER_NAME}@${SAFE_ID}(?:!${SAFE_ID})?$`;
const USERID_RE = new RegExp(USERID_PATTERN);
const AUTHID_RE = new RegExp(AUTHID_PATTERN);

/** PBS's superuser: never stored in acl.cfg, has every privilege (never its tokens). */
export const SUPERUSER = 'root@pam';

export interface AuthId {
  /** `name@realm` */
  userid: string;
  realm: string;
  /** Token name when this is an API token id (`userid!name`). */
  tokenName?: string;
}

/** Parse `name@realm` or `name@realm!token`; undefined when malformed. */
export function parseAuthId(text: string): AuthId | undefined {
  if (text.length < 3 || text.length > 128 || !AUTHID_RE.test(text)) return undefined;
  const bang = text.indexOf('!');
  const userid = bang === -1 ? text : text.slice(0, bang);
  if (userid.length > 64) return undefined;
  return {
    userid,
    realm: userid.slice(userid.lastIndexOf('@') + 1),
    tokenName: bang === -1 ? undefined : text.slice(bang + 1),
  };
}

export function isValidUserid(text: string): boolean {
  return text.length >= 3 && text.length <= 64 && USERID_RE.test(text);
}

export function isTokenId(authId: string): boolean {
  return authId.includes('!');
}

/** The user owning an auth id (itself for a user). */
export function authIdUser(authId: string): string {
  const bang = authId.indexOf('!');
  return bang === -1 ? authId : authId.slice(0, bang);
}

/**
 * PBS `check_backup_owner`: the owner itself, or a user whose API token owns the group (a token
 * never owns what its user owns).
 */
export function isBackupOwner(owner: string, authId: string): boolean {
  if (owner === authId) return true;
  return isTokenId(owner) && !isTokenId(authId) && authIdUser(owner) === authId;
}

export interface UserEntry {
  userid: string;
  comment?: string;
  /** Default true (PBS). */
  enable?: boolean;
  /** Epoch seconds; 0 or absent means never. */
  expire?: number;
  firstname?: string;
  lastname?: string;
  email?: string;
}

export interface TokenEntry {
  tokenid: string;
  comment?: string;
  enable?: boolean;
  expire?: number;
}

export interface UserConfig {
  users: Map<string, UserEntry>;
  tokens: Map<string, TokenEntry>;
}

const USER_KEYS = ['comment', 'enable', 'expire', 'firstname', 'lastname', 'email'] as const;
const TOKEN_KEYS = ['comment', 'enable', 'expire'] as const;

function parseBool(v: string, where: string): boolean {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw new BadConfigError(`${where}: invalid boolean '${v}'`);
}

function parseExpire(v: string, where: string): number {
  if (!/^\d+$/.test(v)) throw new BadConfigError(`${where}: invalid expire '${v}'`);
  return Number(v);
}

/** Parse `user.cfg` text; unknown section types or keys are configuration errors. */
export function parseUserConfig(text: string, file = 'user.cfg'): UserConfig {
  const cfg: UserConfig = { users: new Map(), tokens: new Map() };
  for (const s of parseSectionConfig(text, file)) {
    const where = `${file}: ${s.type} '${s.id}'`;
    const allowed: readonly string[] = s.type === 'user' ? USER_KEYS : TOKEN_KEYS;
    for (const [k] of s.props) {
      if (!allowed.includes(k)) throw new BadConfigError(`${where}: unknown property '${k}'`);
    }
    const comment = sectionProp(s, 'comment');
    const enable = sectionProp(s, 'enable');
    const expire = sectionProp(s, 'expire');
    const common = {
      ...(comment !== undefined && { comment }),
      ...(enable !== undefined && { enable: parseBool(enable, where) }),
      ...(expire !== undefined && { expire: parseExpire(expire, where) }),
    };
    if (s.type === 'user') {
      if (!isValidUserid(s.id)) throw new BadConfigError(`${where}: invalid userid`);
      const user: UserEntry = { userid: s.id, ...common };
      for (const k of ['firstname', 'lastname', 'email'] as const) {
        const v = sectionProp(s, k);
        if (v !== undefined) user[k] = v;
      }
      cfg.users.set(s.id, user);
    } else if (s.type === 'token') {
      if (parseAuthId(s.id)?.tokenName === undefined) throw new BadConfigError(`${where}: invalid token id`);
      cfg.tokens.set(s.id, { tokenid: s.id, ...common });
    } else {
      throw new BadConfigError(`${where}: unknown section type '${s.type}'`);
    }
  }
  return cfg;
}

/** Serialize; users first, each followed by nothing else (PBS writes sections in map order too). */
export function formatUserConfig(cfg: UserConfig): string {
  const sections: Section[] = [];
  const put = (type: string, id: string, entry: Record<string, unknown>, keys: readonly string[]) => {
    const s: Section = { type, id, props: [] };
    for (const k of keys) {
      const v = entry[k];
      if (v === undefined) continue;
      setSectionProp(s, k, String(v));
    }
    sections.push(s);
  };
  for (const u of cfg.users.values()) put('user', u.userid, { ...u }, USER_KEYS);
  for (const t of cfg.tokens.values()) put('token', t.tokenid, { ...t }, TOKEN_KEYS);
  return formatSectionConfig(sections);
}

/** PBS `is_active`: enabled (default) and not past its expiry. */
export function isEntryActive(
  entry: { enable?: boolean; expire?: number },
  nowSec = Date.now() / 1000,
): boolean {
  if (entry.enable === false) return false;
  return !entry.expire || entry.expire > nowSec;
}

/** Whether `authId` may authenticate: the user, and for a token the token too, exist and are active. */
export function isActiveAuthId(cfg: UserConfig, authId: string): boolean {
  const user = cfg.users.get(authIdUser(authId));
  if (!user || !isEntryActive(user)) return false;
  if (!isTokenId(authId)) return true;
  const token = cfg.tokens.get(authId);
  return token !== undefined && isEntryActive(token);
}

export const userConfigPath = (configDir: string) => join(configDir, 'user.cfg');
const lockPath = (configDir: string) => join(configDir, '.user.lck');

/** Hex SHA-256 of the raw file, the digest PBS returns beside config reads (§6.1). */
export function configDigest(raw: string): string {
  return createHash('sha256').update(raw).digest('hex');
}

/** Read `user.cfg`; a missing file is an empty configuration. */
export function readUserConfig(configDir: string): { config: UserConfig; digest: string } {
  let raw = '';
  try {
    raw = readFileSync(userConfigPath(configDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { config: parseUserConfig(raw, userConfigPath(configDir)), digest: configDigest(raw) };
}

/** Fail with PBS's message when the client's digest is not the current one. */
export function checkDigest(expected: string | undefined, current: string): void {
  if (expected !== undefined && expected !== current) throw new ConfigModifiedError();
}

/**
 * Read-modify-write `user.cfg` under its lock. `fn` mutates the config in place; `digest` (from the
 * client) is checked against the file as read under the lock.
 */
export async function updateUserConfig<T>(
  configDir: string,
  fn: (config: UserConfig) => T | Promise<T>,
  digest?: string,
): Promise<T> {
  return withFileLock(lockPath(configDir), async () => {
    const { config, digest: current } = readUserConfig(configDir);
    checkDigest(digest, current);
    const result = await fn(config);
    replaceFile(userConfigPath(configDir), formatUserConfig(config), { fsync: true, mode: 0o640 });
    return result;
  });
}

/** Validate a userid parameter, naming it in the error. */
export function requireUserid(text: string, param = 'userid'): string {
  if (!isValidUserid(text))
    throw new BadRequestError(`parameter verification failed - '${param}': invalid userid`);
  return text;
}
