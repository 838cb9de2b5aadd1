/**
 * The backup and reader protocols as clients other than ours use them (PBS's own client sends
 * protocol parameters in the query, third-party clients as a JSON or form body), and the errors
 * as PBS answers them: the bare message as the body, status 400 except where PBS raises an HTTP
 * error. Every request here is built by hand on the raw HTTP/2 session, so the test pins the wire,
 * not our client's habits.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { BackupReader } from '../../src/client/backup-reader.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import {
  ApiClient,
  openProtocolSession,
  type Credentials,
  type ProtocolSession,
} from '../../src/client/connection.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { h2Call, type H2Reply } from '../helpers/h2-call.js';
import { startProtocolServer, type ProtocolServer } from './protocol-server.js';

const FIXED_CHUNK = 4 * 1024 * 1024;
const BACKUP = 'proxmox-backup-protocol-v1';
const READER = 'proxmox-backup-reader-protocol-v1';

let srv: ProtocolServer;
let storePath: string;
let pool: ChunkPool;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

before(async () => {
  srv = await startProtocolServer('stowage-contract-');
  storePath = await srv.instance.createStore('store1', {}, { full: true });
  pool = new ChunkPool({ threads: 1 });
});

after(async () => {
  await pool.close();
  await srv.close();
});

type Params = Record<string, string | number | boolean | readonly (string | number)[]>;
type Style = 'query' | 'json' | 'form';

type Reply = H2Reply;

function formEncode(params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item));
  }
  return q.toString();
}

/** A call whose parameters travel the given way (PBS reads all three). */
function paramCall(
  s: ProtocolSession,
  style: Style,
  method: string,
  name: string,
  params: Params,
): Promise<Reply> {
  if (style === 'query') {
    const qs = formEncode(params);
    return h2Call(s, method, `/${name}${qs ? `?${qs}` : ''}`);
  }
  if (style === 'json') {
    return h2Call(s, method, `/${name}`, { contentType: 'application/json', body: JSON.stringify(params) });
  }
  return h2Call(s, method, `/${name}`, {
    contentType: 'application/x-www-form-urlencoded',
    body: formEncode(params),
  });
}

async function ok(r: Promise<Reply>): Promise<unknown> {
  const res = await r;
  assert.equal(res.status, 200, `expected 200, got ${res.status}: ${res.body.toString()}`);
  return res.body.length > 0 ? (JSON.parse(res.body.toString()) as { data: unknown }).data : undefined;
}

/** Upload one chunk as PBS's client does: parameters in the query, the blob as the body. */
async function uploadChunk(
  s: ProtocolSession,
  kind: 'dynamic' | 'fixed',
  wid: number,
  data: Buffer,
): Promise<string> {
  const blob = encodeBlob(data);
  const digest = hex(sha(data));
  const qs = formEncode({ wid, digest, size: data.length, 'encoded-size': blob.length });
  const res = await h2Call(s, 'POST', `/${kind}_chunk?${qs}`, {
    contentType: 'application/octet-stream',
    body: blob,
  });
  assert.equal(res.status, 200, res.body.toString());
  return digest;
}

function session(
  path: '/api2/json/backup' | '/api2/json/reader',
  id: string,
  time: number,
  credentials: Credentials = srv.root,
): Promise<ProtocolSession> {
  return openProtocolSession({
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials,
    path,
    protocol: path === '/api2/json/backup' ? BACKUP : READER,
    query: { store: 'store1', 'backup-type': 'host', 'backup-id': id, 'backup-time': time },
  });
}

const streamParts = [randomBytes(300_000), Buffer.alloc(200_000, 'contract ')];
const image = Buffer.concat([randomBytes(FIXED_CHUNK), Buffer.alloc(1000, 7)]);
const notes = Buffer.from('notes of the contract backup');

function didxCsum(ends: number[], digests: string[]): string {
  const h = createHash('sha256');
  ends.forEach((end, i) => {
    const le = Buffer.alloc(8);
    le.writeBigUInt64LE(BigInt(end));
    h.update(le).update(Buffer.from(digests[i]!, 'hex'));
  });
  return h.digest('hex');
}

function fidxCsum(digests: string[]): string {
  const h = createHash('sha256');
  for (const d of digests) h.update(Buffer.from(d, 'hex'));
  return h.digest('hex');
}

/**
 * A whole backup with every parameter-carrying call sent `style`'s way: a dynamic index, a fixed
 * index of unknown size (an image read from a pipe, PBS bug 3847), a blob, and `finish`.
 */
async function backupWithStyle(style: Style, id: string, time: number): Promise<void> {
  const s = await session('/api2/json/backup', id, time);
  try {
    const dwid = (await ok(
      paramCall(s, style, 'POST', 'dynamic_index', { 'archive-name': 'root.pxar.didx' }),
    )) as number;
    const ddigests: string[] = [];
    const ends: number[] = [];
    let offset = 0;
    const offsets: number[] = [];
    for (const part of streamParts) {
      ddigests.push(await uploadChunk(s, 'dynamic', dwid, part));
      offsets.push(offset);
      offset += part.length;
      ends.push(offset);
    }
    await ok(
      paramCall(s, style, 'PUT', 'dynamic_index', {
        wid: dwid,
        'digest-list': ddigests,
        'offset-list': offsets,
      }),
    );
    await ok(
      paramCall(s, style, 'POST', 'dynamic_close', {
        wid: dwid,
        'chunk-count': ddigests.length,
        size: offset,
        csum: didxCsum(ends, ddigests),
      }),
    );

    const fwid = (await ok(
      paramCall(s, style, 'POST', 'fixed_index', { 'archive-name': 'disk.img.fidx' }),
    )) as number;
    const fdigests = [
      await uploadChunk(s, 'fixed', fwid, image.subarray(0, FIXED_CHUNK)),
      await uploadChunk(s, 'fixed', fwid, image.subarray(FIXED_CHUNK)),
    ];
    await ok(
      paramCall(s, style, 'PUT', 'fixed_index', {
        wid: fwid,
        'digest-list': fdigests,
        'offset-list': [0, FIXED_CHUNK],
      }),
    );
    await ok(
      paramCall(s, style, 'POST', 'fixed_close', {
        wid: fwid,
        'chunk-count': 2,
        size: image.length,
        csum: fidxCsum(fdigests),
      }),
    );

    const blob = encodeBlob(notes);
    const qs = formEncode({ 'file-name': 'notes.blob', 'encoded-size': blob.length });
    assert.equal(
      (await h2Call(s, 'POST', `/blob?${qs}`, { contentType: 'application/octet-stream', body: blob }))
        .status,
      200,
    );

    // `finish` has no parameters: sent with no body at all, an empty JSON object, an empty form
    if (style === 'query') await ok(h2Call(s, 'POST', '/finish'));
    else if (style === 'json')
      await ok(h2Call(s, 'POST', '/finish', { contentType: 'application/json', body: '{}' }));
    else
      await ok(h2Call(s, 'POST', '/finish', { contentType: 'application/x-www-form-urlencoded', body: '' }));
  } finally {
    await s.close();
  }
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

function snapshotDir(id: string): string {
  const group = join(storePath, 'host', id);
  const snaps = readdirSync(group).filter((n) => /^\d{4}-/.test(n));
  assert.equal(snaps.length, 1, `one snapshot of ${id}`);
  return join(group, snaps[0]!);
}

describe('complete sessions with the parameters in the query, a JSON body and a form body', () => {
  const styles: Style[] = ['query', 'json', 'form'];

  test('each produces the same snapshot, and it restores byte for byte', async () => {
    for (const style of styles) await backupWithStyle(style, `contract-${style}`, 1_700_000_000);

    const [first, ...rest] = styles.map((style) => {
      const dir = snapshotDir(`contract-${style}`);
      return {
        files: readdirSync(dir).sort(),
        didx: readFileSync(join(dir, 'root.pxar.didx')).subarray(4096),
        fidx: readFileSync(join(dir, 'disk.img.fidx')),
        blob: readFileSync(join(dir, 'notes.blob')),
      };
    });
    assert.deepEqual(first!.files, ['disk.img.fidx', 'index.json.blob', 'notes.blob', 'root.pxar.didx']);
    // the index of unknown size recorded the size given at close
    assert.equal(first!.fidx.readBigUInt64LE(64), BigInt(image.length));
    for (const other of rest) {
      assert.deepEqual(other.files, first!.files);
      assert.ok(other.didx.equals(first!.didx), 'same dynamic index body');
      assert.ok(
        other.fidx.subarray(64).equals(first!.fidx.subarray(64)),
        'same fixed index size and digests',
      );
      assert.ok(other.blob.equals(first!.blob));
    }

    for (const style of styles) {
      const r = await BackupReader.open(
        {
          target: { host: srv.host, port: srv.port },
          policy: { fingerprint: srv.fingerprint },
          credentials: srv.root,
          store: 'store1',
          backupType: 'host',
          backupId: `contract-${style}`,
          backupTime: 1_700_000_000,
        },
        pool,
      );
      const manifest = await r.manifest();
      assert.deepEqual(
        manifest.files.map((f) => [f.filename, f.size]),
        [
          ['disk.img.fidx', image.length],
          ['notes.blob', encodeBlob(notes).length],
          ['root.pxar.didx', streamParts[0]!.length + streamParts[1]!.length],
        ],
      );
      assert.ok((await collect(r.chunks('root.pxar.didx'))).equals(Buffer.concat(streamParts)));
      assert.ok((await collect(r.chunks('disk.img.fidx'))).equals(image));
      assert.ok((await r.blob('notes.blob')).equals(notes));
      await r.close();
    }
  });

  test('an incremental image backup reuses the previous index when the chunk count matches', async () => {
    const prev = readFileSync(join(snapshotDir('contract-json'), 'disk.img.fidx'));
    const csum = hex(prev.subarray(32, 64));
    const s = await session('/api2/json/backup', 'contract-json', 1_700_000_100);
    try {
      // the last chunk grew by 24 bytes: same number of chunks, so PBS reuses the index
      const grown = image.length + 24;
      const wid = (await ok(
        paramCall(s, 'json', 'POST', 'fixed_index', {
          'archive-name': 'disk.img.fidx',
          size: grown,
          'reuse-csum': csum,
        }),
      )) as number;
      const tail = Buffer.concat([image.subarray(FIXED_CHUNK), Buffer.alloc(24, 9)]);
      const d = await uploadChunk(s, 'fixed', wid, tail);
      await ok(
        paramCall(s, 'json', 'PUT', 'fixed_index', { wid, 'digest-list': [d], 'offset-list': [FIXED_CHUNK] }),
      );
      const first = hex(prev.subarray(4096, 4096 + 32));
      await ok(
        paramCall(s, 'json', 'POST', 'fixed_close', {
          wid,
          'chunk-count': 1,
          size: grown,
          csum: fidxCsum([first, d]),
        }),
      );
      await ok(h2Call(s, 'POST', '/finish'));
    } finally {
      await s.close();
    }
  });
});

/** An HTTP/1.1 upgrade request by hand; returns the whole (non-101) response. */
async function rawUpgrade(
  path: string,
  query: Params,
  opts: { credentials?: Credentials; protocol: string },
): Promise<Reply> {
  const socket = tls.connect({ host: srv.host, port: srv.port, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  const headers: Record<string, string> = {
    host: 'localhost',
    connection: 'upgrade',
    upgrade: opts.protocol,
  };
  const c = opts.credentials;
  if (c?.kind === 'ticket') headers.cookie = `PBSAuthCookie=${encodeURIComponent(c.ticket)}`;
  if (c?.kind === 'token') headers.authorization = `PBSAPIToken=${c.tokenId}:${c.secret}`;
  socket.write(
    `GET ${path}?${formEncode(query)} HTTP/1.1\r\n` +
      Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n',
  );
  const chunks: Buffer[] = [];
  for await (const c of socket) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  const end = raw.indexOf('\r\n\r\n');
  const lines = raw.subarray(0, end).toString().split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const h: Reply['headers'] = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status, headers: h, body: raw.subarray(end + 4) };
}

/** PBS's answer to a refused call: this status, exactly this text as the body, JSON content type. */
function assertRefusal(res: Reply, status: number, message: string | RegExp): void {
  const text = res.body.toString();
  assert.equal(res.status, status, `status of "${text}"`);
  if (typeof message === 'string') assert.equal(text, message);
  else assert.match(text, message);
  assert.match(String(res.headers['content-type']), /^application\/json/);
}

async function createUser(
  userid: string,
  acl: { path: string; role: string } | undefined,
): Promise<Credentials> {
  const api = new ApiClient({ host: srv.host, port: srv.port }, { fingerprint: srv.fingerprint }, srv.root);
  const password = 'contract-pw-1';
  await api.call('POST', '/access/users', { userid, password });
  if (acl) await api.call('PUT', '/access/acl', { ...acl, 'auth-id': userid });
  const anon = new ApiClient({ host: srv.host, port: srv.port }, { fingerprint: srv.fingerprint });
  const t = await anon.call<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
    username: userid,
    password,
  });
  return { kind: 'ticket', ticket: t.ticket, csrf: t.CSRFPreventionToken };
}

describe('refusals answer with PBS status and plain-text body', () => {
  const snap = {
    store: 'store1',
    'backup-type': 'host',
    'backup-id': 'contract-query',
    'backup-time': 1_700_000_000,
  };
  const later = { ...snap, 'backup-time': 1_800_000_000 };
  let bob: Credentials;
  let reader: Credentials;
  let nobody: Credentials;

  before(async () => {
    bob = await createUser('bob@pbs', { path: '/datastore/store1', role: 'DatastoreBackup' });
    reader = await createUser('rita@pbs', { path: '/datastore/store1', role: 'DatastoreReader' });
    nobody = await createUser('nora@pbs', undefined);
  });

  test('the backup upgrade', async () => {
    const up = (query: Params, credentials: Credentials | null = srv.root, protocol = BACKUP) =>
      rawUpgrade('/api2/json/backup', query, { credentials: credentials ?? undefined, protocol });

    assertRefusal(await up(later, null), 401, /^authentication failed/);
    assertRefusal(
      await up(later, nobody),
      403,
      'permission check failed - missing Datastore.Backup on /datastore/store1',
    );
    const { 'backup-time': _t, ...noTime } = later;
    assertRefusal(
      await up(noTime),
      400,
      "parameter verification failed - 'backup-time': parameter is missing",
    );
    assertRefusal(await up(later, srv.root, 'nope'), 400, 'invalid protocol name');
    assertRefusal(await up({ ...later, ns: 'nowhere' }), 404, 'namespace not found');
    assertRefusal(await up(later, bob), 400, 'backup owner check failed (bob@pbs != root@pam)');
    assertRefusal(
      await up({ ...later, 'backup-time': 1_600_000_000 }),
      400,
      'backup timestamp is older than last backup.',
    );
    // an unfinished snapshot directory newer than the last finished one (2027-01-15T08:00:00Z)
    mkdirSync(join(storePath, 'host', 'contract-query', '2027-01-15T08:00:00Z'));
    assertRefusal(await up(later), 400, 'backup directory already exists.');
    assertRefusal(
      await up({ ...later, 'backup-id': 'benchmark' }),
      400,
      'unable to run benchmark without --benchmark flags',
    );
    assertRefusal(
      await up({ ...later, benchmark: 1 }),
      400,
      "benchmark flags is only allowed on 'host/benchmark'",
    );

    await setMaintenanceMode(srv.instance.access, 'store1', { type: 'read-only', message: 'disk swap' });
    try {
      const res = await up(later);
      assertRefusal(res, 400, "datastore 'store1' is unavailable: read-only maintenance mode: disk swap");
      assert.equal(res.headers['x-stowage-error-code'], 'MAINTENANCE');
    } finally {
      await setMaintenanceMode(srv.instance.access, 'store1', undefined);
    }
    assert.equal(srv.instance.access.registry.list('store1').length, 0, 'no operation left registered');
  });

  test('the reader upgrade', async () => {
    const up = (query: Params, credentials: Credentials = srv.root) =>
      rawUpgrade('/api2/json/reader', query, { credentials, protocol: READER });
    assertRefusal(await up(snap, nobody), 400, 'no permissions on /datastore/store1');
    assertRefusal(await up(snap, bob), 400, 'backup owner check failed!');
    assertRefusal(
      await up({ ...snap, 'backup-time': 1_900_000_000 }),
      400,
      'snapshot host/contract-query/2030-03-17T17:46:40Z does not exist.',
    );
    assertRefusal(
      await up({ ...snap, 'backup-id': 'never' }, reader),
      400,
      /^snapshot host\/never\/.* does not exist\.$/,
    );
    await setMaintenanceMode(srv.instance.access, 'store1', { type: 'offline', message: 'moving' });
    try {
      assertRefusal(
        await up(snap),
        400,
        "datastore 'store1' is unavailable: offline maintenance mode: moving",
      );
    } finally {
      await setMaintenanceMode(srv.instance.access, 'store1', undefined);
    }
  });

  test('calls inside a backup session', async () => {
    const s = await session('/api2/json/backup', 'contract-fresh', 1_700_000_000);
    try {
      assertRefusal(
        await h2Call(s, 'GET', '/previous?archive-name=root.pxar.didx'),
        400,
        'no valid previous backup',
      );
      assertRefusal(await h2Call(s, 'GET', '/nope'), 404, "Path '/nope' not found.");
      assertRefusal(
        await paramCall(s, 'json', 'POST', 'dynamic_index', { 'archive-name': 'disk.img' }),
        400,
        "wrong archive extension: 'disk.img'",
      );
      assertRefusal(
        await paramCall(s, 'query', 'POST', 'dynamic_index', { 'archive-name': 'a.didx', extra: 1 }),
        400,
        "parameter verification failed - 'extra': schema does not allow additional properties",
      );
      assertRefusal(
        await h2Call(s, 'POST', '/dynamic_index', { contentType: 'text/plain', body: 'archive-name=a.didx' }),
        400,
        'unsupported content type "text/plain"',
      );
      const wid = (await ok(
        paramCall(s, 'form', 'POST', 'dynamic_index', { 'archive-name': 'a.didx' }),
      )) as number;
      // PBS: a dynamic index has at least one chunk and one byte
      assertRefusal(
        await paramCall(s, 'form', 'POST', 'dynamic_close', { wid, 'chunk-count': 0, size: 0, csum: '00' }),
        400,
        /^parameter verification failed - 'chunk-count': .*'size': /,
      );
      assertRefusal(
        await paramCall(s, 'json', 'PUT', 'dynamic_index', {
          wid,
          'digest-list': [hex(sha(Buffer.from('x')))],
          'offset-list': [0],
        }),
        400,
        `no such chunk ${hex(sha(Buffer.from('x')))}`,
      );
      const fw = (await ok(
        paramCall(s, 'json', 'POST', 'fixed_index', { 'archive-name': 'b.fidx', size: 5 }),
      )) as number;
      assert.ok(fw > wid);
      assertRefusal(
        await paramCall(s, 'json', 'POST', 'fixed_index', { 'archive-name': 'c.fidx', 'reuse-csum': '00' }),
        400,
        'size is required for incremental backups',
      );
      assertRefusal(
        await paramCall(s, 'json', 'POST', 'fixed_index', {
          'archive-name': 'c.fidx',
          size: 5,
          'reuse-csum': '00',
        }),
        400,
        'cannot reuse index - no valid previous backup exists',
      );
      const blob = encodeBlob(Buffer.from('x'));
      assertRefusal(
        await h2Call(s, 'POST', `/blob?file-name=x.blob&encoded-size=${16 * 1024 * 1024 + 45}`, {
          contentType: 'application/octet-stream',
          body: blob,
        }),
        400,
        /^parameter verification failed - 'encoded-size': /,
      );
      assertRefusal(
        await h2Call(s, 'POST', `/blob?file-name=x.txt&encoded-size=${blob.length}`, {
          contentType: 'application/octet-stream',
          body: blob,
        }),
        400,
        "wrong blob file extension: 'x.txt'",
      );
      assertRefusal(
        await h2Call(s, 'POST', '/finish'),
        400,
        'found open index writer - unable to finish backup',
      );
    } finally {
      s.destroy();
    }
  });

  test('an incremental image backup with another chunk count or checksum is refused', async () => {
    const prev = readFileSync(join(snapshotDir('contract-form'), 'disk.img.fidx'));
    const csum = hex(prev.subarray(32, 64));
    const s = await session('/api2/json/backup', 'contract-form', 1_700_000_200);
    try {
      const fixed = (params: Params) =>
        paramCall(s, 'form', 'POST', 'fixed_index', { 'archive-name': 'disk.img.fidx', ...params });
      assertRefusal(
        await fixed({ size: 3 * FIXED_CHUNK, 'reuse-csum': csum }),
        400,
        'cannot reuse index - index sizes not equal (3 != 2)',
      );
      assertRefusal(
        await fixed({ size: image.length, 'reuse-csum': '0'.repeat(64) }),
        400,
        `expected csum (${'0'.repeat(64)}) doesn't match last backup's (${csum}), cannot do incremental backup`,
      );
      assertRefusal(
        await h2Call(s, 'POST', '/finish'),
        400,
        'backup does not contain valid files (file count == 0)',
      );
    } finally {
      s.destroy();
    }
  });

  test('calls inside a reader session', async () => {
    const s = await session('/api2/json/reader', 'contract-query', 1_700_000_000);
    try {
      const digest = hex(sha(streamParts[0]!));
      assertRefusal(
        await h2Call(s, 'GET', `/chunk?digest=${digest}`),
        401,
        `download chunk ${digest} not allowed`,
      );
      assertRefusal(
        await h2Call(s, 'GET', '/download?file-name=missing.blob'),
        404,
        "open file 'host/contract-query/2023-11-14T22:13:20Z/missing.blob' failed - not found",
      );
      assertRefusal(
        await h2Call(s, 'GET', '/chunk?digest=xyz'),
        400,
        /^parameter verification failed - 'digest': /,
      );
      // registered by downloading the index, the chunk is served
      assert.equal((await h2Call(s, 'GET', '/download?file-name=root.pxar.didx')).status, 200);
      assert.equal((await h2Call(s, 'GET', `/chunk?digest=${digest}`)).status, 200);
    } finally {
      await s.close();
    }
  });
});
