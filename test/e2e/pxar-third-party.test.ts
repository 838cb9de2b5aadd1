/**
 * pxar archives that Stowage's client did not write: the hand-built archives of
 * test/pxar/pbs-fixtures.ts (made byte by byte from PBS's documented format, standing for
 * proxmox-backup-client and third-party PBS clients: a format-1 archive with a legacy entry,
 * xattrs, ACLs, a hard link and a symlink; a split format-2 `.mpxar` + `.ppxar` pair) are
 * uploaded through the backup protocol as those clients do, without a catalog, are browsed and
 * downloaded through the API from their goodbye tables, and are restored by `stowage-client`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { unzip } from '../helpers/unzip.js';
import { buildFixture, buildSplitFixture } from '../pxar/pbs-fixtures.js';
import { loginApi, runClient, startE2eServer, uploadSnapshot, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;
let ticket: string;
const TIME = 1_700_000_000;
const snap = (id: string) => `backup-type=host&backup-id=${id}&backup-time=${TIME}`;

function get(path: string): Promise<{ status: number; body: Buffer }> {
  const url = new URL(`https://${srv.host}:${srv.port}/api2/json${path}`);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        headers: { cookie: `PBSAuthCookie=${encodeURIComponent(ticket)}` },
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const b64 = (p: string) => Buffer.from(p).toString('base64');

before(async () => {
  srv = await startE2eServer('stowage-e2e-pxar-3rd-');
  ticket = await rootTicket();
  await uploadSnapshot(
    srv,
    { store: 'local', id: 'pbs-v1', time: TIME },
    { 'root.pxar.didx': buildFixture() },
  );
  const split = buildSplitFixture();
  await uploadSnapshot(
    srv,
    { store: 'local', id: 'pbs-split', time: TIME },
    { 'root.mpxar.didx': split.meta, 'root.ppxar.didx': split.payload },
  );
});

async function rootTicket(): Promise<string> {
  const api = await loginApi(srv);
  const creds = api.credentials!;
  return creds.kind === 'ticket' ? creds.ticket : '';
}

after(async () => {
  await srv?.stop();
});

interface Entry {
  filepath: string;
  text: string;
  type: string;
  size?: number;
  mtime?: number;
}

test("a PBS client's format-1 archive is listed from its goodbye tables and its files download", async () => {
  const res = await get(
    `/admin/datastore/local/catalog?${snap('pbs-v1')}&filepath=${b64('/')}&archive-name=root.pxar`,
  );
  assert.equal(res.status, 200, res.body.toString());
  const entries = (JSON.parse(res.body.toString()) as { data: Entry[] }).data;
  assert.deepEqual(
    entries.map((e) => [Buffer.from(e.filepath, 'base64').toString(), e.type, e.size, e.mtime]),
    [
      ['/a.txt', 'f', 15, 1_600_000_000],
      ['/dir', 'd', undefined, undefined],
      ['/hl', 'h', undefined, undefined],
      ['/sym', 'l', undefined, undefined],
    ],
  );
  const file = await get(
    `/admin/datastore/local/pxar-file-download?${snap('pbs-v1')}&filepath=${b64('root.pxar.didx/a.txt')}`,
  );
  assert.equal(file.body.toString(), 'hello from pbs\n');
  const link = await get(
    `/admin/datastore/local/pxar-file-download?${snap('pbs-v1')}&filepath=${b64('root.pxar.didx/hl')}`,
  );
  assert.equal(link.body.toString(), 'hello from pbs\n', 'the hard link names a.txt');
  const noCatalog = await get(`/admin/datastore/local/catalog?${snap('pbs-v1')}&filepath=root`);
  assert.equal(noCatalog.status, 404, 'without archive-name the catalog is needed, and there is none');
  assert.match(noCatalog.body.toString(), /catalog\.pcat1\.didx/);
});

test('a split archive (.mpxar + .ppxar) is listed and its files are read from the payload stream', async () => {
  const res = await get(
    `/admin/datastore/local/catalog?${snap('pbs-split')}&filepath=root&archive-name=root.mpxar.didx`,
  );
  assert.equal(res.status, 200, res.body.toString());
  const entries = (JSON.parse(res.body.toString()) as { data: Entry[] }).data;
  assert.deepEqual(
    entries.map((e) => [e.text, e.size]),
    [
      ['f', 3],
      ['g', 4],
    ],
  );
  const g = await get(
    `/admin/datastore/local/pxar-file-download?${snap('pbs-split')}&filepath=${b64('root.mpxar.didx/g')}`,
  );
  assert.equal(g.status, 200, g.body.toString());
  assert.equal(g.body.toString(), 'defg');
});

test("stowage-client restores a PBS client's archive with its metadata, its xattr and ACL included", async () => {
  const target = join(srv.root, 'v1');
  const r = await runClient(
    [
      'restore',
      `host/pbs-v1/${new Date(TIME * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`,
      'root.pxar',
      target,
    ],
    srv.env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(target).sort(), ['a.txt', 'dir', 'hl', 'sym']);
  assert.equal(readFileSync(join(target, 'a.txt'), 'utf8'), 'hello from pbs\n');
  const a = lstatSync(join(target, 'a.txt'));
  assert.equal(a.mode & 0o7777, 0o640);
  assert.equal(Math.floor(a.mtimeMs / 1000), 1_600_000_000);
  assert.equal(lstatSync(join(target, 'hl')).ino, a.ino, 'the hard link is a.txt again');
  assert.equal(readlinkSync(join(target, 'sym')), 'a.txt');
  assert.equal(lstatSync(join(target, 'dir')).mode & 0o7777, 0o750);
  assert.equal(lstatSync(join(target, 'dir', 'f')).size, 0);
  assert.doesNotMatch(r.stderr, /extended attributes|ACL/);
  assert.equal(
    execFileSync('getfattr', ['--only-values', '-n', 'user.origin', 'a.txt'], { cwd: target }).toString(),
    'pbs',
  );
  assert.match(
    execFileSync('getfacl', ['-n', '-p', '-E', 'dir'], { cwd: target }).toString(),
    /user:1001:rwx\ngroup::r-x\nmask::r-x\n/,
  );
});

test('a split archive is restored with its contents read from the payload half', async () => {
  const target = join(srv.root, 'split');
  const r = await runClient(['restore', 'host/pbs-split', 'root.pxar', target], srv.env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(target, 'f'), 'utf8'), 'abc');
  assert.equal(readFileSync(join(target, 'g'), 'utf8'), 'defg');
  assert.equal(Math.floor(lstatSync(join(target, 'g')).mtimeMs / 1000), 102);
});

test('a folder with an entry from before 1970 downloads as a zip (its time clamped), and the server goes on', async () => {
  const res = await get(
    `/admin/datastore/local/pxar-file-download?${snap('pbs-v1')}&filepath=${b64('root.pxar.didx')}`,
  );
  assert.equal(res.status, 200, res.body.toString());
  const files = await unzip(res.body);
  assert.equal(files.get('a.txt')!.data.toString(), 'hello from pbs\n');
  assert.equal(files.get('sym')!.data.toString(), 'a.txt');
  const again = await get(
    `/admin/datastore/local/catalog?${snap('pbs-v1')}&filepath=root&archive-name=root.pxar`,
  );
  assert.equal(again.status, 200, 'the server still answers');
});
