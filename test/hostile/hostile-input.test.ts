/**
 * Hostile input, table by table, against one real HTTPS server: malformed and oversized
 * parameters (query, JSON body, form body), path traversal in store names, namespaces, backup
 * ids and file names, bad tickets, tokens and CSRF tokens, and inside the backup and reader
 * protocols wrong digests and sizes, corrupt blobs, indexes closed with a wrong checksum or
 * count, a manifest that is not JSON. Each row states the status PBS answers and what the
 * message must name; every row also proves that nothing changed on disk (datastore and
 * configuration directory, listed and hashed before and after).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compress as zstdCompress } from 'zstd-napi';
import { openProtocolSession, type Credentials, type ProtocolSession } from '../../src/client/connection.js';
import { BLOB_MAGIC, encodeBlob, rewriteBlobCrc } from '../../src/datastore/data-blob.js';
import { createTicket } from '../../src/http/auth/ticket.js';
import { startTestServer, type Auth, type TestServer } from '../helpers/https-api.js';
import { h2Call, type H2Reply } from '../helpers/h2-call.js';
import { assertSameDisk, diskState, rawRequest } from './hostile-helpers.js';

const BACKUP = 'proxmox-backup-protocol-v1';
const READER = 'proxmox-backup-reader-protocol-v1';
const T0 = 1_700_000_000;

let t: TestServer;
let storePath: string;
let tokenAuth: Auth;
let nobody: Auth;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Everything a refused request must leave alone: datastores and configuration, listed and hashed. */
const disk = () => diskState([join(t.dir, 'stores'), t.paths.configDir]);

function creds(a: Auth): Credentials {
  return { kind: 'ticket', ticket: a.ticket!, csrf: a.csrf };
}

function session(
  kind: 'backup' | 'reader',
  query: Record<string, string | number>,
  auth: Auth = t.root,
): Promise<ProtocolSession> {
  const url = new URL(t.server.url);
  return openProtocolSession({
    target: { host: url.hostname, port: Number(url.port) },
    policy: { fingerprint: t.server.fingerprint },
    credentials: creds(auth),
    path: `/api2/json/${kind}`,
    protocol: kind === 'backup' ? BACKUP : READER,
    query: { store: 'store1', 'backup-type': 'host', ...query },
  });
}

function qs(params: Record<string, string | number>): string {
  return new URLSearchParams(
    Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]),
  ).toString();
}

async function ok(r: Promise<H2Reply>): Promise<unknown> {
  const res = await r;
  assert.equal(res.status, 200, res.body.toString());
  return (JSON.parse(res.body.toString()) as { data: unknown }).data;
}

/** The disk once an unfinished session of host/`id` has removed its snapshot and group. */
async function diskAfterSession(id: string): Promise<Map<string, string>> {
  const deadline = Date.now() + 10_000;
  let state = disk();
  while ([...state.keys()].some((k) => k.includes(`host/${id}`)) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    state = disk();
  }
  return state;
}

/** The chunk-store directory a chunk lands in exists (the bare store has only `0000`). */
function chunkDirFor(digest: Buffer): void {
  mkdirSync(join(storePath, '.chunks', hex(digest).slice(0, 4)), { recursive: true });
}

const chunkData = Buffer.alloc(50_000, 'hostile ');
const chunkDigest = sha(chunkData);

/** A snapshot the read-side rows aim at: host/`id` at T0, a blob and a one-chunk didx. */
async function makeFixtureSnapshot(id: string): Promise<void> {
  chunkDirFor(chunkDigest);
  const s = await session('backup', { 'backup-id': id, 'backup-time': T0 });
  try {
    const wid = (await ok(
      h2Call(s, 'POST', `/dynamic_index?${qs({ 'archive-name': 'root.pxar.didx' })}`),
    )) as number;
    const blob = encodeBlob(chunkData);
    const up = qs({ wid, digest: hex(chunkDigest), size: chunkData.length, 'encoded-size': blob.length });
    await ok(
      h2Call(s, 'POST', `/dynamic_chunk?${up}`, { contentType: 'application/octet-stream', body: blob }),
    );
    await ok(
      h2Call(s, 'PUT', `/dynamic_index?${qs({ wid, 'digest-list': hex(chunkDigest), 'offset-list': 0 })}`),
    );
    const end = Buffer.alloc(8);
    end.writeBigUInt64LE(BigInt(chunkData.length));
    const csum = hex(sha(Buffer.concat([end, chunkDigest])));
    await ok(
      h2Call(s, 'POST', `/dynamic_close?${qs({ wid, 'chunk-count': 1, size: chunkData.length, csum })}`),
    );
    const notes = encodeBlob(Buffer.from('fixture notes'));
    await ok(
      h2Call(s, 'POST', `/blob?${qs({ 'file-name': 'notes.blob', 'encoded-size': notes.length })}`, {
        contentType: 'application/octet-stream',
        body: notes,
      }),
    );
    await ok(h2Call(s, 'POST', '/finish'));
  } finally {
    await s.close();
  }
}

const DAMAGED_DIR = () => join(storePath, 'host', 'damaged', '2023-11-14T22:13:20Z');

/** host/damaged: its index cut short and its notes blob's last byte flipped (CRC now wrong). */
function damageSnapshot(): void {
  const dir = DAMAGED_DIR();
  truncateSync(join(dir, 'root.pxar.didx'), 4096 + 20);
  const notes = readFileSync(join(dir, 'notes.blob'));
  notes[notes.length - 1] = notes[notes.length - 1]! ^ 0xff;
  writeFileSync(join(dir, 'notes.blob'), notes);
}

before(async () => {
  t = await startTestServer({ prefix: 'stowage-hostile-' });
  storePath = await t.addBareDatastore('store1');
  await makeFixtureSnapshot('fixture');
  await makeFixtureSnapshot('damaged');
  damageSnapshot();
  nobody = await t.addUser('nobody@pbs');
  const made = await t.api('POST', '/access/users/root@pam/token/hostile', { auth: t.root, body: {} });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const { tokenid, value } = made.body.data as { tokenid: string; value: string };
  tokenAuth = { token: `${tokenid}:${value}` };
});

after(async () => {
  await t?.close();
});

// ---------------------------------------------------------------------------------------------
// the REST API

interface ApiRow {
  name: string;
  method: string;
  /** Sent exactly as written (after `/api2/json`), so `..` and `%2e%2e` reach the server. */
  path: string;
  /** Default: root's ticket and CSRF token. */
  auth?: Auth | 'none';
  json?: unknown;
  /** A raw body with its content type (malformed JSON, form bodies). */
  raw?: { type: string; body: string };
  headers?: Record<string, string>;
  status: number;
  /** What the envelope's message must say (a 200 has none). */
  message?: RegExp;
}

function authHeaders(auth: Auth | 'none'): Record<string, string> {
  if (auth === 'none') return {};
  const h: Record<string, string> = {};
  if (auth.ticket) h.cookie = `PBSAuthCookie=${encodeURIComponent(auth.ticket)}`;
  if (auth.csrf) h.CSRFPreventionToken = auth.csrf;
  if (auth.token) h.authorization = `PBSAPIToken ${auth.token}`;
  return h;
}

async function runApiRow(row: ApiRow): Promise<void> {
  const headers = { ...authHeaders(row.auth ?? t.root), ...row.headers };
  let body: string | undefined;
  if (row.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(row.json);
  } else if (row.raw) {
    headers['content-type'] = row.raw.type;
    body = row.raw.body;
  }
  const beforeDisk = disk();
  const res = await rawRequest(t.server.url, row.method, `/api2/json${row.path}`, headers, body);
  let message: string | undefined;
  try {
    message = (JSON.parse(res.text) as { message?: string }).message;
  } catch {
    assert.fail(`${row.name}: not the JSON envelope: ${res.status} ${res.text.slice(0, 200)}`);
  }
  assert.equal(res.status, row.status, `${row.name}: ${message}`);
  if (row.message) assert.match(message ?? '', row.message, row.name);
  assertSameDisk(beforeDisk, disk(), row.name);
}

function apiTable(title: string, rows: () => ApiRow[]): void {
  describe(title, () => {
    // rows are built when the suite runs: they need the server's keys and users
    test('every row', async (tc) => {
      for (const row of rows()) await tc.test(row.name, () => runApiRow(row));
    });
  });
}

const SNAP = `backup-type=host&backup-id=fixture&backup-time=${T0}`;
const LONG = 'a'.repeat(5000);

apiTable('malformed and oversized parameters', () => [
  {
    name: 'a backup-type outside the enum (query)',
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?backup-type=nope',
    status: 400,
    message: /'backup-type'/,
  },
  {
    name: 'a number that is not one (query)',
    method: 'GET',
    path: '/nodes/localhost/tasks?limit=many',
    status: 400,
    message: /'limit'/,
  },
  {
    name: 'a negative number (query)',
    method: 'GET',
    path: '/nodes/localhost/tasks?limit=-5',
    status: 400,
    message: /'limit'/,
  },
  {
    name: 'an unknown parameter (query)',
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?evil=1',
    status: 400,
    message: /'evil': schema does not allow additional properties/,
  },
  {
    name: 'a JSON body that does not parse',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    raw: { type: 'application/json', body: '{"name": "x",' },
    status: 400,
    message: /^request body is not valid JSON/,
  },
  {
    name: 'a JSON body that is an array',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    raw: { type: 'application/json', body: '["name", "x"]' },
    status: 400,
    message: /'body': must be object/,
  },
  {
    name: 'a JSON body with a wrong type',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    json: { name: { nested: true } },
    status: 400,
    message: /'name'/,
  },
  {
    name: 'an unknown parameter (JSON body)',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    json: { name: 'ok-name', evil: 1 },
    status: 400,
    message: /'evil'/,
  },
  {
    name: 'a form body with a role that does not exist',
    method: 'PUT',
    path: '/access/acl',
    raw: { type: 'application/x-www-form-urlencoded', body: 'path=/&role=Overlord&auth-id=nobody@pbs' },
    status: 400,
    message: /'role'/,
  },
  {
    name: 'a form body with a missing parameter',
    method: 'PUT',
    path: '/access/acl',
    raw: { type: 'application/x-www-form-urlencoded', body: 'role=Admin' },
    status: 400,
    message: /'path': parameter is missing/,
  },
  {
    name: 'an overlong user id (JSON body)',
    method: 'POST',
    path: '/access/users',
    json: { userid: `${LONG}@pbs`, password: 'long-pw-123' },
    status: 400,
    message: /'userid'/,
  },
  {
    name: 'an overlong comment (form body)',
    method: 'POST',
    path: '/access/users',
    raw: {
      type: 'application/x-www-form-urlencoded',
      body: `userid=long@pbs&password=long-pw-123&comment=${LONG}`,
    },
    status: 400,
    message: /'comment'/,
  },
  {
    name: 'a parameter body beyond the 512 KiB limit',
    method: 'POST',
    path: '/access/users',
    raw: {
      type: 'application/x-www-form-urlencoded',
      body: `userid=big@pbs&comment=${'b'.repeat(600 * 1024)}`,
    },
    // fastify's 413 in the envelope (src/http/error-envelope.ts keeps the HTTP layer's 4xx)
    status: 413,
    message: /Request body is too large/,
  },
  {
    name: 'a path component beyond 1024 characters',
    method: 'GET',
    path: `/admin/datastore/${'s'.repeat(1100)}/status`,
    status: 414,
    message: /URI too long/,
  },
  {
    name: 'a JSON body that tries to set __proto__',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    raw: { type: 'application/json', body: '{"__proto__": {"name": "polluted"}}' },
    status: 400,
    message: /'name': parameter is missing/,
  },
  {
    name: 'a string parameter given twice (query)',
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?backup-type=host&backup-type=vm',
    status: 400,
    message: /'backup-type'/,
  },
  {
    name: 'a backup log that is not a blob',
    method: 'POST',
    path: `/admin/datastore/store1/upload-backup-log?${SNAP}`,
    raw: { type: 'application/octet-stream', body: 'plain text log' },
    status: 400,
    message: /^uploaded blob: wrong magic number$/,
  },
  {
    name: 'a task id with a slash',
    method: 'GET',
    path: '/nodes/localhost/tasks/..%2F..%2Fetc%2Fuser.cfg/log',
    status: 400,
    message: /'upid'/,
  },
  {
    name: "removing datastore '..'",
    method: 'DELETE',
    path: '/config/datastore/%2e%2e',
    status: 400,
    message: /'name'/,
  },
  {
    name: "changing the owner to '../x@pbs'",
    method: 'POST',
    path: '/admin/datastore/store1/change-owner',
    json: { 'backup-type': 'host', 'backup-id': 'fixture', 'new-owner': '../x@pbs' },
    status: 400,
    message: /'new-owner'/,
  },
  {
    name: 'a URL whose query is longer than the request head limit',
    method: 'GET',
    path: `/admin/datastore/store1/snapshots?backup-id=${'q'.repeat(20_000)}`,
    status: 414,
    message: /^URI too long: the request line is longer than/,
  },
  {
    name: 'headers longer than the request head limit',
    method: 'GET',
    path: '/admin/datastore/store1/snapshots',
    headers: { 'x-padding': 'h'.repeat(20_000) },
    status: 431,
    message: /^request headers too large/,
  },
  {
    name: 'a body of an unsupported content type',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    raw: { type: 'text/plain', body: 'name=x' },
    status: 400,
    message: /content.type|text\/plain/i,
  },
]);

apiTable('path traversal in store names, namespaces, backup ids and file names', () => [
  {
    name: "store '..' (encoded)",
    method: 'GET',
    path: '/admin/datastore/%2e%2e/status',
    status: 400,
    message: /'store'/,
  },
  {
    name: "store '../etc' (encoded slash)",
    method: 'GET',
    path: '/admin/datastore/..%2Fetc/status',
    status: 400,
    message: /'store'/,
  },
  {
    name: 'store with a NUL byte',
    method: 'GET',
    path: '/admin/datastore/store1%00/status',
    status: 400,
    message: /'store'/,
  },
  {
    name: "a new datastore named '../evil'",
    method: 'POST',
    path: '/config/datastore',
    json: { name: '../evil', path: join('/tmp', 'stowage-hostile-evil') },
    status: 400,
    message: /'name'/,
  },
  {
    name: 'a new datastore with a NUL in its path',
    method: 'POST',
    path: '/config/datastore',
    json: { name: 'evil', path: '/tmp/stowage\u0000evil' },
    status: 400,
    message: /'path'/,
  },
  {
    name: "namespace '..' when listing snapshots",
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?ns=..',
    status: 400,
    message: /^invalid ns '\.\.': component '\.\.' must match/,
  },
  {
    name: "namespace 'a/../..' when listing snapshots",
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?ns=a%2F..%2F..',
    status: 400,
    message: /^invalid ns 'a\/\.\.\/\.\.': component '\.\.'/,
  },
  {
    name: 'namespace deeper than 7 levels',
    method: 'GET',
    path: `/admin/datastore/store1/snapshots?ns=${'a/'.repeat(8)}a`,
    status: 400,
    message: /namespace deeper than 7 levels/,
  },
  {
    name: "creating namespace '..'",
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    json: { name: '..' },
    status: 400,
    message: /'name'/,
  },
  {
    name: "creating namespace 'x' under parent '../..'",
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    json: { name: 'x', parent: '../..' },
    status: 400,
    message: /^invalid parent '\.\.\/\.\.'/,
  },
  {
    name: 'creating a namespace with a NUL',
    method: 'POST',
    path: '/admin/datastore/store1/namespace',
    json: { name: 'a\u0000b' },
    status: 400,
    message: /'name'/,
  },
  {
    name: "backup-id '../fixture' when listing files",
    method: 'GET',
    path: `/admin/datastore/store1/files?backup-type=host&backup-id=..%2Ffixture&backup-time=${T0}`,
    status: 400,
    message: /'backup-id'/,
  },
  {
    name: "backup-id '..' when deleting a snapshot",
    method: 'DELETE',
    path: `/admin/datastore/store1/snapshots?backup-type=host&backup-id=..&backup-time=${T0}`,
    status: 400,
    message: /'backup-id'/,
  },
  {
    name: "file-name '../../../etc/user.cfg' on download",
    method: 'GET',
    path: `/admin/datastore/store1/download?${SNAP}&file-name=..%2F..%2F..%2F..%2Fetc%2Fuser.cfg`,
    status: 400,
    message: /^invalid file-name '\.\.\/\.\.\/\.\.\/\.\.\/etc\/user\.cfg'/,
  },
  {
    name: "file-name '..' on download",
    method: 'GET',
    path: `/admin/datastore/store1/download?${SNAP}&file-name=..`,
    status: 400,
    message: /^invalid file-name '\.\.'/,
  },
  {
    name: "file-name '%2e%2e/index.json.blob' on download-decoded",
    method: 'GET',
    path: `/admin/datastore/store1/download-decoded?${SNAP}&file-name=%252e%252e%2Findex.json.blob`,
    status: 400,
    message: /^invalid file-name '%2e%2e\/index\.json\.blob'/,
  },
  {
    name: 'an overlong file-name on download',
    method: 'GET',
    path: `/admin/datastore/store1/download?${SNAP}&file-name=${'f'.repeat(300)}.blob`,
    status: 400,
    message: /'file-name'/,
  },
  {
    name: 'a file the snapshot does not have',
    method: 'GET',
    path: `/admin/datastore/store1/download?${SNAP}&file-name=missing.blob`,
    status: 404,
    message: /missing\.blob/,
  },
  {
    name: "group notes of backup-id '../../etc'",
    method: 'PUT',
    path: '/admin/datastore/store1/group-notes',
    json: { 'backup-type': 'host', 'backup-id': '../../etc', notes: 'x' },
    status: 400,
    message: /'backup-id'/,
  },
  {
    name: 'a user id with a slash',
    method: 'GET',
    path: '/access/users/..%2F..%2Fetc@pbs',
    status: 400,
    message: /'userid'/,
  },
]);

apiTable('bad tickets, API tokens and CSRF tokens', () => {
  const keys = t.server.context.keys;
  const now = Math.floor(Date.now() / 1000);
  const expired = createTicket(keys.privateKey, 'root@pam', now - 7201);
  const future = createTicket(keys.privateKey, 'root@pam', now + 3600);
  const ghost = createTicket(keys.privateKey, 'ghost@pbs', now);
  const root = t.root.ticket!;
  const sig = root.slice(root.lastIndexOf('::') + 2);
  const forged = root.slice(0, root.length - sig.length) + (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
  const [tokenId, secret] = [tokenAuth.token!.split(':')[0]!, tokenAuth.token!.split(':')[1]!];
  const mutating = {
    method: 'POST',
    path: '/access/users',
    json: { userid: 'mallory@pbs', password: 'mallory-pw-1' },
  };
  const rows: ApiRow[] = [
    { name: 'no credentials', ...mutating, auth: 'none', status: 401, message: /^authentication failed/ },
    {
      name: 'an expired ticket',
      ...mutating,
      auth: { ticket: expired, csrf: t.root.csrf },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a ticket from the future',
      ...mutating,
      auth: { ticket: future, csrf: t.root.csrf },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a ticket with a forged signature',
      ...mutating,
      auth: { ticket: forged, csrf: t.root.csrf },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: "another user's name in root's ticket",
      ...mutating,
      auth: { ticket: root.replace('root@pam', 'nobody@pbs'), csrf: t.root.csrf },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a validly signed ticket of a user that does not exist',
      ...mutating,
      auth: { ticket: ghost },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a malformed ticket cookie',
      ...mutating,
      auth: { ticket: 'PBS:garbage', csrf: t.root.csrf },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a ticket without a CSRF token',
      ...mutating,
      auth: { ticket: root },
      status: 401,
      message: /missing CSRF prevention token/,
    },
    {
      name: 'a ticket with a wrong CSRF token',
      ...mutating,
      auth: { ticket: root, csrf: '00000000:abc' },
      status: 401,
      message: /invalid CSRF prevention token/,
    },
    {
      name: "a ticket with another user's CSRF token",
      ...mutating,
      auth: { ticket: root, csrf: nobody.csrf },
      status: 401,
      message: /invalid CSRF prevention token/,
    },
    {
      name: 'a ticket without CSRF on a DELETE',
      method: 'DELETE',
      path: `/admin/datastore/store1/snapshots?${SNAP}`,
      auth: { ticket: root },
      status: 401,
      message: /missing CSRF prevention token/,
    },
    {
      name: 'a token with a wrong secret',
      ...mutating,
      auth: { token: `${tokenId}:${secret.replace(/.$/, (c) => (c === '0' ? '1' : '0'))}` },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a token that does not exist',
      ...mutating,
      auth: { token: `root@pam!ghost:${secret}` },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a token header without a secret',
      ...mutating,
      auth: { token: tokenId },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a malformed authorization header',
      ...mutating,
      auth: 'none',
      headers: { authorization: 'Bearer x' },
      status: 401,
      message: /^authentication failed/,
    },
    {
      name: 'a user without privileges',
      ...mutating,
      auth: nobody,
      status: 403,
      message: /permission check failed - missing Permissions\.Modify on \/access\/users/,
    },
    {
      name: 'a user without privileges deleting a snapshot',
      method: 'DELETE',
      path: `/admin/datastore/store1/snapshots?${SNAP}`,
      auth: nobody,
      status: 403,
      message: /permission check failed/,
    },
  ];
  return rows;
});

// ---------------------------------------------------------------------------------------------
// the backup and reader protocols (HTTP/2 after the upgrade)

interface ProtocolRow {
  name: string;
  method: string;
  path: string;
  contentType?: string;
  body?: Buffer | string;
  status: number;
  /** The bare message PBS sends as the body. */
  message: RegExp;
}

async function runProtocolRow(s: ProtocolSession, row: ProtocolRow): Promise<void> {
  const beforeDisk = disk();
  const res = await h2Call(s, row.method, row.path, {
    ...(row.contentType !== undefined && { contentType: row.contentType }),
    ...(row.body !== undefined && { body: row.body }),
  });
  const text = res.body.toString();
  assert.equal(res.status, row.status, `${row.name}: ${text}`);
  assert.match(text, row.message, row.name);
  assertSameDisk(beforeDisk, disk(), row.name);
}

/** An upgrade request by hand (an HTTP/1.1 GET with `Upgrade:`), answered without the upgrade. */
async function upgradeRow(row: {
  name: string;
  kind: 'backup' | 'reader';
  query: string;
  status: number;
  message: RegExp;
}): Promise<void> {
  const beforeDisk = disk();
  const res = await rawRequest(t.server.url, 'GET', `/api2/json/${row.kind}?${row.query}`, {
    ...authHeaders(t.root),
    connection: 'upgrade',
    upgrade: row.kind === 'backup' ? BACKUP : READER,
  });
  assert.equal(res.status, row.status, `${row.name}: ${res.text}`);
  assert.match(res.text, row.message, row.name);
  assertSameDisk(beforeDisk, disk(), row.name);
}

const OCTETS = 'application/octet-stream';

/** A compressed blob around `body` (any bytes), with a right CRC. */
function compressedBlobOf(body: Buffer): Buffer {
  const blob = Buffer.concat([BLOB_MAGIC.compressed, Buffer.alloc(4), body]);
  rewriteBlobCrc(blob);
  return blob;
}

/** A zstd frame claiming 4 GiB of content in 16 bytes. */
function frameClaiming4GiB(): Buffer {
  const frame = Buffer.alloc(13);
  frame.writeUInt32LE(0xfd2fb528, 0);
  frame[4] = 0xe0; // 8-byte content size, single segment
  frame.writeBigUInt64LE(4n * 1024n ** 3n, 5);
  return Buffer.concat([frame, Buffer.from([0x01, 0x00, 0x00])]);
}

describe('upgrades to the backup and reader protocols', () => {
  const snap = `store=store1&backup-type=host&backup-time=${T0}`;
  test('every row', async (tc) => {
    const rows = [
      {
        name: "backup-id '../fixture'",
        kind: 'backup',
        query: `${snap}&backup-id=..%2Ffixture`,
        status: 400,
        message: /'backup-id'/,
      },
      {
        name: "backup-id '..'",
        kind: 'reader',
        query: `${snap}&backup-id=..`,
        status: 400,
        message: /'backup-id'/,
      },
      {
        name: 'backup-id with a NUL',
        kind: 'backup',
        query: `${snap}&backup-id=a%00b`,
        status: 400,
        message: /'backup-id'/,
      },
      {
        name: 'an overlong backup-id',
        kind: 'backup',
        query: `${snap}&backup-id=${'i'.repeat(300)}`,
        status: 400,
        message: /'backup-id'/,
      },
      {
        name: "backup-type 'host/..'",
        kind: 'backup',
        query: `store=store1&backup-type=host%2F..&backup-id=x&backup-time=${T0}`,
        status: 400,
        message: /'backup-type'/,
      },
      {
        name: "store '../etc'",
        kind: 'backup',
        query: `store=..%2Fetc&backup-type=host&backup-id=x&backup-time=${T0}`,
        status: 400,
        message: /'store'/,
      },
      {
        name: "namespace '..'",
        kind: 'backup',
        query: `${snap}&backup-id=x&ns=..`,
        status: 400,
        message: /ns/,
      },
      {
        name: "namespace 'a/../..' (reader)",
        kind: 'reader',
        query: `${snap}&backup-id=fixture&ns=a%2F..%2F..`,
        status: 400,
        message: /ns/,
      },
      {
        name: 'a backup-time that is not a number',
        kind: 'backup',
        query: 'store=store1&backup-type=host&backup-id=x&backup-time=now',
        status: 400,
        message: /'backup-time'/,
      },
    ] as const;
    for (const row of rows) await tc.test(row.name, () => upgradeRow(row));
  });
});

describe('calls inside a backup session', () => {
  const chunk = Buffer.alloc(40_000, 'session chunk ');
  const digest = sha(chunk);
  const blob = encodeBlob(chunk);
  const up = (wid: number, p: Partial<Record<'digest' | 'size' | 'encoded-size', string | number>> = {}) =>
    `/dynamic_chunk?${qs({ wid, digest: hex(digest), size: chunk.length, 'encoded-size': blob.length, ...p })}`;

  test('every row, and the session leaves nothing behind', async (tc) => {
    const beforeSession = disk();
    const s = await session('backup', { 'backup-id': 'hostile', 'backup-time': T0 + 100 });
    try {
      const wid = (await ok(
        h2Call(s, 'POST', `/dynamic_index?${qs({ 'archive-name': 'a.didx' })}`),
      )) as number;
      const fwid = (await ok(
        h2Call(s, 'POST', `/fixed_index?${qs({ 'archive-name': 'b.fidx', size: 100 })}`),
      )) as number;
      // a writer with one known chunk appended, for the close rows
      const cwid = (await ok(
        h2Call(s, 'POST', `/dynamic_index?${qs({ 'archive-name': 'c.didx' })}`),
      )) as number;
      const fixtureBlob = encodeBlob(chunkData);
      await ok(
        h2Call(
          s,
          'POST',
          `/dynamic_chunk?${qs({ wid: cwid, digest: hex(chunkDigest), size: chunkData.length, 'encoded-size': fixtureBlob.length })}`,
          { contentType: OCTETS, body: fixtureBlob },
        ),
      );
      await ok(
        h2Call(
          s,
          'PUT',
          `/dynamic_index?${qs({ wid: cwid, 'digest-list': hex(chunkDigest), 'offset-list': 0 })}`,
        ),
      );

      const wrongDigest = Buffer.from(digest);
      wrongDigest[0] = wrongDigest[0]! ^ 1;
      const badMagic = Buffer.from(blob);
      badMagic[0] = 0;
      const garbled = Buffer.from(blob);
      garbled.fill(0x55, 16);
      rewriteBlobCrc(garbled);
      const bomb = Buffer.concat(
        Array.from({ length: 17 }, () =>
          Buffer.from(zstdCompress(Buffer.alloc(1024 * 1024), { contentSizeFlag: false })),
        ),
      );
      const badCrcBlob = encodeBlob(Buffer.from('notes'));
      badCrcBlob.writeUInt32LE(badCrcBlob.readUInt32LE(8) ^ 1, 8);
      const notJson = encodeBlob(Buffer.from('this is not json'));
      const notABlob = Buffer.from('{"backup-type": "host"}');
      const blobCall = (name: string, body: Buffer, size = body.length) =>
        `/blob?${qs({ 'file-name': name, 'encoded-size': size })}`;
      const rows: ProtocolRow[] = [
        {
          name: 'a chunk whose content has another digest',
          method: 'POST',
          path: up(wid, { digest: hex(wrongDigest) }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /wrong digest/,
        },
        {
          name: 'a chunk of another size than announced',
          method: 'POST',
          path: up(wid, { size: chunk.length + 1 }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /wrong size/,
        },
        {
          name: 'a chunk body shorter than its encoded-size',
          method: 'POST',
          path: up(wid),
          contentType: OCTETS,
          body: blob.subarray(0, blob.length - 10),
          status: 400,
          message: /unexpected size/,
        },
        {
          name: 'a chunk body longer than its encoded-size',
          method: 'POST',
          path: up(wid, { 'encoded-size': blob.length - 10 }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /^request body too large \(more than \d+ bytes\)$/,
        },
        {
          name: 'a chunk that is not a blob',
          method: 'POST',
          path: up(wid),
          contentType: OCTETS,
          body: badMagic,
          status: 400,
          message: /wrong magic number/,
        },
        {
          name: 'a chunk whose zstd data is garbage (CRC made right)',
          method: 'POST',
          path: up(wid),
          contentType: OCTETS,
          body: garbled,
          status: 400,
          message: /zstd data is corrupt/,
        },
        {
          name: 'a chunk whose zstd frame claims 4 GiB',
          method: 'POST',
          path: up(wid, { 'encoded-size': compressedBlobOf(frameClaiming4GiB()).length }),
          contentType: OCTETS,
          body: compressedBlobOf(frameClaiming4GiB()),
          status: 400,
          message: /exceeds 16777216 bytes/,
        },
        {
          name: 'a chunk that expands beyond 16 MiB',
          method: 'POST',
          path: up(wid, { 'encoded-size': compressedBlobOf(bomb).length }),
          contentType: OCTETS,
          body: compressedBlobOf(bomb),
          status: 400,
          message: /exceeds 16777216 bytes/,
        },
        {
          name: "a digest that is not hex ('../..')",
          method: 'POST',
          path: up(wid, { digest: '../..' }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /'digest'/,
        },
        {
          name: 'a digest one character short',
          method: 'POST',
          path: up(wid, { digest: hex(digest).slice(1) }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /'digest'/,
        },
        {
          name: 'a chunk for a writer that does not exist',
          method: 'POST',
          path: up(200),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /dynamic writer '200' not registered/,
        },
        {
          name: 'a chunk for a fixed writer sent as dynamic',
          method: 'POST',
          path: up(fwid),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /not registered/,
        },
        {
          name: 'an encoded-size beyond the maximum',
          method: 'POST',
          path: up(wid, { 'encoded-size': 64 * 1024 * 1024 }),
          contentType: OCTETS,
          body: blob,
          status: 400,
          message: /'encoded-size'/,
        },
        {
          name: "archive name '../x.didx'",
          method: 'POST',
          path: `/dynamic_index?${qs({ 'archive-name': '../x.didx' })}`,
          status: 400,
          message: /archive.name/,
        },
        {
          name: "archive name 'a/b.didx'",
          method: 'POST',
          path: `/dynamic_index?${qs({ 'archive-name': 'a/b.didx' })}`,
          status: 400,
          message: /archive.name/,
        },
        {
          name: "archive name '..'",
          method: 'POST',
          path: `/fixed_index?${qs({ 'archive-name': '..', size: 1 })}`,
          status: 400,
          message: /archive.name/,
        },
        {
          name: 'archive name with a NUL',
          method: 'POST',
          path: `/dynamic_index?${qs({ 'archive-name': 'a\u0000.didx' })}`,
          status: 400,
          message: /archive.name/,
        },
        {
          name: 'an overlong archive name',
          method: 'POST',
          path: `/dynamic_index?${qs({ 'archive-name': `${'n'.repeat(300)}.didx` })}`,
          status: 400,
          message: /archive.name/,
        },
        {
          name: 'a fixed index of size 0',
          method: 'POST',
          path: `/fixed_index?${qs({ 'archive-name': 'z.fidx', size: 0 })}`,
          status: 400,
          message: /'size'/,
        },
        {
          name: "blob name '../index.json.blob'",
          method: 'POST',
          path: blobCall('../index.json.blob', notJson),
          contentType: OCTETS,
          body: notJson,
          status: 400,
          message: /file-name/,
        },
        {
          name: 'a blob with a wrong CRC',
          method: 'POST',
          path: blobCall('notes.blob', badCrcBlob),
          contentType: OCTETS,
          body: badCrcBlob,
          status: 400,
          message: /CRC mismatch/,
        },
        {
          name: 'a truncated blob',
          method: 'POST',
          path: blobCall('notes.blob', badCrcBlob, badCrcBlob.length + 5),
          contentType: OCTETS,
          body: badCrcBlob,
          status: 400,
          message: /unexpected length/,
        },
        {
          name: 'a manifest that is not JSON',
          method: 'POST',
          path: blobCall('index.json.blob', notJson),
          contentType: OCTETS,
          body: notJson,
          status: 400,
          message: /unable to parse JSON/,
        },
        {
          name: 'a manifest that is not a blob',
          method: 'POST',
          path: blobCall('index.json.blob', notABlob),
          contentType: OCTETS,
          body: notABlob,
          status: 400,
          message: /wrong magic number/,
        },
        {
          name: 'appending a chunk the session does not know',
          method: 'PUT',
          path: `/dynamic_index?${qs({ wid, 'digest-list': hex(digest), 'offset-list': 0 })}`,
          status: 400,
          message: /no such chunk/,
        },
        {
          name: 'appending with offset and digest lists of different lengths',
          method: 'PUT',
          path: `/dynamic_index?wid=${wid}&digest-list=${hex(chunkDigest)}&offset-list=0&offset-list=5`,
          status: 400,
          message: /offset list has wrong length/,
        },
        {
          name: 'appending a digest that is not hex',
          method: 'PUT',
          path: `/dynamic_index?${qs({ wid, 'digest-list': 'zz', 'offset-list': 0 })}`,
          status: 400,
          message: /'digest-list\.0': must match pattern/,
        },
        {
          name: 'closing a dynamic index with a wrong chunk count',
          method: 'POST',
          path: `/dynamic_close?${qs({ wid: cwid, 'chunk-count': 2, size: chunkData.length, csum: '0'.repeat(64) })}`,
          status: 400,
          message: /unexpected chunk count \(1 != 2\)/,
        },
        {
          name: 'closing a dynamic index with a wrong size',
          method: 'POST',
          path: `/dynamic_close?${qs({ wid: cwid, 'chunk-count': 1, size: 7, csum: '0'.repeat(64) })}`,
          status: 400,
          message: /unexpected file size/,
        },
        {
          name: 'closing a dynamic index with a csum that is not hex',
          method: 'POST',
          path: `/dynamic_close?${qs({ wid: cwid, 'chunk-count': 1, size: chunkData.length, csum: 'xyz' })}`,
          status: 400,
          message: /^csum: expected 64 hex characters, got 'xyz'$/,
        },
        {
          name: 'closing a fixed index with a wrong chunk count',
          method: 'POST',
          path: `/fixed_close?${qs({ wid: fwid, 'chunk-count': 3, size: 100, csum: '0'.repeat(64) })}`,
          status: 400,
          message: /wrong number of chunk/,
        },
        {
          name: 'finishing with writers open',
          method: 'POST',
          path: '/finish',
          status: 400,
          message: /open index writer/,
        },
      ];
      for (const row of rows) await tc.test(row.name, () => runProtocolRow(s, row));

      await tc.test('closing a dynamic index with a wrong checksum', async () => {
        const res = await h2Call(
          s,
          'POST',
          `/dynamic_close?${qs({ wid: cwid, 'chunk-count': 1, size: chunkData.length, csum: '0'.repeat(64) })}`,
        );
        assert.equal(res.status, 400, res.body.toString());
        assert.match(res.body.toString(), /close failed - got unexpected checksum/);
        // the index is not renamed into place (PBS renames it first, then complains)
        assert.ok(![...disk().keys()].some((k) => k.endsWith('/c.didx')), 'no c.didx in the snapshot');
      });
    } finally {
      s.destroy();
    }
    assertSameDisk(beforeSession, await diskAfterSession('hostile'), 'the refused backup session');
  });
});

describe('calls inside a reader session', () => {
  test('every row', async (tc) => {
    const s = await session('reader', { 'backup-id': 'fixture', 'backup-time': T0 });
    try {
      const dl = (name: string) => `/download?${qs({ 'file-name': name })}`;
      const rows: ProtocolRow[] = [
        {
          name: "file-name '../../../../etc/user.cfg'",
          method: 'GET',
          path: dl('../../../../etc/user.cfg'),
          status: 400,
          message: /file-name/,
        },
        { name: "file-name '..'", method: 'GET', path: dl('..'), status: 400, message: /file-name/ },
        {
          name: "file-name '%2e%2e/notes.blob'",
          method: 'GET',
          path: '/download?file-name=%252e%252e%252Fnotes.blob',
          status: 400,
          message: /file-name/,
        },
        {
          name: 'file-name with a NUL',
          method: 'GET',
          path: dl('notes.blob\u0000'),
          status: 400,
          message: /file-name/,
        },
        {
          name: 'an overlong file-name',
          method: 'GET',
          path: dl(`${'f'.repeat(300)}.blob`),
          status: 400,
          message: /file-name/,
        },
        {
          name: 'a file the snapshot does not have',
          method: 'GET',
          path: dl('missing.blob'),
          status: 404,
          message: /missing\.blob.* not found/,
        },
        {
          name: 'a chunk digest that is not hex',
          method: 'GET',
          path: '/chunk?digest=..%2F..',
          status: 400,
          message: /'digest'/,
        },
        {
          name: 'a chunk no downloaded index references',
          method: 'GET',
          path: `/chunk?digest=${hex(chunkDigest)}`,
          status: 401,
          message: /download chunk .* not allowed/,
        },
        { name: 'an unknown call', method: 'GET', path: '/../../etc', status: 404, message: /not found/ },
      ];
      for (const row of rows) await tc.test(row.name, () => runProtocolRow(s, row));
    } finally {
      await s.close();
    }
  });
});

test('a chunk upload with a truncated zstd frame does not break the next, valid, upload', async () => {
  const chunk = Buffer.alloc(30_000, 'next upload ');
  const digest = sha(chunk);
  chunkDirFor(digest);
  const s = await session('backup', { 'backup-id': 'after-corrupt', 'backup-time': T0 });
  try {
    const wid = (await ok(h2Call(s, 'POST', `/dynamic_index?${qs({ 'archive-name': 'a.didx' })}`))) as number;
    const frame = Buffer.from(zstdCompress(chunk, { contentSizeFlag: false }));
    const truncated = compressedBlobOf(frame.subarray(0, frame.length - 4));
    const upload = (body: Buffer) =>
      h2Call(
        s,
        'POST',
        `/dynamic_chunk?${qs({ wid, digest: hex(digest), size: chunk.length, 'encoded-size': body.length })}`,
        { contentType: OCTETS, body },
      );
    const refused = await upload(truncated);
    assert.equal(refused.status, 400);
    assert.match(refused.body.toString(), /zstd data is corrupt \(truncated frame\)/);
    const good = encodeBlob(chunk);
    const accepted = await upload(good);
    assert.equal(accepted.status, 200, accepted.body.toString());
  } finally {
    s.destroy();
  }
  await diskAfterSession('after-corrupt');
});

const DAMAGED = `backup-type=host&backup-id=damaged&backup-time=${T0}`;

apiTable('a snapshot whose files are damaged on disk', () => [
  {
    name: 'the snapshot list still answers',
    method: 'GET',
    path: '/admin/datastore/store1/snapshots?backup-id=damaged',
    status: 200,
  },
  {
    // damaged stored data is the server's problem, not the request's: CORRUPT_DATA, 500
    name: 'the truncated index, decoded',
    method: 'GET',
    path: `/admin/datastore/store1/download-decoded?${DAMAGED}&file-name=root.pxar.didx`,
    status: 500,
    message:
      /^'root\.pxar\.didx' of snapshot 'host\/damaged\/.*': body of 20 bytes is not a whole number of 40-byte entries$/,
  },
  {
    name: 'the blob with a wrong CRC, decoded',
    method: 'GET',
    path: `/admin/datastore/store1/download-decoded?${DAMAGED}&file-name=notes.blob`,
    status: 500,
    message: /^'notes\.blob' of snapshot 'host\/damaged\/.*': CRC mismatch/,
  },
]);

describe('a reader session on a snapshot whose files are damaged on disk', () => {
  test('every row', async (tc) => {
    const s = await session('reader', { 'backup-id': 'damaged', 'backup-time': T0 });
    try {
      const rows: ProtocolRow[] = [
        {
          name: 'the truncated index is refused, not served',
          method: 'GET',
          path: '/download?file-name=root.pxar.didx',
          status: 400,
          message: /root\.pxar\.didx: body of 20 bytes is not a whole number of 40-byte entries$/,
        },
        {
          // as PBS: a blob is sent as stored, the client checks its CRC
          name: 'the blob with a wrong CRC is sent as stored',
          method: 'GET',
          path: '/download?file-name=notes.blob',
          status: 200,
          message: /fixture note/,
        },
      ];
      for (const row of rows) await tc.test(row.name, () => runProtocolRow(s, row));
    } finally {
      await s.close();
    }
  });
});
