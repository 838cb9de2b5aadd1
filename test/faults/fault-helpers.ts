/** What the fault tests share: waiting for a condition, and checking a whole datastore. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkChunkBlob } from '../../src/datastore/chunk-backend.js';
import type { StowagePaths } from '../../src/config/paths.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';

/** Poll `cond` every `everyMs` until it holds; fail naming `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  cond: () => boolean,
  timeoutMs = 30_000,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** What the operator sees of a store's registry: `stowage datastore active-operations` in JSON. */
export async function activeOperations(
  cliArgs: string[],
  store: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ read: number; write: number; operations: unknown[] }> {
  const r = await runCli(
    STOWAGE_BIN,
    [...cliArgs, '--output-format', 'json', 'datastore', 'active-operations', store],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  const ops = JSON.parse(r.stdout) as { read: number; write: number; operations: unknown[] };
  return { read: ops.read, write: ops.write, operations: ops.operations };
}

/** Every file below `dir` (relative paths) whose name matches `re`. */
export function filesMatching(dir: string, re: RegExp): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // removed while we looked
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), r);
      else if (re.test(e.name)) out.push(r);
    }
  };
  walk(dir, '');
  return out;
}

/**
 * Every chunk file of a datastore is whole (its content hashes to its name) and nothing else
 * lies in `.chunks` (no temp file, no truncated leftover). Returns the number of chunks.
 */
export function assertChunkStoreIntact(storePath: string): number {
  let checked = 0;
  const chunks = join(storePath, '.chunks');
  for (const sub of readdirSync(chunks)) {
    for (const name of readdirSync(join(chunks, sub))) {
      assert.match(name, /^[0-9a-f]{64}$/, `stray file .chunks/${sub}/${name}`);
      checkChunkBlob(Buffer.from(name, 'hex'), readFileSync(join(chunks, sub, name)));
      checked++;
    }
  }
  return checked;
}

/**
 * Verify every snapshot of datastore `store` (read mode: checks every chunk each index needs,
 * changes nothing) through admission, as a second process on the host would. Returns
 * `snapshot -> errors` for the snapshots that failed, and how many were verified.
 */
export async function verifyWholeDatastore(
  paths: StowagePaths,
  store = 'local',
): Promise<{ verified: number; failed: Record<string, string[]> }> {
  const access = openDatastoreAccess(paths);
  try {
    const handle = await access.lookupDatastore(store, 'read', { kind: 'verify', detail: 'fault test' });
    try {
      const ds = handle.datastore;
      const failed: Record<string, string[]> = {};
      let verified = 0;
      for (const ns of ds.listNamespaces()) {
        for (const group of ds.listGroups(ns)) {
          for (const snap of ds.listSnapshots(group)) {
            const res = await ds.verifySnapshot(snap.dir, { mode: 'read' });
            verified++;
            if (!res.ok) failed[snap.dir.toString()] = res.errors;
          }
        }
      }
      return { verified, failed };
    } finally {
      await handle.release();
    }
  } finally {
    access.close();
  }
}

/** The instance dirs of an e2e fixture server rooted at `root`. */
export function e2ePaths(root: string): StowagePaths {
  return { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
}

/** A new directory `dir` holding `files` files (f0, f1, ...) of `bytes` random bytes each. */
export function randomTree(dir: string, files: number, bytes: number): string {
  mkdirSync(dir);
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `f${i}`), randomBytes(bytes));
  return dir;
}

/** `stowage-client` arguments backing up tree `dir` as `data.tar` to host/`id` at `time`. */
export function backupArgs(dir: string, id: string, time: number): string[] {
  return ['backup', `data.tar:${dir}`, '--backup-id', id, '--backup-time', String(time)];
}
