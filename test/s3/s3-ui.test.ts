/**
 * The datastore page of an S3 datastore in a real browser (Chromium, the built UI, a real server
 * on Ceph's RADOS Gateway): its Summary shows the object store's requests and traffic (PBS 4's
 * S3 statistics), which grow with a backup; a filesystem datastore shows no such panel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { bytes } from '../../www/src/format.js';
import { browserSkipReason, Harness, ROOT_PASSWORD, screenshot } from '../browser/harness.js';
import { uploadSnapshot } from '../e2e/backup-helpers.js';
import { testS3Target } from '../helpers/ceph-cluster.js';
import { createTestBucket, testEndpointConfig, type TestBucket } from '../helpers/s3-test-bucket.js';

const skip = browserSkipReason();
if (skip) console.log(`# skipping browser tests: ${skip}`);

interface S3Statistics {
  uploaded: number;
  downloaded: number;
  get: number;
  put: number;
  head: number;
  delete: number;
  post: number;
}

describe('web UI: an S3 datastore', { skip }, () => {
  const h = new Harness();
  let bucket: TestBucket;

  before(async () => {
    [, bucket] = await Promise.all([h.start(), createTestBucket('ui')]);
    const rgw = await h.api('POST', '/config/s3', testEndpointConfig(await testS3Target(), 'rgw'));
    assert.equal(rgw.status, 200, JSON.stringify(rgw.body));
    await h.createDatastore('s3ui', undefined, { backend: `type=s3,client=rgw,bucket=${bucket.bucket}` });
    await h.createDatastore('plain');
  });

  after(async () => {
    await h.stop();
    bucket?.client.destroy();
  });

  const shown = async (page: Page, term: string) =>
    (await page.getByLabel('S3 traffic').locator(`dt:text-is("${term}") + dd`).textContent())?.trim();

  test('the Summary shows the requests and bytes sent to the bucket, and they grow with a backup', async () => {
    const { context, page, errors } = await h.newPage();
    try {
      await h.login(page);
      await page.goto(`${h.server.url}/#/datastore/s3ui/summary`);
      await page.getByRole('heading', { name: 'Object storage' }).waitFor();
      const uploadedBefore = await shown(page, 'Uploaded');
      const url = new URL(h.server.url);
      await uploadSnapshot(
        { host: url.hostname, port: Number(url.port), fingerprint: h.server.fingerprint },
        { store: 's3ui', id: 'web', time: 1_780_000_000, password: ROOT_PASSWORD },
        { 'data.img.didx': randomBytes(300 * 1024) },
      );
      const stats = (await h.api<{ 's3-statistics': S3Statistics }>('GET', '/admin/datastore/s3ui/status'))
        .body.data['s3-statistics'];
      assert.ok(stats.put > 0 && stats.uploaded > 300 * 1024, JSON.stringify(stats));
      // the page shows what the API counts (reloaded: the panel refreshes itself every 10 s)
      await page.reload();
      await page.getByRole('heading', { name: 'Object storage' }).waitFor();
      assert.notEqual(await shown(page, 'Uploaded'), uploadedBefore);
      assert.equal(await shown(page, 'Uploaded'), bytes(stats.uploaded));
      assert.equal(await shown(page, 'PUT requests'), String(stats.put));
      assert.equal(await shown(page, 'HEAD requests'), String(stats.head));
      await screenshot(page, 'datastore-s3-summary');

      await page.goto(`${h.server.url}/#/datastore/plain/summary`);
      await page.getByRole('heading', { name: 'Garbage collection' }).waitFor();
      assert.equal(await page.getByRole('heading', { name: 'Object storage' }).count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  test('a failing object store shows in the datastore list and on the Summary, naming the endpoint and the error', async () => {
    const target = await testS3Target();
    // the endpoint moved to a port nothing listens on: the next request gets no answer
    const dead = await freePort();
    assert.equal((await h.api('PUT', '/config/s3/rgw', { port: dead })).status, 200);
    const { context, page } = await h.newPage();
    try {
      const url = new URL(h.server.url);
      await assert.rejects(
        uploadSnapshot(
          { host: url.hostname, port: Number(url.port), fingerprint: h.server.fingerprint },
          { store: 's3ui', id: 'web', time: 1_780_000_100, password: ROOT_PASSWORD },
          { 'data.img.didx': randomBytes(64 * 1024) },
        ),
      );
      await h.login(page);
      await page.goto(`${h.server.url}/#/`);
      const marker = page.locator('tr[data-store="s3ui"] [data-testid="s3-endpoint-error"]');
      await marker.waitFor();
      assert.match((await marker.getAttribute('title')) ?? '', /^object store endpoint 'rgw' failing since /);
      assert.equal(await page.locator('tr[data-store="plain"] [data-testid="s3-endpoint-error"]').count(), 0);

      await page.goto(`${h.server.url}/#/datastore/s3ui/summary`);
      const box = page.getByRole('alert').filter({ hasText: 'Endpoint failing' });
      await box.waitFor();
      assert.match((await box.textContent()) ?? '', /object store endpoint 'rgw' failing since .+: .+/);
      await screenshot(page, 'datastore-s3-endpoint-failing');
    } finally {
      await context.close();
      await h.api('PUT', '/config/s3/rgw', { port: target.httpsPort });
    }
  });
});

/** A loopback port nothing listens on (bound, then closed). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
