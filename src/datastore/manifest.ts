/**
 * The snapshot manifest `index.json.blob` (reference §7.5, PBS `pbs-datastore/src/manifest.rs`):
 * a compressed, never encrypted DataBlob holding pretty-printed JSON with PBS's kebab-case keys.
 * The codec half (`encodeManifest`, `decodeManifest`, `canonicalJson`) is pure; the IO half
 * (`loadManifest`, `storeManifest`, `updateManifest`) is a thin layer around it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CorruptDataError, ERR_MANIFEST_SIGNED_PART, NotFoundError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import { BACKUP_ID_REGEX, BACKUP_TYPE_REGEX, type BackupType } from '../api-types/names.js';
import { decodeBlob, encodeBlob } from './data-blob.js';
import type { HeldLock } from './lock-service.js';

export const MANIFEST_BLOB_NAME = 'index.json.blob';
export const CLIENT_LOG_BLOB_NAME = 'client.log.blob';
/** PBS waits 5 s for the manifest lock (`backup_info.rs`, reference §7.1). */
export const MANIFEST_LOCK_TIMEOUT_MS = 5_000;

export type CryptMode = 'none' | 'encrypt' | 'sign-only';
export const CRYPT_MODES: readonly CryptMode[] = ['none', 'encrypt', 'sign-only'];

export interface ManifestFile {
  filename: string;
  'crypt-mode': CryptMode;
  /** Index files: the archive data size; blobs: the encoded blob size. */
  size: number;
  /** Index files: the index checksum; blobs: sha256 of the encoded blob; lowercase hex. */
  csum: string;
}

export interface ChunkUploadStats {
  count: number;
  size: number;
  compressed_size: number;
  duplicates: number;
}

export interface SnapshotVerifyState {
  upid: string;
  state: 'ok' | 'failed';
}

/**
 * The part of the manifest the signature does not cover, so the server may change it. PBS mixes
 * snake_case (`chunk_upload_stats`, `verify_state`) and kebab-case (`key-fingerprint`) here; we
 * keep both spellings and any key we do not know.
 */
export interface ManifestUnprotected {
  chunk_upload_stats?: ChunkUploadStats;
  verify_state?: SnapshotVerifyState;
  notes?: string;
  'key-fingerprint'?: string;
  [key: string]: unknown;
}

export interface BackupManifest {
  'backup-type': BackupType;
  'backup-id': string;
  'backup-time': number;
  files: ManifestFile[];
  unprotected: ManifestUnprotected;
  /** Hex HMAC-SHA256 over `signedManifestJson`, or null for unsigned backups. */
  signature: string | null;
}

/**
 * The crypt mode a snapshot listing gives the manifest itself (PBS `get_all_snapshot_files`):
 * `sign-only` when the client signed it, `none` otherwise; it is never encrypted.
 */
export function manifestCryptMode(m: BackupManifest): CryptMode {
  return m.signature ? 'sign-only' : 'none';
}

/** A fresh manifest with no files, as the backup session starts it. */
export function newManifest(type: BackupType, id: string, time: number): BackupManifest {
  return {
    'backup-type': type,
    'backup-id': id,
    'backup-time': time,
    files: [],
    unprotected: {},
    signature: null,
  };
}

// serde_json's object map is a BTreeMap, so key order is byte order of the UTF-8 keys; UTF-16
// order (JS's default sort) differs for characters beyond the BMP.
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value !== null && typeof value === 'object') {
    // no prototype: a `__proto__` key (JSON.parse makes it an own property of a client's
    // manifest) stays a key, instead of setting the prototype and vanishing from the file
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(value).sort(compareKeys)) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeysDeep(v);
    }
    return out;
  }
  return value;
}

/**
 * Canonical JSON as proxmox-serde's `to_canonical_json` writes it: object keys sorted, no
 * whitespace. Used for manifest signatures, so it must match byte for byte. Like the original it
 * refuses `null` (and non-finite numbers, which JSON cannot hold).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) {
    throw new CorruptDataError('canonical JSON: got unexpected null value');
  }
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new CorruptDataError('canonical JSON: number is not finite');
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort(compareKeys);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  throw new CorruptDataError(`canonical JSON: cannot encode a ${typeof value}`);
}

/** The bytes a manifest signature covers: everything but `unprotected` and `signature`. */
export function signedManifestJson(m: BackupManifest): string {
  const { unprotected: _u, signature: _s, ...signed } = m;
  return canonicalJson(signed);
}

/**
 * Pretty-printed JSON as PBS writes it (`serde_json::to_string_pretty` of a `Value`: two-space
 * indent, keys sorted because serde_json's map is ordered).
 */
export function manifestToJson(m: BackupManifest): string {
  return JSON.stringify(sortKeysDeep(m), null, 2);
}

const HEX_CSUM = /^[0-9a-f]{64}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Check and normalise parsed manifest JSON. Defaults follow PBS's serde attributes: a missing
 * `crypt-mode` is `none` and a missing `unprotected` is `{}` (both for backups before 0.8).
 * File names must be plain names, since they are joined to the snapshot path.
 */
export function parseManifestJson(json: unknown, what = 'manifest'): BackupManifest {
  const bad = (why: string) => new CorruptDataError(`${what}: ${why}`);
  if (!isObject(json)) throw bad('not a JSON object');
  const type = json['backup-type'];
  const id = json['backup-id'];
  const time = json['backup-time'];
  if (typeof type !== 'string' || !BACKUP_TYPE_REGEX.test(type)) throw bad('invalid backup-type');
  if (typeof id !== 'string' || !BACKUP_ID_REGEX.test(id)) throw bad('invalid backup-id');
  if (typeof time !== 'number' || !Number.isSafeInteger(time)) throw bad('invalid backup-time');
  if (!Array.isArray(json.files)) throw bad('files is not an array');
  const files: ManifestFile[] = json.files.map((f: unknown, i: number) => {
    if (!isObject(f)) throw bad(`files[${i}] is not an object`);
    const { filename, size, csum } = f;
    const mode = f['crypt-mode'] ?? 'none';
    if (
      typeof filename !== 'string' ||
      filename === '' ||
      filename.includes('/') ||
      filename.startsWith('.')
    ) {
      throw bad(`files[${i}] has an invalid filename`);
    }
    if (!CRYPT_MODES.includes(mode as CryptMode)) throw bad(`files[${i}] has an invalid crypt-mode`);
    if (!isSize(size)) throw bad(`files[${i}] has an invalid size`);
    if (typeof csum !== 'string' || !HEX_CSUM.test(csum)) throw bad(`files[${i}] has an invalid csum`);
    return { filename, 'crypt-mode': mode as CryptMode, size, csum };
  });
  const unprotected = json.unprotected ?? {};
  if (!isObject(unprotected)) throw bad('unprotected is not an object');
  const signature = json.signature ?? null;
  if (signature !== null && typeof signature !== 'string') throw bad('signature is not a string');
  return {
    'backup-type': type as BackupType,
    'backup-id': id,
    'backup-time': time,
    files,
    unprotected: unprotected as ManifestUnprotected,
    signature,
  };
}

/** Manifest to the bytes of `index.json.blob`. */
export function encodeManifest(m: BackupManifest): Buffer {
  return encodeBlob(Buffer.from(manifestToJson(m), 'utf8'), { compress: true });
}

/** The bytes of `index.json.blob` to a manifest; CorruptDataError on any damage. */
export function decodeManifest(bytes: Uint8Array, what = 'manifest'): BackupManifest {
  const text = decodeBlob(bytes, what).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CorruptDataError(`${what}: unable to parse JSON (${(err as Error).message})`);
  }
  return parseManifestJson(json, what);
}

/** Read `<snapshotPath>/index.json.blob`; NotFoundError when the snapshot has no manifest. */
export function loadManifest(snapshotPath: string): BackupManifest {
  const path = join(snapshotPath, MANIFEST_BLOB_NAME);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`manifest ${path} does not exist (unfinished or missing snapshot)`);
    }
    throw err;
  }
  return decodeManifest(bytes, path);
}

/** Write the manifest atomically (temp file + rename), fsyncing file and directory when asked. */
export function storeManifest(snapshotPath: string, m: BackupManifest, opts: { fsync?: boolean } = {}): void {
  replaceFile(join(snapshotPath, MANIFEST_BLOB_NAME), encodeManifest(m), { fsync: opts.fsync, mode: 0o644 });
}

export interface UpdateManifestOptions {
  /**
   * Take the snapshot's manifest lock, waiting at most `timeoutMs` (LOCK_TIMEOUT after): the
   * datastore's `locks.lockManifest(dir, { timeoutMs })`.
   */
  lock: (timeoutMs: number) => Promise<HeldLock>;
  /** Default MANIFEST_LOCK_TIMEOUT_MS, as PBS. */
  timeoutMs?: number;
  fsync?: boolean;
  /** Store the new blob elsewhere first (an S3 datastore's bucket, `manifestUpload`). */
  upload?: (blob: Buffer) => Promise<void>;
}

/**
 * Read-modify-write of the manifest under its lock, as PBS's `update_manifest`: take the lock,
 * reload (another process may have changed `unprotected` since we last looked), mutate, replace
 * atomically. The mutation must not touch the signed part; that would break the signature.
 */
export async function updateManifest(
  snapshotPath: string,
  mutate: (m: BackupManifest) => void | Promise<void>,
  opts: UpdateManifestOptions,
): Promise<BackupManifest> {
  const lock = await opts.lock(opts.timeoutMs ?? MANIFEST_LOCK_TIMEOUT_MS);
  try {
    const m = loadManifest(snapshotPath);
    const before = signedManifestJson(m);
    await mutate(m);
    if (signedManifestJson(m) !== before) {
      throw ERR_MANIFEST_SIGNED_PART(snapshotPath);
    }
    const blob = encodeManifest(m);
    await opts.upload?.(blob);
    replaceFile(join(snapshotPath, MANIFEST_BLOB_NAME), blob, { fsync: opts.fsync, mode: 0o644 });
    return m;
  } finally {
    lock.release();
  }
}
