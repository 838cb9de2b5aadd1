/**
 * The content mirror of an S3 datastore (content-mirror.ts): the backup tree's files as objects
 * `<store>/.cnt/<relative path>` (PBS 4 `S3_CONTENT_PREFIX`), on the chunk backend's S3 client,
 * so its requests count with the chunks' (PBS's per-datastore `S3Statistics`).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  type _Object,
} from '@aws-sdk/client-s3';
import { CorruptDataError } from '../errors.js';
import { s3RequestError } from '../s3/s3-client.js';
import { NAMESPACE_MARKER_NAME, type ContentMirror } from './content-mirror.js';

/** PBS 4's prefix of everything in the bucket that is not a chunk. */
export const S3_CONTENT_PREFIX = '.cnt';
/** DeleteObjects takes at most 1000 keys. */
const DELETE_BATCH = 1000;

export interface S3ContentMirrorOptions {
  s3: S3Client;
  bucket: string;
  storePrefix: string;
  /** The datastore's base directory (the cache) that relative paths start from. */
  basePath: string;
  /** Throws when the backend that owns the client was closed. */
  checkOpen: () => void;
}

export class S3ContentMirror implements ContentMirror {
  private readonly prefix: string;

  constructor(private readonly opts: S3ContentMirrorOptions) {
    this.prefix = `${opts.storePrefix}/${S3_CONTENT_PREFIX}/`;
  }

  private key(relPath: string): string {
    return `${this.prefix}${relPath}`;
  }

  async put(relPath: string, bytes: Uint8Array): Promise<void> {
    this.opts.checkOpen();
    const Key = this.key(relPath);
    try {
      await this.opts.s3.send(
        new PutObjectCommand({
          Bucket: this.opts.bucket,
          Key,
          Body: bytes,
          ContentLength: bytes.length,
          ContentType: 'application/octet-stream',
        }),
      );
    } catch (err) {
      throw s3RequestError(`PUT ${this.opts.bucket}/${Key}`, err);
    }
  }

  async putFile(relPath: string): Promise<void> {
    await this.put(relPath, readFileSync(join(this.opts.basePath, relPath)));
  }

  async delete(relPath: string): Promise<void> {
    this.opts.checkOpen();
    const Key = this.key(relPath);
    try {
      await this.opts.s3.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key }));
    } catch (err) {
      throw s3RequestError(`DELETE ${this.opts.bucket}/${Key}`, err);
    }
  }

  private async *list(prefix: string): AsyncGenerator<_Object> {
    let token: string | undefined;
    do {
      this.opts.checkOpen();
      let page;
      try {
        page = await this.opts.s3.send(
          new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, ContinuationToken: token }),
        );
      } catch (err) {
        throw s3RequestError(`LIST ${this.opts.bucket}/${prefix}`, err);
      }
      yield* page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async deleteDir(relDir: string): Promise<void> {
    // the trailing slash: `host/a` must not take `host/ab` with it
    const prefix = relDir === '' ? this.prefix : `${this.key(relDir)}/`;
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const keys = batch;
      batch = [];
      let res;
      try {
        res = await this.opts.s3.send(
          new DeleteObjectsCommand({
            Bucket: this.opts.bucket,
            Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
          }),
        );
      } catch (err) {
        throw s3RequestError(`DELETE ${keys.length} objects under ${this.opts.bucket}/${prefix}`, err);
      }
      const first = res.Errors?.[0];
      if (first) {
        throw s3RequestError(
          `DELETE ${this.opts.bucket}/${first.Key}`,
          new Error(
            `${res.Errors!.length} of ${keys.length} objects not deleted: ${first.Code} ${first.Message}`,
          ),
        );
      }
    };
    for await (const obj of this.list(prefix)) {
      batch.push(obj.Key!);
      if (batch.length >= DELETE_BATCH) await flush();
    }
    await flush();
  }

  async fetchAll(targetDir: string, log: (line: string) => void): Promise<number> {
    let files = 0;
    for await (const obj of this.list(this.prefix)) {
      const rel = obj.Key!.slice(this.prefix.length);
      // a key is a path under the cache: nothing may climb out of it
      const parts = rel.split('/');
      if (rel === '' || parts.some((p) => p === '' || p === '.' || p === '..')) {
        throw new CorruptDataError(
          `refusing object '${obj.Key}' of bucket '${this.opts.bucket}': not a relative path`,
        );
      }
      const target = join(targetDir, rel);
      mkdirSync(dirname(target), { recursive: true });
      if (parts.at(-1) === NAMESPACE_MARKER_NAME) continue;
      let bytes: Buffer;
      try {
        const res = await this.opts.s3.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: obj.Key }));
        bytes = Buffer.from(await res.Body!.transformToByteArray());
      } catch (err) {
        throw s3RequestError(`GET ${this.opts.bucket}/${obj.Key}`, err);
      }
      writeFileSync(target, bytes, { mode: 0o644 });
      files++;
      log(`fetched ${rel}`);
    }
    return files;
  }
}
