/**
 * Passwords of local users in `<configDir>/shadow.json` (`{ "user@pbs": "<hash>" }`, PBS's file and
 * shape). Hashes are scrypt from node:crypto, `$scrypt$N=16384,r=8,p=1$<salt b64>$<hash b64>`;
 * PBS stores crypt(3) SHA-512 strings instead, so an imported PBS shadow.json needs new passwords.
 *
 * Realms: `pbs` users, and `root@pam`, which Stowage treats as a local admin whose password also
 * lives here (there is no PAM lookup; the bootstrap sets it on first start).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { join } from 'node:path';
import { readShadowFile, writeShadowFile } from '../../config/shadow-file.js';
import { BadRequestError } from '../../errors.js';
import { withFileLock } from '../../sys/file-lock.js';

const N = 16384;
const R = 8;
const P = 1;
const KEYLEN = 32;
/** PBS's password schema bounds (`PBS_PASSWORD_SCHEMA`: 5..64). */
export const MIN_PASSWORD_LENGTH = 5;
export const MAX_PASSWORD_LENGTH = 64;

function scrypt(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, KEYLEN, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Hash a password for shadow.json. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, { N, r: R, p: P });
  return `$scrypt$N=${N},r=${R},p=${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Check a password against a stored hash; a malformed hash never matches. */
export async function verifyPasswordHash(password: string, stored: string): Promise<boolean> {
  const m = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const expected = Buffer.from(m[5]!, 'base64');
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const key = await scrypt(password, Buffer.from(m[4]!, 'base64'), {
    N: n,
    r,
    p,
    maxmem: 256 * n * r + 1024 * 1024,
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/**
 * Whether `userid` can have a password here: realm `pbs` users and root@pam (see above); other
 * `@pam` users and other realms authenticate elsewhere in PBS, and not at all in Stowage.
 */
export function hasLocalPasswordRealm(userid: string): boolean {
  return userid === 'root@pam' || userid.slice(userid.lastIndexOf('@') + 1) === 'pbs';
}

export const shadowPath = (configDir: string) => join(configDir, 'shadow.json');
const lockPath = (configDir: string) => join(configDir, '.shadow.lck');

function readShadow(configDir: string): Record<string, string> {
  return readShadowFile(shadowPath(configDir));
}

function writeShadow(configDir: string, shadow: Record<string, string>): void {
  writeShadowFile(shadowPath(configDir), shadow);
}

export function checkPasswordLength(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH) {
    throw new BadRequestError(
      `parameter verification failed - 'password': length must be between ${MIN_PASSWORD_LENGTH} and ${MAX_PASSWORD_LENGTH}`,
    );
  }
}

/** Set (create or replace) the password of `userid`. */
export async function setPassword(configDir: string, userid: string, password: string): Promise<void> {
  checkPasswordLength(password);
  const hash = await hashPassword(password);
  await withFileLock(lockPath(configDir), () => {
    const shadow = readShadow(configDir);
    shadow[userid] = hash;
    writeShadow(configDir, shadow);
  });
}

/** Remove the password of `userid`, if any. */
export async function deletePassword(configDir: string, userid: string): Promise<void> {
  await withFileLock(lockPath(configDir), () => {
    const shadow = readShadow(configDir);
    if (!Object.hasOwn(shadow, userid)) return;
    delete shadow[userid];
    writeShadow(configDir, shadow);
  });
}

export function hasPassword(configDir: string, userid: string): boolean {
  return typeof readShadow(configDir)[userid] === 'string';
}

/** Whether `password` is the stored password of `userid` (false when it has none). */
export async function verifyPassword(configDir: string, userid: string, password: string): Promise<boolean> {
  const stored = readShadow(configDir)[userid];
  if (typeof stored !== 'string') {
    // spend comparable time so that unknown users cannot be told apart by timing
    await hashPassword(password);
    return false;
  }
  return verifyPasswordHash(password, stored);
}
