/**
 * Removable datastores in the web UI, in a real browser against a real HTTPS server, on an ext4
 * loop device made here: the list marks the datastore "not mounted" (apart from maintenance), its
 * page says so instead of failing; Mount mounts it; Unmount shows what the unmount waits for
 * (the drain line) and ends "not mounted"; a busy disk shows the failure and the reason; a disk
 * that fails while mounted shows as "unavailable" with the failure, without a failing request;
 * Add datastore creates a removable datastore on a second device.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import type { OperationHandle } from '../../src/maintenance/datastore-access.js';
import { makeBareChunkStore } from '../helpers/test-datastore.js';
import {
  cleanupUnder,
  makeLoopDisk,
  mountDisk,
  mountsUnder,
  pullDisk,
  unmount,
} from '../helpers/loop-device.js';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

describe('removable datastore in the UI', { skip }, () => {
  const h = new Harness();
  const mountDir = join(h.dir, 'mnt');

  before(async () => {
    process.env.STOWAGE_DATASTORE_MOUNT_DIR = mountDir;
    await h.start();
    const disk = makeLoopDisk(h.dir, 'usb1');
    const prep = join(h.dir, 'prep');
    mkdirSync(prep);
    mountDisk(disk, prep);
    try {
      makeBareChunkStore(join(prep, 'pbs'));
    } finally {
      unmount(prep);
    }
    await new DatastoreConfigFile(h.paths.configDir).update((stores) => {
      stores.set('usb1', { name: 'usb1', path: 'pbs', 'backing-device': disk.uuid, comment: 'disk A' });
    });
  });
  after(async () => {
    cleanupUnder(h.dir);
    await h.stop();
  });

  test('not mounted in the list and on its page; Mount mounts it; Unmount waits for a restore, then unmounts', async () => {
    const { context, page, errors } = await h.newPage();
    let restore: OperationHandle | undefined;
    try {
      await h.login(page);
      const row = page.locator('tr[data-store="usb1"]');
      await row.locator('[data-testid="not-mounted"]').waitFor();
      assert.equal(await row.locator('.marker').count(), 0, 'not mounted is no maintenance mode');
      await screenshot(page, 'removable-list-not-mounted');

      await row.getByRole('link', { name: 'usb1' }).click();
      await page.locator('[data-testid="not-mounted-panel"]').waitFor();
      await page.getByRole('button', { name: 'Mount' }).click();
      await page.getByRole('button', { name: 'Unmount' }).waitFor({ timeout: 15_000 });
      await page.locator('[data-testid="not-mounted-panel"]').waitFor({ state: 'detached' });
      assert.deepEqual(mountsUnder(h.dir), [join(mountDir, 'usb1')]);

      restore = await h.server.context.datastores.lookupDatastore('usb1', 'read', {
        kind: 'restore',
        detail: 'host/web01',
        authId: 'root@pam',
      });
      await page.getByRole('button', { name: 'Unmount' }).click();
      const drain = page.locator('[data-testid="drain-status"]');
      await drain.waitFor();
      await page.locator('[data-testid="drain-status"]', { hasText: 'host/web01' }).waitFor();
      assert.match(
        (await drain.textContent()) ?? '',
        /1 conflicting operation still running: restore host\/web01/,
      );
      await screenshot(page, 'removable-unmount-waiting');
      await restore.release();
      restore = undefined;
      await page.getByRole('button', { name: 'Mount' }).waitFor({ timeout: 15_000 });
      await page.locator('[data-testid="not-mounted-panel"]').waitFor();
      assert.deepEqual(mountsUnder(h.dir), []);
      assert.deepEqual(errors, []);
    } finally {
      await restore?.release();
      await context.close();
    }
  });

  test('a busy disk: the unmount fails with the reason, the page says how to recover', async () => {
    assert.equal(
      (await h.api('POST', '/admin/datastore/usb1/mount')).status,
      200,
      'mount through the API for this test',
    );
    for (let i = 0; i < 100 && mountsUnder(h.dir).length === 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    const { context, page } = await h.newPage();
    const fd = openSync(join(mountDir, 'usb1', '.lock'), 'r');
    try {
      await h.login(page);
      await page.goto(`${h.server.url}/#/datastore/usb1/summary`);
      await page.getByRole('button', { name: 'Unmount' }).click();
      await page.getByText(/could not be unmounted: .*target is busy/).waitFor({ timeout: 15_000 });
      const panel = page.locator('[data-testid="maintenance-panel"]');
      await panel.waitFor();
      assert.match((await panel.textContent()) ?? '', /unmount failed: target is busy/);
      assert.match((await panel.textContent()) ?? '', /use Unmount again, or clear the maintenance mode/);
      await screenshot(page, 'removable-unmount-busy');
    } finally {
      closeSync(fd);
      await context.close();
    }
  });

  test('a disk that fails while mounted: list and page say unavailable with the reason, no request fails; Unmount takes it away', async () => {
    // the busy unmount above left the mode `unmount` with its reason: clear it, the disk is mounted
    assert.equal(
      (await h.api('PUT', '/config/datastore/usb1', { delete: ['maintenance-mode'] })).status,
      200,
    );
    assert.deepEqual(mountsUnder(h.dir), [join(mountDir, 'usb1')]);
    pullDisk(join(mountDir, 'usb1'));
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      const row = page.locator('tr[data-store="usb1"]');
      const marker = row.locator('[data-testid="unavailable"]');
      await marker.waitFor();
      assert.match((await marker.getAttribute('title')) ?? '', /shut down after a device failure/);
      assert.equal(await row.locator('[data-testid="not-mounted"]').count(), 0);
      await row.getByRole('link', { name: 'usb1' }).click();
      const panel = page.locator('[data-testid="unavailable-panel"]');
      await panel.waitFor();
      assert.match(
        (await panel.textContent()) ?? '',
        /the filesystem on \/dev\/loop\d+ was shut down after a device failure/,
      );
      await page.getByRole('link', { name: 'Content' }).click();
      await panel.waitFor();
      await screenshot(page, 'removable-unavailable');
      await page.getByRole('button', { name: 'Unmount' }).click();
      await page.getByRole('button', { name: 'Mount' }).waitFor({ timeout: 15_000 });
      await page.locator('[data-testid="not-mounted-panel"]').waitFor();
      assert.deepEqual(mountsUnder(h.dir), []);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test('Add datastore creates a removable datastore on a device by its UUID, after checking the fields itself', async () => {
    const disk2 = makeLoopDisk(h.dir, 'usb2');
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.getByRole('button', { name: 'Add datastore' }).click();
      const dialog = page.getByRole('dialog', { name: 'Add datastore' });
      await dialog.locator('#add-ds-name').fill('usb2');
      await dialog.getByRole('switch', { name: /Removable datastore/ }).check();
      await dialog.locator('#add-ds-uuid').fill('not-a-uuid');
      await dialog.locator('#add-ds-path').fill('/backups');
      await dialog.getByRole('button', { name: 'Create' }).click();
      // refused by the form, before any request: the server would say the same with a 400
      await dialog.getByText(/8-4-4-4-12 hex digits/).waitFor();
      await dialog.getByText(/relative to the device's root, without '\.\.'/).waitFor();
      assert.equal(await dialog.getByRole('button', { name: 'Create' }).isDisabled(), true);
      await dialog.locator('#add-ds-uuid').fill(disk2.uuid);
      await dialog.locator('#add-ds-path').fill('backups/store2');
      await dialog.locator('#add-ds-comment').fill('disk B');
      await screenshot(page, 'removable-add-datastore');
      await dialog.getByRole('button', { name: 'Create' }).click();
      await dialog.waitFor({ state: 'detached', timeout: 90_000 });
      const row = page.locator('tr[data-store="usb2"]');
      await row.waitFor();
      assert.match((await row.textContent()) ?? '', /disk B/);
      assert.equal(await row.locator('[data-testid="not-mounted"]').count(), 0, 'created mounted, as PBS');
      assert.ok(mountsUnder(h.dir).includes(join(mountDir, 'usb2')));
      const cfg = (await h.api<Record<string, unknown>>('GET', '/config/datastore/usb2')).body.data;
      assert.deepEqual([cfg.path, cfg['backing-device']], ['backups/store2', disk2.uuid]);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
