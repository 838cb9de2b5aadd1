/**
 * Archive names of a snapshot's files (PBS `BackupArchiveName`, `ArchiveType` in
 * `pbs-api-types/src/datastore.rs`): `<name>.fidx`, `<name>.didx` or `<name>.blob` on the
 * server. Clients may leave the server extension off (`root.pxar`, `drive-scsi0.img`,
 * `qemu-server.conf`), PBS adds it from the archive's own extension. Every name is a safe-id
 * first, so it is one plain file name: no slash, no leading dot, never `.` or `..`.
 */
import { BadRequestError } from '../errors.js';
import { SAFE_ID_REGEX, SAFE_ID_REGEX_STR } from './names.js';

export type ArchiveType = 'fixed' | 'dynamic' | 'blob';

/** A snapshot's file catalog, written with its pxar archives (PBS `CATALOG_NAME`). */
export const CATALOG_ARCHIVE_NAME = 'catalog.pcat1.didx';

export interface ArchiveName {
  /** With the server extension, as the file is named in the snapshot directory. */
  name: string;
  type: ArchiveType;
}

const SERVER_EXTENSIONS: Readonly<Record<string, ArchiveType>> = {
  fidx: 'fixed',
  didx: 'dynamic',
  blob: 'blob',
};

/** PBS `parse_archive_type`: the server extension a client extension implies. */
const CLIENT_EXTENSIONS: Readonly<Record<string, ArchiveType>> = {
  pxar: 'dynamic',
  mpxar: 'dynamic',
  ppxar: 'dynamic',
  pcat1: 'dynamic',
  img: 'fixed',
  conf: 'blob',
  json: 'blob',
  key: 'blob',
  log: 'blob',
};

const EXTENSION_OF: Readonly<Record<ArchiveType, string>> = { fixed: 'fidx', dynamic: 'didx', blob: 'blob' };

function extension(name: string): string | undefined {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1) : undefined;
}

function requireSafeId(value: unknown, param: string): string {
  if (typeof value !== 'string' || !SAFE_ID_REGEX.test(value)) {
    throw new BadRequestError(`invalid ${param} '${String(value)}': must match ${SAFE_ID_REGEX_STR}`, {
      param,
    });
  }
  return value;
}

/**
 * A file name as stored in a snapshot directory: a safe-id ending in `.fidx`, `.didx` or `.blob`
 * (what the snapshot file listings show, PBS `BACKUP_FILE_REGEX`). Temp files of a running
 * backup (`.tmp_didx`, ...) are not archive names.
 */
export function parseServerArchiveName(value: unknown, param = 'file-name'): ArchiveName {
  const name = requireSafeId(value, param);
  const type = SERVER_EXTENSIONS[extension(name) ?? ''];
  if (!type) {
    throw new BadRequestError(`invalid ${param} '${name}': not an archive name (*.fidx, *.didx, *.blob)`, {
      param,
    });
  }
  return { name, type };
}

/**
 * PBS `BackupArchiveName::try_from`: a server archive name as it is, or a client archive name
 * with the server extension its own extension implies (`root.pxar` → `root.pxar.didx`).
 */
export function parseArchiveName(value: unknown, param = 'file-name'): ArchiveName {
  const name = requireSafeId(value, param);
  const ext = extension(name) ?? '';
  const server = SERVER_EXTENSIONS[ext];
  if (server) return { name, type: server };
  const type = CLIENT_EXTENSIONS[ext];
  if (!type) {
    throw new BadRequestError(`invalid ${param} '${name}': failed to parse archive type for '${name}'`, {
      param,
    });
  }
  return { name: `${name}.${EXTENSION_OF[type]}`, type };
}
