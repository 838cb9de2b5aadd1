/**
 * The snapshot file browser in a real browser against a real pxar backup: `stowage-client`
 * backs up a small tree with every kind of entry, the operator opens the snapshot's file browser,
 * expands directories down to a file, downloads it and a folder as zip (their contents compared
 * with the source), still browses in read-only maintenance, and sees the server's refusal in the
 * browser when the datastore goes offline.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Download, Locator, Page } from 'playwright-core';
import { bytes } from '../../www/src/format.js';
import { unzip } from '../helpers/unzip.js';
import { runClient } from '../e2e/backup-helpers.js';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

const STORE = 'store1';
const TIME = 1_700_000_000;
const SNAP = `host/files/${new Date(TIME * 1000).toISOString().replace('.000', '')}`;
const REPORT = randomBytes(300 * 1024 + 7);
/** mknod needs root; elsewhere the tree has no device. */
const WITH_DEVICE = process.getuid?.() === 0;

interface Entry {
  text: string;
  type: string;
  filepath: string;
  mtime?: number;
}

describe('web UI: file browser', { skip }, () => {
  const h = new Harness();
  let src: string;
  let socket: Server | undefined;

  before(async () => {
    await h.start();
    await h.createDatastore(STORE);
    src = join(h.dir, 'src');
    mkdirSync(join(src, 'etc', 'app', 'deep'), { recursive: true });
    mkdirSync(join(src, 'data'));
    mkdirSync(join(src, 'run'));
    mkdirSync(join(src, 'var', 'log'), { recursive: true });
    writeFileSync(join(src, 'var', 'log', 'syslog'), 'boot\n');
    writeFileSync(join(src, 'etc', 'hosts'), '127.0.0.1 localhost\n');
    writeFileSync(join(src, 'etc', 'app', 'config.yml'), 'listen: 8080\n');
    writeFileSync(join(src, 'etc', 'app', 'deep', 'notes.txt'), 'deleted yesterday\n');
    writeFileSync(join(src, 'data', 'report.bin'), REPORT);
    // byte order makes report-link.bin ('-' < '.') the file and report.bin the hard link
    linkSync(join(src, 'data', 'report.bin'), join(src, 'data', 'report-link.bin'));
    symlinkSync('etc/hosts', join(src, 'hosts-link'));
    execFileSync('mkfifo', [join(src, 'run', 'queue')]);
    if (WITH_DEVICE) execFileSync('mknod', [join(src, 'run', 'null'), 'c', '1', '3']);
    // a listening socket (closing the server would remove its file)
    socket = createServer();
    await new Promise<void>((r) => socket!.listen(join(src, 'run', 'app.sock'), r));
    const env = h.clientEnv(STORE);
    const pxar = await runClient(
      ['backup', `root.pxar:${src}`, '--backup-id', 'files', '--backup-time', String(TIME)],
      env,
    );
    assert.equal(pxar.code, 0, pxar.stderr);
    // a tar backup has nothing to browse
    const tar = await runClient(
      ['backup', `root.tar:${join(src, 'etc')}`, '--backup-id', 'tarball', '--backup-time', String(TIME)],
      env,
    );
    assert.equal(tar.code, 0, tar.stderr);
  });

  after(async () => {
    await new Promise((r) => (socket ? socket.close(r) : r(undefined)));
    await h.stop();
  });

  const row = (dialog: Locator, path: string) => dialog.locator(`tr[data-path="root.pxar.didx${path}"]`);
  async function expand(dialog: Locator, path: string, name: string): Promise<void> {
    await row(dialog, path)
      .getByRole('button', { name: `Expand ${name}` })
      .click();
    await row(dialog, path)
      .getByRole('button', { name: `Collapse ${name}` })
      .waitFor();
  }
  /** The entries of a directory as the server lists them (for their mtimes). */
  async function listing(path: string): Promise<Entry[]> {
    const filepath = encodeURIComponent(Buffer.from(`root.pxar.didx${path}`).toString('base64'));
    const res = await h.api<Entry[]>(
      'GET',
      `/admin/datastore/${STORE}/catalog?backup-type=host&backup-id=files&backup-time=${TIME}&filepath=${filepath}`,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.data;
  }
  async function downloaded(page: Page, start: () => Promise<void>): Promise<{ name: string; data: Buffer }> {
    const [download] = (await Promise.all([page.waitForEvent('download'), start()])) as [Download, void];
    const path = await download.path();
    return { name: download.suggestedFilename(), data: readFileSync(path) };
  }

  test('an operator browses a snapshot, downloads a file and a folder, and meets an offline datastore', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.getByRole('link', { name: STORE }).click();
      await page.getByRole('link', { name: 'Content' }).click();

      // a tar snapshot offers no file browser; the pxar one does
      await page.getByRole('button', { name: 'host/tarball', exact: true }).click();
      const tarRow = page.getByRole('table', { name: 'Snapshots of host/tarball' }).locator('tbody tr');
      await tarRow.getByRole('button', { name: 'Notes…' }).waitFor();
      assert.equal(await tarRow.getByRole('button', { name: 'File browser' }).count(), 0);
      await page.getByRole('button', { name: 'host/files', exact: true }).click();
      const snapRow = page.locator(`tr[data-snapshot="${SNAP}"]`);
      await snapRow.getByRole('button', { name: 'File browser' }).click();

      const dialog = page.getByRole('dialog', { name: `File browser: ${SNAP}` });
      await row(dialog, '').waitFor();
      assert.equal(await row(dialog, '').getByRole('img').getAttribute('aria-label'), 'folder');

      // expand lazily: folders first, each entry with the icon of its type
      await expand(dialog, '', 'root.pxar.didx');
      const top = dialog.locator('tbody tr');
      assert.deepEqual(await top.evaluateAll((rows) => rows.map((r) => r.getAttribute('data-path'))), [
        'root.pxar.didx',
        'root.pxar.didx/data',
        'root.pxar.didx/etc',
        'root.pxar.didx/run',
        'root.pxar.didx/var',
        'root.pxar.didx/hosts-link',
      ]);
      assert.equal(await row(dialog, '/hosts-link').getByRole('img').getAttribute('aria-label'), 'symlink');
      await expand(dialog, '/etc', 'etc');
      await expand(dialog, '/etc/app', 'app');
      await expand(dialog, '/etc/app/deep', 'deep');
      const notes = row(dialog, '/etc/app/deep/notes.txt');
      assert.equal(await notes.getByRole('img').getAttribute('aria-label'), 'file');

      // size and mtime as the UI shows them elsewhere (the browser's local time)
      const served = (await listing('/etc/app/deep')).find((e) => e.text === 'notes.txt')!;
      assert.equal(served.mtime, Math.floor(statSync(join(src, 'etc/app/deep/notes.txt')).mtimeMs / 1000));
      const shownTime = await page.evaluate((t) => new Date(t * 1000).toLocaleString(), served.mtime!);
      assert.equal(await notes.locator('td.entry-size').innerText(), bytes(18));
      assert.equal(await notes.locator('td.entry-mtime').innerText(), shownTime);

      // a file downloads as itself, under its name
      await notes.getByRole('button', { name: 'notes.txt' }).click();
      const download = dialog.getByRole('button', { name: 'Download', exact: true });
      const file = await downloaded(page, () => download.click());
      assert.equal(file.name, 'notes.txt');
      assert.equal(file.data.toString(), 'deleted yesterday\n');

      // a folder downloads as NAME.zip holding the folder
      await row(dialog, '/etc/app').getByRole('button', { name: 'app', exact: true }).click();
      const zip = await downloaded(page, () =>
        dialog.getByRole('button', { name: 'Download as zip' }).click(),
      );
      assert.equal(zip.name, 'app.zip');
      const members = await unzip(zip.data);
      assert.deepEqual([...members.keys()].sort(), [
        'app/',
        'app/config.yml',
        'app/deep/',
        'app/deep/notes.txt',
      ]);
      assert.equal(members.get('app/config.yml')!.data.toString(), 'listen: 8080\n');
      assert.equal(members.get('app/deep/notes.txt')!.data.toString(), 'deleted yesterday\n');

      // a symlink cannot be downloaded, and the button says why
      await row(dialog, '/hosts-link').getByRole('button', { name: 'hosts-link' }).click();
      assert.equal(await download.isDisabled(), true);
      assert.equal(await download.getAttribute('title'), 'a symlink cannot be downloaded');

      // read-only maintenance still browses and downloads (a hard link comes back as its file)
      const ro = await h.api('PUT', `/config/datastore/${STORE}`, { 'maintenance-mode': 'read-only' });
      assert.equal(ro.status, 200, JSON.stringify(ro.body));
      await expand(dialog, '/data', 'data');
      await expand(dialog, '/run', 'run');
      const types = async (path: string) => row(dialog, path).getByRole('img').getAttribute('aria-label');
      assert.equal(await types('/data/report.bin'), 'hard link');
      assert.equal(await types('/run/queue'), 'FIFO');
      assert.equal(await types('/run/app.sock'), 'socket');
      if (WITH_DEVICE) assert.equal(await types('/run/null'), 'character device');
      await row(dialog, '/data/report.bin').getByRole('button', { name: 'report.bin' }).click();
      const report = await downloaded(page, () => download.click());
      assert.equal(report.name, 'report.bin');
      assert.ok(report.data.equals(REPORT), 'the 300 KiB file through its hard link');
      await row(dialog, '/etc/app/deep/notes.txt').getByRole('button', { name: 'notes.txt' }).click();
      await screenshot(page, 'file-browser');

      // offline: the next listing and download are refused with the server's message, in the dialog
      const off = await h.api('PUT', `/config/datastore/${STORE}`, {
        'maintenance-mode': 'offline,message="moving shelves"',
      });
      assert.equal(off.status, 200, JSON.stringify(off.body));
      const refused = await h.api(
        'GET',
        `/admin/datastore/${STORE}/catalog?backup-type=host&backup-id=files&backup-time=${TIME}&filepath=root`,
      );
      assert.equal(refused.status, 503);
      const message = refused.body.message!;
      assert.match(message, /moving shelves/);
      const alert = dialog.getByRole('alert');
      await row(dialog, '/etc').getByRole('button', { name: 'etc', exact: true }).click();
      let started = false;
      page.once('download', () => (started = true));
      await dialog.getByRole('button', { name: 'Download as zip' }).click();
      await alert.waitFor();
      assert.equal(await alert.innerText(), `Could not download root.pxar.didx/etc: ${message}`);
      assert.equal(started, false, 'no download was started');
      // a folder not listed yet stays closed and says why
      await row(dialog, '/var').getByRole('button', { name: 'Expand var' }).click();
      await alert.getByText('Could not list root.pxar.didx/var').waitFor();
      assert.equal(await alert.innerText(), `Could not list root.pxar.didx/var: ${message}`);
      assert.equal(await row(dialog, '/var/log').count(), 0);
      await screenshot(page, 'file-browser-offline');
      await dialog.getByRole('button', { name: 'Close', exact: true }).last().click();
      await dialog.waitFor({ state: 'detached' });
      // behind it, the content tab gave way to the maintenance panel
      await page.getByTestId('maintenance-panel').getByText('maintenance: moving shelves').waitFor();

      const unexpected = errors.filter(
        (e) => !e.includes('Failed to load resource: the server responded with a status of 503'),
      );
      assert.deepEqual(unexpected, []);
    } finally {
      await context.close();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    }
  });
});
