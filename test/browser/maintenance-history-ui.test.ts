/**
 * The maintenance history on a datastore's "Options & maintenance" page, in a real browser
 * against a real HTTPS server: an operator sets read-only with a message in the dialog, the drain
 * shows with its duration, the operator clears the mode, and the list shows all three, newest
 * first, with who, from → to and the message.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { browserSkipReason, Harness, screenshot } from './harness.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

const STORE = 'store1';

async function saveMode(page: Page, label: string, message?: string): Promise<void> {
  await page.getByRole('button', { name: 'Edit maintenance' }).click();
  const dialog = page.getByRole('dialog', { name: `Maintenance mode of ${STORE}` });
  await dialog.getByLabel(label).check();
  if (message !== undefined) await dialog.getByLabel(/^Message/).fill(message);
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.waitFor({ state: 'detached' });
}

describe('maintenance history', { skip }, () => {
  const h = new Harness();

  before(async () => {
    await h.start();
    await h.createDatastore(STORE);
  });
  after(async () => {
    await h.stop();
  });

  test('setting and clearing a mode shows in the history with the drain, newest first', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.goto(`${h.server.url}/#/datastore/${STORE}/options`);
      const history = page.locator('section.maintenance-history');
      await history.getByText('No maintenance changes recorded yet.').waitFor();

      await saveMode(page, 'Read-only', 'disk swap');
      const rows = page.locator('[data-testid="history-table"] tbody tr');
      const row = (event: string) => page.locator(`[data-testid="history-table"] tr[data-event="${event}"]`);
      // nothing runs on the store: the server records the drain by itself within seconds
      await row('drained').waitFor({ timeout: 15_000 });
      await saveMode(page, 'None');
      await row('mode-cleared').waitFor({ timeout: 15_000 });

      const cells = await rows.evaluateAll((trs) =>
        trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')),
      );
      assert.equal(cells.length, 3);
      assert.deepEqual(
        cells.map((c) => c.slice(1, 5)),
        [
          ['Mode cleared', 'read-only → none', 'root@pam', 'disk swap'],
          ['Drained', 'none → read-only', 'operator', 'disk swap'],
          ['Mode set', 'none → read-only', 'root@pam', 'disk swap'],
        ],
      );
      assert.match(cells[1]![5]!, /^\d+\.\d\d s$/);
      assert.match(cells[0]![0]!, /^(\d{4}-\d\d-\d\d )?\d\d:\d\d$/); // local time (of day, today)
      await screenshot(page, 'maintenance-history');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
