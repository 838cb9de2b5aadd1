/**
 * The JSON secret files PBS keeps beside its config (`shadow.json` for passwords,
 * `token.shadow` for API token secrets): one object mapping an id to a hash, readable by root
 * only, replaced atomically. What the hashes are is up to the caller.
 */
import { readFileSync } from 'node:fs';
import { BadConfigError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';

/** The id → hash map in `path`; a missing file is empty, a malformed one a BadConfigError. */
export function readShadowFile(path: string): Record<string, string> {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    const data: unknown = JSON.parse(raw);
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new Error('not an object');
    return data as Record<string, string>;
  } catch (err) {
    throw new BadConfigError(`${path}: ${(err as Error).message}`);
  }
}

/** Replace `path` with `shadow` (mode 0600, fsynced), under the caller's lock. */
export function writeShadowFile(path: string, shadow: Record<string, string>): void {
  replaceFile(path, JSON.stringify(shadow, null, 2) + '\n', { fsync: true, mode: 0o600 });
}
