/**
 * File-level restore over HTTPS (PBS `catalog` and `pxar-file-download`): a tree backed up by
 * `stowage-client` as `root.pxar` with its catalog is browsed directory by directory and single
 * files and folders come back (a file as it is, a folder as zip or tar.zst), with parameters in
 * the query, a JSON body or a form body; bad paths, missing privileges and an offline datastore
 * are refused with PBS's envelope, a read-only one still browses.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { linkSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { decompress } from 'zstd-napi';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';
import type { ArchiveEntry } from '../../src/api-types/file-restore.js';
import { unzip } from '../helpers/unzip.js';
import { loginApi, runClient, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;
let access: DatastoreAccess;
let src: string;
let ticket: string;
const TIME = 1_700_000_000;
const SNAP = `backup-type=host&backup-id=files&backup-time=${TIME}`;
const BIG = randomBytes(3 * 1024 * 1024 + 17);

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTPS request to `/api2/json<path>` with a ticket cookie; the body raw. */
function request(
  method: string,
  path: string,
  opts: { ticket?: string; json?: unknown; form?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.ticket ?? ticket) headers.cookie = `PBSAuthCookie=${encodeURIComponent(opts.ticket ?? ticket)}`;
  let body: string | undefined;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] = 'application/json';
  } else if (opts.form !== undefined) {
    body = opts.form;
    headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  const url = new URL(`https://${srv.host}:${srv.port}/api2/json${path}`);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, rejectUnauthorized: false, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const b64 = (p: string) => Buffer.from(p).toString('base64');
const json = (r: Reply) => JSON.parse(r.body.toString()) as { data?: unknown; message?: string };

async function catalog(filepath: string, extra = ''): Promise<ArchiveEntry[]> {
  const res = await request(
    'GET',
    `/admin/datastore/local/catalog?${SNAP}&filepath=${encodeURIComponent(filepath)}${extra}`,
  );
  assert.equal(res.status, 200, res.body.toString());
  return (json(res).data as ArchiveEntry[]).sort((a, b) => a.text.localeCompare(b.text));
}

const download = (filepath: string, extra = '', t?: string) =>
  request(
    'GET',
    `/admin/datastore/local/pxar-file-download?${SNAP}&filepath=${encodeURIComponent(filepath)}${extra}`,
    {
      ticket: t,
    },
  );

before(async () => {
  srv = await startE2eServer('stowage-e2e-file-restore-');
  access = openDatastoreAccess({
    configDir: join(srv.root, 'etc'),
    dataDir: srv.root,
    runDir: join(srv.root, 'run'),
  });
  src = join(srv.root, 'src');
  mkdirSync(join(src, 'etc', 'deep', 'er'), { recursive: true });
  mkdirSync(join(src, 'empty'));
  writeFileSync(join(src, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  writeFileSync(join(src, 'etc', 'deep', 'a.txt'), 'alpha\n');
  writeFileSync(join(src, 'etc', 'deep', 'er', 'b.txt'), 'beta\n');
  writeFileSync(join(src, 'big.bin'), BIG);
  linkSync(join(src, 'big.bin'), join(src, 'big-link.bin'));
  symlinkSync('etc/hosts', join(src, 'hosts-link'));
  const res = await runClient(
    [
      'backup',
      `root.pxar:${src}`,
      '--backup-id',
      'files',
      '--backup-time',
      String(TIME),
      '--chunk-size',
      '64',
    ],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
  ticket = await rootTicket();
});

async function rootTicket(): Promise<string> {
  const res = await request('POST', '/access/ticket', {
    ticket: '',
    json: { username: 'root@pam', password: 'root-secret-1' },
  });
  return (json(res).data as { ticket: string }).ticket;
}

after(async () => {
  access?.close();
  await srv?.stop();
});

test('the snapshot holds the pxar archive and its catalog', async () => {
  const res = await request('GET', `/admin/datastore/local/files?${SNAP}`);
  assert.equal(res.status, 200, res.body.toString());
  const names = (json(res).data as Array<{ filename: string }>).map((f) => f.filename).sort();
  assert.deepEqual(names, ['catalog.pcat1.didx', 'index.json.blob', 'root.pxar.didx']);
});

test('the catalog lists the archives at the top and each directory with types, sizes and mtimes', async () => {
  for (const top of ['root', '/']) {
    assert.deepEqual(await catalog(top), [
      { filepath: b64('/root.pxar.didx'), text: 'root.pxar.didx', type: 'd', leaf: false },
    ]);
  }
  const members = await catalog(b64('/root.pxar.didx'));
  assert.deepEqual(
    members.map((e) => [e.text, e.type, e.leaf]),
    [
      // byte order: big-link.bin ('-') comes first, so it is the file and big.bin the link
      ['big-link.bin', 'f', true],
      ['big.bin', 'h', true],
      ['empty', 'd', false],
      ['etc', 'd', false],
      ['hosts-link', 'l', true],
    ],
  );
  const big = members.find((e) => e.text === 'big-link.bin')!;
  assert.equal(big.size, BIG.length);
  assert.equal(big.mtime, Math.floor(lstatSync(join(src, 'big.bin')).mtimeMs / 1000));
  // the listed paths go back in as they are (PBS: without the leading '/')
  const etc = members.find((e) => e.text === 'etc')!;
  assert.equal(Buffer.from(etc.filepath, 'base64').toString(), 'root.pxar.didx/etc');
  const deep = await catalog(etc.filepath);
  assert.deepEqual(
    deep.map((e) => [e.text, e.type, e.size]),
    [
      ['deep', 'd', undefined],
      ['hosts', 'f', 20],
    ],
  );
});

test('with archive-name the listing comes from the pxar archive itself and agrees with the catalog', async () => {
  const fromPxar = await catalog(b64('/etc/deep'), '&archive-name=root.pxar.didx');
  assert.deepEqual(
    fromPxar.map((e) => [Buffer.from(e.filepath, 'base64').toString(), e.text, e.type, e.size]),
    [
      ['/etc/deep/a.txt', 'a.txt', 'f', 6],
      ['/etc/deep/er', 'er', 'd', undefined],
    ],
  );
  const fromCatalog = await catalog(b64('root.pxar.didx/etc/deep'));
  assert.deepEqual(
    fromCatalog.map((e) => [e.text, e.type, e.size, e.mtime]),
    fromPxar.map((e) => [e.text, e.type, e.size, e.mtime]),
  );
});

test('a file, a hard link and a big file come back byte for byte, parameters in the query, a JSON body or a form body', async () => {
  const hosts = await download(b64('root.pxar.didx/etc/hosts'));
  assert.equal(hosts.status, 200, hosts.body.toString());
  assert.equal(hosts.headers['content-type'], 'application/octet-stream');
  assert.equal(hosts.body.toString(), '127.0.0.1 localhost\n');
  const big = await download(b64('/root.pxar.didx/big-link.bin'));
  assert.ok(big.body.equals(BIG), 'the 3 MiB file spanning many 64 KiB chunks');
  const link = await download(b64('/big.bin'), '&archive-name=root.pxar');
  assert.ok(link.body.equals(BIG), 'a hard link downloads its file');

  const params = {
    'backup-type': 'host',
    'backup-id': 'files',
    'backup-time': TIME,
    filepath: b64('root.pxar.didx/etc/deep/a.txt'),
  };
  const viaJson = await request('GET', '/admin/datastore/local/pxar-file-download', { json: params });
  assert.equal(viaJson.status, 200, viaJson.body.toString());
  assert.equal(viaJson.body.toString(), 'alpha\n');
  const viaForm = await request('GET', '/admin/datastore/local/pxar-file-download', {
    form: new URLSearchParams({ ...params, 'backup-time': String(TIME) }).toString(),
  });
  assert.equal(viaForm.body.toString(), 'alpha\n');
  const viaJsonCatalog = await request('GET', '/admin/datastore/local/catalog', {
    json: { ...params, filepath: 'root' },
  });
  assert.equal((json(viaJsonCatalog).data as ArchiveEntry[])[0]!.text, 'root.pxar.didx');
  const none = await request('GET', '/admin/datastore/local/pxar-file-download');
  assert.equal(none.status, 400);
  assert.match(json(none).message ?? '', /filepath|backup-type/);
});

test('a folder downloads as a zip holding the folder, its files with their modes, and symlinks as links', async () => {
  const res = await download(b64('root.pxar.didx/etc'));
  assert.equal(res.status, 200, res.body.toString());
  const files = await unzip(res.body);
  assert.deepEqual([...files.keys()].sort(), [
    'etc/',
    'etc/deep/',
    'etc/deep/a.txt',
    'etc/deep/er/',
    'etc/deep/er/b.txt',
    'etc/hosts',
  ]);
  assert.equal(files.get('etc/deep/er/b.txt')!.data.toString(), 'beta\n');
  assert.equal(files.get('etc/hosts')!.mode & 0o7777, lstatSync(join(src, 'etc', 'hosts')).mode & 0o7777);

  const whole = await unzip((await download(b64('root.pxar.didx'))).body);
  assert.ok(whole.get('big.bin')!.data.equals(BIG), 'a hard link is a file in the zip');
  const link = whole.get('hosts-link')!;
  assert.equal(link.mode & 0o170000, 0o120000, 'a symlink stays a symlink');
  assert.equal(link.data.toString(), 'etc/hosts');
});

test('tar=1 downloads a folder as tar.zst', async () => {
  const res = await download(b64('root.pxar.didx/etc/deep'), '&tar=1');
  assert.equal(res.status, 200, res.body.toString());
  const extract = tar.extract();
  const seen: Record<string, string> = {};
  const done = (async () => {
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const d of entry) parts.push(d as Buffer);
      seen[`${entry.header.type}:${entry.header.name}`] = Buffer.concat(parts).toString();
    }
  })();
  Readable.from([decompress(res.body)]).pipe(extract);
  await done;
  assert.deepEqual(seen, {
    'directory:deep': '',
    'file:deep/a.txt': 'alpha\n',
    'directory:deep/er': '',
    'file:deep/er/b.txt': 'beta\n',
  });
});

test('bad paths are refused with a message naming what was wrong', async () => {
  const notB64 = await download('%%%');
  assert.equal(notB64.status, 400);
  assert.match(json(notB64).message!, /base64/);
  const missing = await download(b64('root.pxar.didx/etc/nothing'));
  assert.equal(missing.status, 404);
  assert.match(json(missing).message!, /nothing/);
  const up = await download(b64('root.pxar.didx/../../etc/passwd'));
  assert.equal(up.status, 400);
  assert.match(json(up).message!, /'\.\.'/);
  const notPxar = await download(b64('index.json.blob/x'));
  assert.equal(notPxar.status, 400);
  assert.match(json(notPxar).message!, /not a pxar archive/);
  const listFile = await request(
    'GET',
    `/admin/datastore/local/catalog?${SNAP}&filepath=${b64('root.pxar.didx/etc/hosts')}`,
  );
  assert.equal(listFile.status, 400);
  assert.match(json(listFile).message!, /not a directory/);
  const noSnap = await request(
    'GET',
    `/admin/datastore/local/catalog?backup-type=host&backup-id=files&backup-time=${TIME + 1}&filepath=root`,
  );
  assert.equal(noSnap.status, 404);
});

test('a user without Datastore.Read on a group it does not own is refused', async () => {
  const api = await loginApi(srv);
  await api.call('POST', '/access/users', { userid: 'eve@pbs', password: 'eve-secret-1' });
  await api.call('PUT', '/access/acl', {
    path: '/datastore/local',
    role: 'DatastoreBackup',
    'auth-id': 'eve@pbs',
  });
  const login = await request('POST', '/access/ticket', {
    ticket: '',
    json: { username: 'eve@pbs', password: 'eve-secret-1' },
  });
  const eve = (json(login).data as { ticket: string }).ticket;
  const res = await download(b64('root.pxar.didx/etc/hosts'), '', eve);
  assert.equal(res.status, 403);
  assert.match(json(res).message!, /owner check failed/);
  await api.call('PUT', '/access/acl', {
    path: '/datastore/local',
    role: 'DatastoreAudit',
    'auth-id': 'eve@pbs',
  });
  const audit = await request('GET', `/admin/datastore/local/catalog?${SNAP}&filepath=root`, { ticket: eve });
  assert.equal(audit.status, 403, 'Datastore.Audit does not allow reading files');
});

test('read-only maintenance still browses and downloads; offline refuses with the message', async () => {
  await setMaintenanceMode(access, 'local', { type: 'read-only', message: 'disk swap' });
  try {
    assert.equal((await catalog('root')).length, 1);
    assert.equal((await download(b64('root.pxar.didx/etc/hosts'))).status, 200);
    await setMaintenanceMode(access, 'local', { type: 'offline', message: 'moving shelves' });
    const res = await request('GET', `/admin/datastore/local/catalog?${SNAP}&filepath=root`);
    assert.equal(res.status, 503);
    assert.match(json(res).message!, /offline.*moving shelves/);
    const dl = await download(b64('root.pxar.didx/etc/hosts'));
    assert.equal(dl.status, 503);
  } finally {
    await setMaintenanceMode(access, 'local', undefined);
  }
});
