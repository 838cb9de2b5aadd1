/** A fresh bucket on the run's test object store (test/helpers/ceph-cluster.ts), and a client for it. */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client, type S3ClientOptions } from '../../src/s3/s3-client.js';
import { testS3Target, type S3TestTarget } from './ceph-cluster.js';

export interface TestBucket {
  client: S3Client;
  bucket: string;
  /** How to reach the store, as an S3 endpoint configuration would say it. */
  options: S3ClientOptions;
}

/** Create a bucket named `<label>-<random>` (S3 bucket names: 3-63 chars of a-z, 0-9, '-'). */
export async function createTestBucket(label: string): Promise<TestBucket> {
  const target = await testS3Target();
  const options: S3ClientOptions = {
    endpoint: target.endpoint,
    region: target.region,
    accessKey: target.accessKey,
    secretKey: target.secretKey,
    pathStyle: true,
  };
  const client = createS3Client(options);
  const bucket = `${label}-${randomBytes(4).toString('hex')}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return { client, bucket, options };
}

/**
 * The `config/s3` body for the test gateway as an operator configures it: https on loopback with
 * the self-signed certificate's pinned fingerprint, path-style.
 */
export function testEndpointConfig(target: S3TestTarget, id: string): Record<string, unknown> {
  return {
    id,
    endpoint: '127.0.0.1',
    port: target.httpsPort,
    region: target.region,
    'access-key': target.accessKey,
    'secret-key': target.secretKey,
    'path-style': true,
    fingerprint: target.fingerprint,
  };
}
