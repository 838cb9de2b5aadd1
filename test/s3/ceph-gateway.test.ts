/**
 * The test object store is a real Ceph RADOS Gateway, and it answers the requests the S3 chunk
 * backend relies on as S3 specifies them (PBS 4 relies on the same: conditional puts for chunk
 * inserts, batched deletes for GC).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { ifMatchValue, isS3Status } from '../../src/s3/s3-client.js';
import { createTestBucket } from '../helpers/s3-test-bucket.js';

const { client, bucket, options } = await createTestBucket('gateway');

test('the gateway is Ceph RGW and a put with If-None-Match: * refuses to overwrite (412)', async () => {
  // an anonymous GET / is RGW's bucket listing for the anonymous user
  const res = await fetch(options.endpoint);
  assert.match(await res.text(), /ListAllMyBucketsResult/);
  const Key = 'store/.chunks/abcd/first';
  await client.send(
    new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from('one'), IfNoneMatch: '*' }),
  );
  await assert.rejects(
    client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from('two'), IfNoneMatch: '*' })),
    (err) => isS3Status(err, 412),
  );
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
  assert.equal(await got.Body!.transformToString(), 'one');
});

test('a put with If-Match replaces only the version it names', async () => {
  const Key = 'store/.chunks/abcd/replaced';
  const first = await client.send(
    new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from('long version') }),
  );
  await client.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key,
      Body: Buffer.from('short'),
      IfMatch: ifMatchValue(first.ETag!),
    }),
  );
  await assert.rejects(
    client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key,
        Body: Buffer.from('stale'),
        IfMatch: ifMatchValue(first.ETag!),
      }),
    ),
    (err) => isS3Status(err, 412),
  );
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key }));
  assert.equal(head.ContentLength, 5);
});

test('copy, batched delete and a paged listing work', async () => {
  const keys = Array.from({ length: 5 }, (_, i) => `paged/.chunks/0000/${i}`);
  for (const Key of keys)
    await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from(Key) }));
  await client.send(
    new CopyObjectCommand({ Bucket: bucket, Key: `${keys[0]}.0.bad`, CopySource: `${bucket}/${keys[0]}` }),
  );
  const seen: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: 'paged/', MaxKeys: 2, ContinuationToken: token }),
    );
    seen.push(...(page.Contents ?? []).map((o) => o.Key!));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  assert.deepEqual(seen.sort(), [...keys, `${keys[0]}.0.bad`].sort());
  const del = await client.send(
    new DeleteObjectsCommand({
      Bucket: bucket,
      Delete: { Objects: seen.map((Key) => ({ Key })), Quiet: true },
    }),
  );
  assert.deepEqual(del.Errors ?? [], []);
  const after = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'paged/' }));
  assert.equal(after.KeyCount, 0);
});
