/**
 * Single files of a snapshot (PBS `src/api2/admin/datastore.rs`, reference §2):
 *
 * - `GET …/download`: a file as stored (`file-name` is a server archive name, `*.fidx`,
 *   `*.didx` or `*.blob`);
 * - `GET …/download-decoded`: a file decoded, a blob's payload or the archive an index describes,
 *   streamed from its chunks; files the manifest marks encrypted are refused;
 * - `POST …/upload-backup-log`: the request body (a blob) becomes the snapshot's
 *   `client.log.blob`, once.
 *
 * Downloads are `read` operations, Datastore.Read or Datastore.Backup on an owned group; the
 * upload is `write`, Datastore.Backup on an owned group only (PBS requires ownership even of
 * Datastore.Modify holders here). The downloads keep their operation admitted until the response
 * is finished or aborted, so draining for maintenance waits for them and an offline datastore's
 * files are closed when it has drained (design §3.7).
 */
import type { Readable } from 'node:stream';
import { Type } from 'typebox';
import { parseArchiveName, parseServerArchiveName } from '../../../api-types/archive-name.js';
import { type BackupDir, CLIENT_LOG_BLOB_NAME, type ReadonlyDatastore } from '../../../datastore/index.js';
import { BadRequestError } from '../../../errors.js';
import { defineRoute, type AnyRoute, type RouteContext } from '../../../http/route.js';
import { ownerChecked, type GroupAccess } from './access.js';
import { SnapshotQuery, snapshotOf, StoreParams } from './common.js';

const READ = ['Datastore.Read'];
const BACKUP = ['Datastore.Backup'];

const NS_PATH = '/datastore/{store}/{ns}';

const FileNameSchema = Type.String({ maxLength: 256, description: 'Backup archive name.' });
const DownloadQuery = Type.Object({ ...SnapshotQuery, 'file-name': FileNameSchema });

/** A response body streamed to the client; `size` when known (Content-Length). */
export interface StreamedContent {
  size?: number;
  stream: Readable;
}

/**
 * Send a body read from a snapshot through an admitted `read` operation: after the privilege
 * check of the route (403), admission (503), owner check, then `open` on the admitted
 * datastore (`detail` names what is read, for the active-operations list). The operation is
 * released when the response ends, fails or is aborted by the client — not when the handler
 * returns.
 */
export async function sendFromSnapshot(
  ctx: RouteContext<{ store: string }, Parameters<typeof snapshotOf>[0], unknown, GroupAccess>,
  detail: string,
  open: (ds: ReadonlyDatastore, dir: BackupDir) => StreamedContent | Promise<StreamedContent>,
): Promise<unknown> {
  const { params, authId, access, server, reply } = ctx;
  const dir = snapshotOf(ctx.query);
  const handle = await server.datastores.lookupDatastore(params.store, 'read', {
    kind: 'download',
    detail: `${dir}/${detail}`,
    authId,
  });
  let content: StreamedContent;
  try {
    access.check(handle.datastore, dir.group);
    content = await open(handle.datastore, dir);
  } catch (err) {
    await handle.release();
    throw err;
  }
  const { stream } = content;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    stream.destroy();
    void handle.release();
  };
  stream.once('close', release);
  stream.once('error', (err) => ctx.request.log.error({ err, file: detail }, 'download failed'));
  reply.raw.once('close', release);
  void reply.status(200).header('content-type', 'application/octet-stream');
  if (content.size !== undefined) void reply.header('content-length', String(content.size));
  void reply.send(stream);
  return reply;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/download',
    params: StoreParams,
    query: DownloadQuery,
    permission: ownerChecked({ path: NS_PATH, full: READ, owner: BACKUP }),
    description:
      'Download a file of a snapshot as stored (read operation), application/octet-stream. ' +
      '`file-name` is an archive name as the file listing shows it (*.fidx, *.didx, *.blob). ' +
      'Datastore.Read, or Datastore.Backup on a group the caller owns.',
    handler: (ctx) => {
      const file = parseServerArchiveName(ctx.query['file-name'], 'file-name');
      return sendFromSnapshot(ctx, file.name, (ds, dir) => ds.openSnapshotFile(dir, file));
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/download-decoded',
    params: StoreParams,
    query: DownloadQuery,
    permission: ownerChecked({ path: NS_PATH, full: READ, owner: BACKUP }),
    description:
      'Download a file of a snapshot decoded (read operation), application/octet-stream: a blob as ' +
      'its payload, a .didx/.fidx as the archive it describes, read from its chunks. The name may ' +
      'omit the server extension (root.pxar, drive-scsi0.img), as in PBS. Needs the manifest; ' +
      'encrypted files are refused. Datastore.Read, or Datastore.Backup on a group the caller owns.',
    handler: (ctx) => {
      const file = parseArchiveName(ctx.query['file-name'], 'file-name');
      return sendFromSnapshot(ctx, file.name, (ds, dir) => ds.openDecodedSnapshotFile(dir, file));
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/upload-backup-log',
    params: StoreParams,
    query: Type.Object(SnapshotQuery),
    permission: ownerChecked({ path: NS_PATH, full: [], owner: BACKUP }),
    protected: true,
    description:
      "Upload the client's backup log into a snapshot as client.log.blob (write operation). The " +
      'parameters are in the query; the body is the encoded blob (application/octet-stream), whose ' +
      'CRC is checked. A snapshot has at most one log. Only the owner of the group, with ' +
      'Datastore.Backup, may do this.',
    handler: ({ query, access, request }) => {
      const dir = snapshotOf(query);
      const body = request.body;
      if (!Buffer.isBuffer(body) || body.length === 0) {
        throw new BadRequestError('the request body must be the log blob (application/octet-stream)');
      }
      const file = parseServerArchiveName(CLIENT_LOG_BLOB_NAME);
      return access.withGroup(
        dir.group,
        'ingest',
        { kind: 'upload', detail: `${dir}/${file.name}` },
        async (ds) => {
          await ds.addSnapshotBlob(dir, file, body, { existsMessage: 'backup already contains a log.' });
          return null;
        },
      );
    },
  }),
];
