/**
 * The server's signing material, created on first start as PBS does: an Ed25519 key pair
 * (`authkey.key` private PKCS#8 PEM, mode 0600; `authkey.pub` SPKI PEM) that signs tickets, and
 * `csrf.key`, the HMAC secret of CSRF prevention tokens. Any process that verifies tickets (the
 * server, an old server still finishing tasks) reads the same files.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withFileLock } from '../../sys/file-lock.js';
import { replaceFile } from '../../sys/atomic-file.js';

export interface AuthKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  csrfSecret: Buffer;
}

/** Generate fresh keys in memory (tests, and the first start). */
export function generateAuthKeys(): AuthKeys {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey, csrfSecret: randomBytes(32) };
}

/** Load the keys from `configDir`, creating any that are missing. */
export async function loadOrCreateAuthKeys(configDir: string): Promise<AuthKeys> {
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const keyPath = join(configDir, 'authkey.key');
  const pubPath = join(configDir, 'authkey.pub');
  const csrfPath = join(configDir, 'csrf.key');
  // the lock keeps two processes starting at once from writing different key pairs
  await withFileLock(join(configDir, '.authkey.lck'), () => {
    if (!existsSync(keyPath)) {
      const keys = generateAuthKeys();
      replaceFile(keyPath, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
        fsync: true,
        mode: 0o600,
      });
      replaceFile(pubPath, keys.publicKey.export({ type: 'spki', format: 'pem' }) as string, {
        fsync: true,
        mode: 0o644,
      });
    }
    if (!existsSync(csrfPath)) {
      replaceFile(csrfPath, randomBytes(32).toString('base64') + '\n', { fsync: true, mode: 0o600 });
    }
  });
  const privateKey = createPrivateKey(readFileSync(keyPath));
  return {
    privateKey,
    publicKey: existsSync(pubPath) ? createPublicKey(readFileSync(pubPath)) : createPublicKey(privateKey),
    csrfSecret: Buffer.from(readFileSync(csrfPath, 'utf8').trim(), 'utf8'),
  };
}
