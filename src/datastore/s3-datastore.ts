/**
 * What makes a datastore an S3 datastore beyond its chunks (PBS 4 `pbs-datastore/src/datastore.rs`,
 * `src/api2/config/datastore.rs`): every object of the store lives under `<store>/` in the
 * bucket, the `.in-use` marker names the host using it, so a second server does not silently take
 * over a bucket another one writes.
 *
 * The marker's content is PBS's: `{"hostname":"NAME"}`.
 */
import { hostname } from 'node:os';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ERR_S3_BUCKET_IN_USE, ERR_S3_BUCKET_UNREACHABLE } from '../errors.js';
import { createS3Client, isS3Status, s3RequestError, type S3ClientOptions } from '../s3/s3-client.js';

/** PBS `S3_DATASTORE_IN_USE_MARKER`, relative to the store's prefix. */
export const S3_IN_USE_MARKER = '.in-use';

/** Where an S3 datastore's objects are. */
export interface S3StoreLocation {
  client: S3ClientOptions;
  bucket: string;
  /** The datastore's name: every key starts with `<storePrefix>/` (PBS's common prefix). */
  storePrefix: string;
}

async function withClient<T>(loc: S3StoreLocation, fn: (s3: S3Client) => Promise<T>): Promise<T> {
  const client = createS3Client(loc.client);
  try {
    return await fn(client);
  } finally {
    client.destroy();
  }
}

/**
 * Before a datastore is created on `loc` (PBS `create_datastore`): the bucket must answer, and
 * must not hold an `.in-use` marker for the store unless `overwriteInUse` (PBS's
 * `overwrite-in-use`). Both refusals are 400s naming the parameter.
 */
export async function checkS3DatastoreBucket(
  loc: S3StoreLocation,
  opts: { overwriteInUse: boolean },
): Promise<void> {
  await withClient(loc, async (s3) => {
    try {
      await s3.send(new HeadBucketCommand({ Bucket: loc.bucket }));
    } catch (err) {
      throw ERR_S3_BUCKET_UNREACHABLE.withOptions(
        { cause: err },
        s3RequestError(`HEAD ${loc.bucket}`, err).message,
      );
    }
    if (opts.overwriteInUse) return;
    const key = `${loc.storePrefix}/${S3_IN_USE_MARKER}`;
    let text: string;
    try {
      const res = await s3.send(new GetObjectCommand({ Bucket: loc.bucket, Key: key }));
      text = (await res.Body?.transformToString()) ?? '';
    } catch (err) {
      if (isS3Status(err, 404)) return;
      throw ERR_S3_BUCKET_UNREACHABLE.withOptions({ cause: err }, s3RequestError(`GET ${key}`, err).message);
    }
    let host = '';
    try {
      const parsed = JSON.parse(text) as { hostname?: unknown };
      if (typeof parsed.hostname === 'string') host = parsed.hostname;
    } catch {
      // PBS: an unreadable marker still means "in use", by an unknown host
    }
    throw ERR_S3_BUCKET_IN_USE(loc.storePrefix, host);
  });
}

/** Write the `.in-use` marker with this host's name (PBS `do_create_datastore`). */
export async function writeS3InUseMarker(loc: S3StoreLocation): Promise<void> {
  const key = `${loc.storePrefix}/${S3_IN_USE_MARKER}`;
  await withClient(loc, async (s3) => {
    try {
      await s3.send(
        new PutObjectCommand({
          Bucket: loc.bucket,
          Key: key,
          Body: JSON.stringify({ hostname: hostname() }),
          ContentType: 'application/json',
        }),
      );
    } catch (err) {
      throw s3RequestError(`PUT ${loc.bucket}/${key}`, err);
    }
  });
}

/**
 * Remove the `.in-use` marker, so the bucket's store can be reused by another server (PBS does
 * this when a datastore is removed without destroying its data).
 */
export async function removeS3InUseMarker(loc: S3StoreLocation): Promise<void> {
  const key = `${loc.storePrefix}/${S3_IN_USE_MARKER}`;
  await withClient(loc, async (s3) => {
    try {
      await s3.send(new DeleteObjectCommand({ Bucket: loc.bucket, Key: key }));
    } catch (err) {
      throw s3RequestError(`DELETE ${loc.bucket}/${key}`, err);
    }
  });
}
