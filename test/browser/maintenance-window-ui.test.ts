/**
 * The next scheduled maintenance window in the web UI (issue 13), in a real browser against a
 * real HTTPS server: the datastore list and the datastore's own page say "offline maintenance in
 * 40 min: MESSAGE" for a window created through the API, and nothing for a store without one; a
 * window in force shows as a system hold, apart from the operator's mode.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

const MESSAGE = 'firmware update on the array';

describe('maintenance window line', { skip }, () => {
  const h = new Harness();

  before(async () => {
    await h.start();
    await h.createDatastore('store1');
    await h.createDatastore('quiet');
  });
  after(async () => {
    await h.stop();
  });

  test('a window 40 minutes ahead shows on the datastore list and the datastore page', async () => {
    // a daily event 40 min 30 s from now (whole seconds, UTC): the UI rounds up to 41 min at once
    // and counts down to 40 while the test runs
    const start = new Date(Math.ceil(Date.now() / 1000) * 1000 + 40 * 60_000 + 30_000);
    const created = await h.api('POST', '/config/maintenance-window', {
      id: 'firmware',
      store: 'store1',
      schedule: start.toISOString().slice(11, 19),
      duration: '1h',
      type: 'offline',
      message: MESSAGE,
      'drain-before': '10min',
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));

    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      const row = page.locator('tr[data-store="store1"]');
      const line = row.locator('.next-window');
      await line.waitFor();
      assert.match(
        (await line.textContent()) ?? '',
        new RegExp(`^offline maintenance in 4[01] min: ${MESSAGE}$`),
      );
      assert.equal(await page.locator('tr[data-store="quiet"] .next-window').count(), 0);
      await screenshot(page, 'maintenance-window-list');

      await row.getByRole('link', { name: 'store1' }).click();
      const onPage = page.locator('.store-head ~ .next-window');
      await onPage.waitFor();
      assert.match(
        (await onPage.textContent()) ?? '',
        new RegExp(`^offline maintenance in 4[01] min: ${MESSAGE}$`),
      );
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test('a window in force shows as a system hold, apart from the maintenance mode, on the list and the page', async () => {
    await h.createDatastore('held');
    // a daily window that started 30 s ago and lasts an hour: the API puts its hold on at once
    const start = new Date(Math.floor(Date.now() / 1000) * 1000 - 30_000);
    const created = await h.api('POST', '/config/maintenance-window', {
      id: 'inforce',
      store: 'held',
      schedule: start.toISOString().slice(11, 19),
      duration: '1h',
      type: 'read-only',
      message: 'array rebuild',
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const expected =
      /^System hold \(window:inforce\): Read-only — read-only maintenance window: array rebuild$/;

    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      const row = page.locator('tr[data-store="held"]');
      const line = row.locator('.system-hold');
      await line.waitFor();
      assert.match((await line.textContent()) ?? '', expected);
      // the operator's mode is untouched: the Maintenance column says so apart from the hold
      assert.equal(await page.locator('tr[data-store="quiet"] .system-hold').count(), 0);

      await row.getByRole('link', { name: 'held' }).click();
      const onPage = page.locator('.store-head ~ .system-hold');
      await onPage.waitFor();
      assert.match((await onPage.textContent()) ?? '', expected);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
