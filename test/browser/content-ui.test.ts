/**
 * The datastore's Content tab in a real browser against real backups: `stowage-client` backs up
 * a generated tree into two groups, then an operator reads sizes, edits notes, protects a
 * snapshot, meets the server's refusal to delete a protected one, prunes, verifies and deletes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { bytes } from '../../www/src/format.js';
import { makeTree } from '../client/tree-fixture.js';
import { runClient } from '../e2e/backup-helpers.js';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

const STORE = 'store1';
/** Three days of host/web01 backups, and one of host/db01 on the first day. */
const T1 = 1_700_000_000;
const T2 = T1 + 86_400;
const T3 = T2 + 86_400;
const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000', '');
const snap = (id: string, t: number) => `host/${id}/${iso(t)}`;

interface SnapshotItem {
  'backup-id': string;
  'backup-time': number;
  size?: number;
  protected: boolean;
  comment?: string;
  verification?: { state: string };
}

function statusesOtherThan(errors: string[], allowed: number[]): string[] {
  return errors.filter(
    (e) =>
      !allowed.some((s) => e.includes(`Failed to load resource: the server responded with a status of ${s}`)),
  );
}

describe('web UI: datastore content', { skip }, () => {
  const h = new Harness();

  before(async () => {
    await h.start();
    await h.createDatastore(STORE, 'backups made by stowage-client');
    const src = join(h.dir, 'src');
    makeTree(src, { scale: 256 * 1024 });
    const env = h.clientEnv(STORE);
    for (const [id, t] of [
      ['web01', T1],
      ['web01', T2],
      ['web01', T3],
      ['db01', T1],
    ] as const) {
      const res = await runClient(
        ['backup', `root.tar:${src}`, '--backup-id', id, '--backup-time', String(t)],
        env,
      );
      assert.equal(res.code, 0, `backup ${id}@${t}: ${res.stderr}`);
    }
  });

  after(async () => {
    await h.stop();
  });

  async function snapshots(id: string): Promise<SnapshotItem[]> {
    const res = await h.api<SnapshotItem[]>(
      'GET',
      `/admin/datastore/${STORE}/snapshots?backup-type=host&backup-id=${id}`,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.data.sort((a, b) => a['backup-time'] - b['backup-time']);
  }

  const groupButton = (page: Page, id: string) =>
    page.getByRole('button', { name: `host/${id}`, exact: true });
  const snapshotTable = (page: Page, id: string) =>
    page.getByRole('table', { name: `Snapshots of host/${id}` });
  const snapshotRow = (page: Page, id: string, t: number) =>
    snapshotTable(page, id).locator(`tr[data-snapshot="${snap(id, t)}"]`);
  /** The cells of a snapshot row after its time: size, verify state, protected, notes. */
  async function cells(page: Page, id: string, t: number) {
    const [size, verify, prot, notes] = await snapshotRow(page, id, t).locator('td').allInnerTexts();
    return { size, verify, protected: prot, notes };
  }

  test('an operator reads real backups, edits notes, protects, prunes, verifies and deletes snapshots', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.getByRole('link', { name: STORE }).click();
      await page.getByRole('link', { name: 'Content' }).click();

      // both groups, with their snapshot counts and owner (the client's user)
      const web = groupButton(page, 'web01');
      await web.waitFor();
      const groupRow = (id: string) =>
        page.locator('table.groups > tbody > tr', { has: groupButton(page, id) });
      assert.match(await groupRow('web01').innerText(), /host\/web01\s+3\s+.+\s+root@pam/);
      assert.match(await groupRow('db01').innerText(), /host\/db01\s+1\s+.+\s+root@pam/);

      // open a group with the keyboard: its snapshots, newest first, with the server's sizes
      await web.focus();
      await page.keyboard.press('Enter');
      assert.equal(await web.getAttribute('aria-expanded'), 'true');
      await snapshotRow(page, 'web01', T1).waitFor();
      assert.deepEqual(
        await snapshotTable(page, 'web01')
          .locator('tbody tr')
          .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-snapshot'))),
        [snap('web01', T3), snap('web01', T2), snap('web01', T1)],
      );
      for (const s of await snapshots('web01')) {
        assert.ok(s.size !== undefined && s.size > 100 * 1024, `size of ${s['backup-time']}: ${s.size}`);
        const c = await cells(page, 'web01', s['backup-time']);
        assert.equal(c.size, bytes(s.size));
        assert.equal(c.verify, 'not verified');
        assert.equal(c.protected, 'no');
      }

      // notes: the list shows the first line, the server keeps all of it
      await snapshotRow(page, 'web01', T1).getByRole('button', { name: 'Notes…' }).click();
      const notesDialog = page.getByRole('dialog', { name: 'Snapshot notes' });
      await notesDialog.getByLabel(/^Notes for/).fill('before the kernel upgrade\nkept for the audit');
      await notesDialog.getByRole('button', { name: 'Save' }).click();
      await notesDialog.waitFor({ state: 'detached' });
      await snapshotRow(page, 'web01', T1).getByText('before the kernel upgrade').waitFor();
      const notes = await h.api<string>(
        'GET',
        `/admin/datastore/${STORE}/notes?backup-type=host&backup-id=web01&backup-time=${T1}`,
      );
      assert.equal(notes.body.data, 'before the kernel upgrade\nkept for the audit');

      // protect the oldest: after confirming, it cannot be deleted from the UI, and says why
      await snapshotRow(page, 'web01', T1).getByRole('button', { name: 'Protect' }).click();
      const protectDialog = page.getByRole('dialog', { name: 'Protect snapshot' });
      await protectDialog.getByText(snap('web01', T1)).waitFor();
      await protectDialog.getByRole('button', { name: 'Protect' }).click();
      await protectDialog.waitFor({ state: 'detached' });
      await snapshotRow(page, 'web01', T1).getByRole('button', { name: 'Unprotect' }).waitFor();
      assert.equal((await cells(page, 'web01', T1)).protected, 'yes');
      const deleteProtected = snapshotRow(page, 'web01', T1).getByRole('button', { name: 'Delete' });
      assert.equal(await deleteProtected.isDisabled(), true);
      assert.equal(await deleteProtected.getAttribute('title'), 'protected snapshots cannot be deleted');
      assert.equal((await snapshots('web01'))[0]!.protected, true);

      // a snapshot protected by someone else while the page is open: the server refuses the delete
      await groupButton(page, 'db01').click();
      await snapshotRow(page, 'db01', T1).waitFor();
      const other = await h.api('PUT', `/admin/datastore/${STORE}/protected`, {
        'backup-type': 'host',
        'backup-id': 'db01',
        'backup-time': T1,
        protected: true,
      });
      assert.equal(other.status, 200, JSON.stringify(other.body));
      await snapshotRow(page, 'db01', T1).getByRole('button', { name: 'Delete' }).click();
      let confirm = page.getByRole('dialog', { name: 'Delete snapshot' });
      await confirm.getByText(snap('db01', T1)).waitFor();
      // Escape is "no"
      await page.keyboard.press('Escape');
      await confirm.waitFor({ state: 'detached' });
      await snapshotRow(page, 'db01', T1).getByRole('button', { name: 'Delete' }).click();
      await confirm.getByRole('button', { name: 'Delete' }).click();
      const refusal = confirm.getByRole('alert');
      await refusal.waitFor();
      assert.equal(
        await refusal.innerText(),
        `The server refused to delete it: cannot remove protected snapshot '${snap('db01', T1)}'`,
      );
      await confirm.getByRole('button', { name: 'Cancel' }).click();
      await confirm.waitFor({ state: 'detached' });
      // the refusal made the list load again: it now shows what the server has
      await snapshotRow(page, 'db01', T1).getByRole('button', { name: 'Unprotect' }).waitFor();
      assert.equal((await snapshots('db01')).length, 1);

      // prune with keep-last 1: the preview is the confirmation; the protected one stays
      await web.click();
      await snapshotRow(page, 'web01', T2).waitFor();
      await page.getByRole('button', { name: 'Prune host/web01' }).click();
      const prune = page.getByRole('dialog', { name: 'Prune host/web01' });
      await prune.getByLabel('Keep last').fill('1');
      assert.equal(await prune.getByRole('button', { name: /^Prune/ }).isDisabled(), true, 'preview first');
      await prune.getByRole('button', { name: 'Preview' }).click();
      await prune.getByText('1 of 3 snapshots would be removed; this cannot be undone.').waitFor();
      assert.deepEqual(
        (await prune.locator('.prune-preview li').allInnerTexts()).map((l) => l.replace(/^.*: /, '')),
        ['keep', 'remove', 'keep (protected)'],
      );
      await screenshot(page, 'content-prune');
      await prune.getByRole('button', { name: 'Prune (remove 1)' }).click();
      await prune.waitFor({ state: 'detached' });
      // the open snapshot list follows without closing and opening the group again
      await snapshotRow(page, 'web01', T2).waitFor({ state: 'detached' });
      await snapshotRow(page, 'web01', T3).waitFor();
      await snapshotRow(page, 'web01', T1).waitFor();
      assert.deepEqual(
        (await snapshots('web01')).map((s) => s['backup-time']),
        [T1, T3],
      );
      await groupRow('web01').getByRole('cell', { name: '2', exact: true }).waitFor();

      // verify the group: a task, followed until it ends; then the verify state shows
      await page.getByRole('button', { name: 'Verify host/web01' }).click();
      const status = page.getByTestId('verify-status');
      await status.getByText(/Verify of host\/web01: OK/).waitFor({ timeout: 30_000 });
      await snapshotRow(page, 'web01', T3).getByText('ok', { exact: true }).waitFor();
      await snapshotRow(page, 'web01', T1).getByText('ok', { exact: true }).waitFor();
      for (const s of await snapshots('web01')) assert.equal(s.verification?.state, 'ok');
      assert.equal((await snapshots('db01'))[0]!.verification, undefined, 'only the group was verified');
      await screenshot(page, 'content', { fullPage: true });
      // the task's log is one click away
      const taskLink = status.getByRole('link', { name: 'task log' });
      assert.match((await taskLink.getAttribute('href')) ?? '', /^#\/tasks\/UPID%3A/);

      // delete an unprotected snapshot, after confirming
      await snapshotRow(page, 'web01', T3).getByRole('button', { name: 'Delete' }).click();
      confirm = page.getByRole('dialog', { name: 'Delete snapshot' });
      await confirm.getByText(snap('web01', T3)).waitFor();
      await confirm.getByRole('button', { name: 'Delete' }).click();
      await confirm.waitFor({ state: 'detached' });
      await snapshotRow(page, 'web01', T3).waitFor({ state: 'detached' });
      assert.deepEqual(
        (await snapshots('web01')).map((s) => s['backup-time']),
        [T1],
      );

      // on a phone the page itself does not scroll sideways (the tables scroll in their box)
      await page.setViewportSize({ width: 390, height: 844 });
      await snapshotRow(page, 'web01', T1).getByRole('button', { name: 'Notes…' }).scrollIntoViewIfNeeded();
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - window.innerWidth',
      );
      assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px on a phone`);
      await page.setViewportSize({ width: 1366, height: 860 });

      // in read-only maintenance the changes are disabled, with the reason
      const ro = await h.api('PUT', `/config/datastore/${STORE}`, { 'maintenance-mode': 'read-only' });
      assert.equal(ro.status, 200, JSON.stringify(ro.body));
      await page.getByText('Changes are disabled while the datastore is in read-only maintenance').waitFor();
      const verifyButton = page.getByRole('button', { name: 'Verify host/web01' });
      assert.equal(await verifyButton.isDisabled(), true);
      assert.match((await verifyButton.getAttribute('title')) ?? '', /^not possible: read-only maintenance/);

      assert.deepEqual(statusesOtherThan(errors, [409]), []);
      assert.equal(errors.length, 1, `exactly the one refused delete: ${errors.join('\n')}`);
    } finally {
      await context.close();
      await h.api('PUT', `/config/datastore/${STORE}`, { delete: ['maintenance-mode'] });
    }
  });
});
