/**
 * The admin CLI for S3 datastores against a real server process and Ceph's RADOS Gateway, as
 * PBS 4's `proxmox-backup-manager s3 ...`: endpoints are added and checked, an S3 datastore is
 * created with `--backend` and refreshed with `s3-refresh`, each task command printing its log;
 * a bad request is one line on stderr and a non-zero exit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { testS3Target } from '../helpers/ceph-cluster.js';
import { STOWAGE_BIN, runCli } from '../helpers/cli.js';
import { createTestBucket, testEndpointConfig, type TestBucket } from '../helpers/s3-test-bucket.js';
import { startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';

let srv: E2eServer;
let bucket: TestBucket;

before(async () => {
  [srv, bucket] = await Promise.all([startE2eServer('stowage-s3-cli-'), createTestBucket('cli')]);
});

after(async () => {
  await srv?.stop();
  bucket?.client.destroy();
});

const stowage = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  runCli(
    STOWAGE_BIN,
    ['--config-dir', join(srv.root, 'etc'), '--server', `${srv.host}:${srv.port}`, ...args],
    env,
  );

/** A failure as the CLI reports one: a non-zero exit and one line naming what was wrong. */
function assertOneLineError(res: { code: number; stderr: string }, pattern: RegExp) {
  assert.notEqual(res.code, 0);
  const lines = res.stderr.trim().split('\n');
  assert.equal(lines.length, 1, res.stderr);
  assert.match(lines[0]!, pattern);
}

test('an S3 endpoint is created (secret from the environment), listed without its secret and checked with a bucket', async () => {
  const cfg = testEndpointConfig(await testS3Target(), 'rgw');
  const created = await stowage(
    [
      's3',
      'endpoint',
      'create',
      'rgw',
      '--endpoint',
      String(cfg.endpoint),
      '--port',
      String(cfg.port),
      '--access-key',
      String(cfg['access-key']),
      '--path-style',
      '--fingerprint',
      String(cfg.fingerprint),
    ],
    { STOWAGE_S3_SECRET_KEY: String(cfg['secret-key']) },
  );
  assert.equal(created.code, 0, created.stderr);
  const list = await stowage(['s3', 'endpoint', 'list', '--output-format', 'json']);
  assert.equal(list.code, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(
    rows.map((r) => [r.id, r.port, r['secret-key']]),
    [['rgw', cfg.port, undefined]],
  );
  const check = await stowage(['s3', 'check', 'rgw', bucket.bucket]);
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /S3 endpoint 'rgw' and bucket '.*' are usable/);
  assertOneLineError(await stowage(['s3', 'check', 'rgw', 'no-such-bucket-here']), /head bucket failed/);
});

test('datastore create --backend type=s3 and s3-refresh run their tasks and print the task logs', async () => {
  const created = await stowage([
    'datastore',
    'create',
    's3c',
    join(srv.root, 'cache-s3c'),
    '--backend',
    `type=s3,client=rgw,bucket=${bucket.bucket}`,
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /create S3 datastore 's3c' in s3:\/\//);
  assert.match(created.stdout, /in-use marker written for host/);
  const refreshed = await stowage(['datastore', 's3-refresh', 's3c']);
  assert.equal(refreshed.code, 0, refreshed.stderr);
  assert.match(refreshed.stdout, /refreshing the cache of 's3c' from the bucket/);
  assert.match(refreshed.stdout, /fetched 0 files/);
  assertOneLineError(await stowage(['datastore', 's3-refresh', 'local']), /local/);
});
