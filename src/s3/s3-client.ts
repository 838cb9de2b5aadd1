/**
 * The one place Stowage makes an S3 client (`@aws-sdk/client-s3`, no hand-written signing) and
 * turns the SDK's failures into Stowage errors. The chunk backend and the endpoint check use it.
 *
 * Settings chosen for S3-compatible stores other than AWS (Ceph RGW, MinIO, Garage): the SDK's
 * default CRC32 "flexible checksums" with chunked trailers are not understood by every store
 * (Ceph 16's RGW answers them with errors), so checksums are sent only where the API requires
 * one; integrity is ours anyway (every chunk and blob carries a CRC and its digest, §7.2).
 */
import { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { ERR_S3_REQUEST_FAILED } from '../errors.js';

// We pin a version that runs on Node 20 (package.json); its notice that later versions need
// Node 22 would otherwise go to every server log on the first request.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3ClientOptions {
  /** `https://host[:port]` (or `http://` for a loopback test gateway). */
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  /** Path-style addressing (`host/bucket/key`), as most self-hosted stores need. PBS `path-style`. */
  pathStyle: boolean;
}

/**
 * An SDK client for one endpoint. The SDK retries throttling and 5xx answers with backoff
 * (standard mode, 3 attempts, as PBS's `MAX_S3_HTTP_REQUEST_RETRY`).
 */
export function createS3Client(opts: S3ClientOptions): S3Client {
  return new S3Client({
    endpoint: opts.endpoint,
    region: opts.region,
    forcePathStyle: opts.pathStyle,
    credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    retryMode: 'standard',
  });
}

/** The HTTP status of an S3 failure, or undefined for a network error (refused, reset, timeout). */
export function s3Status(err: unknown): number | undefined {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata;
  return meta?.httpStatusCode;
}

/** Whether `err` is the store's answer `status` (e.g. 404, 412), not a failure to reach it. */
export function isS3Status(err: unknown, status: number): boolean {
  return s3Status(err) === status;
}

/**
 * The operator's error for a failed request: what was asked of which store, and what the store
 * (or the network) answered.
 */
export function s3RequestError(what: string, err: unknown): Error {
  const status = s3Status(err);
  const name = err instanceof Error ? err.name : 'Error';
  const detail =
    status === undefined
      ? `${err instanceof Error ? err.message : String(err)}`
      : `HTTP ${status} ${name}${err instanceof Error && err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
  return ERR_S3_REQUEST_FAILED.withOptions({ cause: err }, what, detail);
}

/**
 * An ETag as an `If-Match` header value: without its quotes. Ceph 16's RGW compares the header
 * with the bare hex and answers 412 to the quoted form S3 returns; AWS accepts both.
 */
export function ifMatchValue(etag: string): string {
  return etag.replaceAll('"', '');
}
