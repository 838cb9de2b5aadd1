/**
 * The S3 endpoint calls that talk to the store, over HTTPS against Ceph's RADOS Gateway on https
 * with a self-signed certificate, configured as an operator would (`config/s3` with the pinned
 * fingerprint): `admin/s3/{id}/check` puts, reads and deletes a test object; `list-buckets`
 * lists what the credentials see; a wrong fingerprint, a wrong secret or a missing bucket are
 * 400s naming the step that failed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { testS3Target, type S3TestTarget } from '../helpers/ceph-cluster.js';
import { createTestBucket, testEndpointConfig, type TestBucket } from '../helpers/s3-test-bucket.js';

let server: TestServer;
let target: S3TestTarget;
let bucket: TestBucket;

before(async () => {
  [server, target, bucket] = await Promise.all([
    startTestServer({ prefix: 'stowage-s3-check-' }),
    testS3Target(),
    createTestBucket('check'),
  ]);
  const created = await server.api('POST', '/config/s3', {
    auth: server.root,
    body: testEndpointConfig(target, 'rgw'),
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
});
after(async () => {
  await server?.close();
});

test('check passes on a reachable bucket and leaves nothing behind; parameters in the query work too', async () => {
  const json = await server.api('PUT', '/admin/s3/rgw/check', {
    auth: server.root,
    body: { bucket: bucket.bucket, 'store-prefix': 'store1' },
  });
  assert.equal(json.status, 200, JSON.stringify(json.body));
  assert.equal(json.body.data, null);
  const query = await server.api('PUT', `/admin/s3/rgw/check?bucket=${bucket.bucket}`, { auth: server.root });
  assert.equal(query.status, 200, JSON.stringify(query.body));
  const left = await bucket.client.send(new ListObjectsV2Command({ Bucket: bucket.bucket }));
  assert.equal(left.KeyCount, 0);
});

test('list-buckets shows the buckets the credentials see', async () => {
  const res = await server.api('GET', '/config/s3/rgw/list-buckets', { auth: server.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.ok((res.body.data as Array<{ name: string }>).some((b) => b.name === bucket.bucket));
});

test('a missing bucket, a wrong secret and a wrong fingerprint fail the step that meets them', async () => {
  const missing = await server.api('PUT', '/admin/s3/rgw/check', {
    auth: server.root,
    body: { bucket: 'no-such-bucket-here' },
  });
  assert.equal(missing.status, 400);
  assert.match(
    String(missing.body.message),
    /^head bucket failed - S3 request failed: HEAD no-such-bucket-here - HTTP 404/,
  );

  const wrongSecret = await server.api('PUT', '/config/s3/rgw', {
    auth: server.root,
    body: { 'secret-key': 'not-the-secret' },
  });
  assert.equal(wrongSecret.status, 200);
  const denied = await server.api('PUT', '/admin/s3/rgw/check', {
    auth: server.root,
    body: { bucket: bucket.bucket },
  });
  assert.equal(denied.status, 400);
  assert.match(String(denied.body.message), /^head bucket failed - .*HTTP 403/);

  await server.api('PUT', '/config/s3/rgw', {
    auth: server.root,
    body: {
      'secret-key': target.secretKey,
      fingerprint: Array.from({ length: 32 }, () => 'ab').join(':'),
    },
  });
  const pinned = await server.api('PUT', '/admin/s3/rgw/check', {
    auth: server.root,
    body: { bucket: bucket.bucket },
  });
  assert.equal(pinned.status, 400);
  assert.match(
    String(pinned.body.message),
    new RegExp(
      `certificate fingerprint ${target.fingerprint} does not match the configured fingerprint ab:ab:`,
    ),
  );
});

test('check needs Sys.Modify and list-buckets Sys.Audit on /', async () => {
  const auditor = await server.addUser('s3check-auditor@pbs', [{ path: '/', role: 'Audit' }]);
  const refused = await server.api('PUT', '/admin/s3/rgw/check', {
    auth: auditor,
    body: { bucket: bucket.bucket },
  });
  assert.equal(refused.status, 403);
  const nobody = await server.addUser('s3check-nobody@pbs');
  assert.equal((await server.api('GET', '/config/s3/rgw/list-buckets', { auth: nobody })).status, 403);
  assert.equal(
    (await server.api('PUT', '/admin/s3/no-such/check', { auth: server.root, body: { bucket: 'abc' } }))
      .status,
    404,
  );
});
