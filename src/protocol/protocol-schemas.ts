/**
 * PBS's parameter schemas of the backup and reader protocols (`src/api2/backup/mod.rs`,
 * `upload_chunk.rs`, `src/api2/reader/mod.rs`), with their limits: what a PBS client may send,
 * and so what Stowage accepts.
 */
import { Type } from 'typebox';
import {
  BackupIdSchema,
  BackupTimeSchema,
  BackupTypeSchema,
  NsSchema,
  StoreSchema,
} from '../api2/admin/datastore/common.js';
import { SAFE_ID_REGEX_STR } from '../api-types/names.js';

/** PBS caps an uploaded chunk at 16 MiB of plaintext (reference §7.1). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
/** `size_of::<DataBlobHeader>()` and `size_of::<EncryptedDataBlobHeader>()`. */
const BLOB_HEADER = 12;
const ENCRYPTED_BLOB_HEADER = 44;
/** PBS's largest encoded chunk or blob upload: 16 MiB of payload plus the encrypted header. */
export const MAX_ENCODED_UPLOAD = MAX_CHUNK_SIZE + ENCRYPTED_BLOB_HEADER;

/** PBS `BACKUP_ARCHIVE_NAME_SCHEMA`: a safe-id; the extension is checked by the handler. */
const ArchiveName = Type.String({ pattern: `^${SAFE_ID_REGEX_STR}$`, description: 'Backup archive name.' });
/** PBS `CHUNK_DIGEST_SCHEMA`: lower-case hex SHA-256. */
const ChunkDigest = Type.String({ pattern: '^[a-f0-9]{64}$', description: 'Chunk digest (SHA256).' });
const Wid = Type.Integer({ minimum: 1, maximum: 256, description: 'Writer ID.' });
const Csum = Type.String({ description: 'Digest list checksum.' });
const Flag = Type.Optional(Type.Boolean());

/** The snapshot a session is opened on, and PBS's `debug` flag. */
const SessionSnapshot = {
  store: StoreSchema,
  ns: Type.Optional(NsSchema),
  'backup-type': BackupTypeSchema,
  'backup-id': BackupIdSchema,
  'backup-time': BackupTimeSchema,
  debug: Flag,
};

/** `GET /api2/json/backup` (upgrade to `proxmox-backup-protocol-v1`). */
export const BackupUpgradeParams = Type.Object({ ...SessionSnapshot, benchmark: Flag, 'no-cache': Flag });

/** `GET /api2/json/reader` (upgrade to `proxmox-backup-reader-protocol-v1`). */
export const ReaderUpgradeParams = Type.Object(SessionSnapshot);

export const NoParams = Type.Object({});

export const UploadBlobParams = Type.Object({
  'file-name': ArchiveName,
  'encoded-size': Type.Integer({ minimum: BLOB_HEADER, maximum: MAX_ENCODED_UPLOAD }),
});

export const UploadChunkParams = Type.Object({
  wid: Wid,
  digest: ChunkDigest,
  size: Type.Integer({ minimum: 1, maximum: MAX_CHUNK_SIZE }),
  'encoded-size': Type.Integer({ minimum: BLOB_HEADER + 1, maximum: MAX_ENCODED_UPLOAD }),
});

export const CreateDynamicIndexParams = Type.Object({ 'archive-name': ArchiveName });

/** `size` is optional (PBS bug 3847): an image read from a pipe has no size up front. */
export const CreateFixedIndexParams = Type.Object({
  'archive-name': ArchiveName,
  size: Type.Optional(Type.Integer({ minimum: 1, description: 'File size.' })),
  'reuse-csum': Type.Optional(Type.String()),
});

export const AppendParams = Type.Object({
  wid: Wid,
  'digest-list': Type.Array(ChunkDigest),
  'offset-list': Type.Array(Type.Integer({ minimum: 0 })),
});

export const CloseDynamicParams = Type.Object({
  wid: Wid,
  'chunk-count': Type.Integer({ minimum: 1 }),
  size: Type.Integer({ minimum: 1 }),
  csum: Csum,
});

/** Count and size may be 0 here (an incremental backup that changed nothing). */
export const CloseFixedParams = Type.Object({
  wid: Wid,
  'chunk-count': Type.Integer({ minimum: 0 }),
  size: Type.Integer({ minimum: 0 }),
  csum: Csum,
});

export const ArchiveNameParams = Type.Object({ 'archive-name': ArchiveName });
export const FileNameParams = Type.Object({ 'file-name': ArchiveName });
export const ChunkDigestParams = Type.Object({ digest: ChunkDigest });
