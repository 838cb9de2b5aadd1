/**
 * `s3.cfg`: the S3 endpoints S3 datastores use, in PBS 4's section-config format
 * (`pbs-config/src/s3.rs`, `proxmox-s3-client` `S3ClientConf`), so a PBS operator can read it:
 *
 *   s3-endpoint: ceph
 *   	endpoint s3.example.com
 *   	port 7480
 *   	region us-east-1
 *   	access-key STOWAGE1
 *   	path-style true
 *   	secret-key ...
 *
 * The secret key is in the file as PBS keeps it, so the file is never world-readable (0640, as
 * PBS's root:backup 0640) and the API never returns the secret. Digest, lock, atomic replace and
 * verbatim unknown properties as the job files (job-config.ts).
 */
import { parseHumanByte } from '../api-types/human-byte.js';
import { BadRequestError } from '../errors.js';
import { JobConfigFile, type JobKind, type SectionEntry } from './job-config.js';
import { FINGERPRINT_REGEX } from './remote-config.js';

/** PBS `ProviderQuirks`: what an S3-compatible store lacks. */
export const PROVIDER_QUIRKS = ['skip-if-none-match-header', 'delete-objects-via-delete-object'] as const;
export type ProviderQuirk = (typeof PROVIDER_QUIRKS)[number];

/** What the API shows of an endpoint (PBS `S3ClientConfigWithoutSecret`). */
export interface S3EndpointInfo extends SectionEntry {
  /** Host name (may hold `{{bucket}}.` and `{{region}}` templates) or IP address; https. */
  endpoint: string;
  port?: number;
  region?: string;
  fingerprint?: string;
  'access-key': string;
  'path-style'?: boolean;
  /** PUT requests per second. */
  'put-rate-limit'?: number;
  'provider-quirks'?: string[];
  'rate-in'?: string;
  'burst-in'?: string;
  'rate-out'?: string;
  'burst-out'?: string;
}

/** An endpoint with its secret (PBS `S3ClientConf`). */
export interface S3EndpointConfig extends S3EndpointInfo {
  'secret-key': string;
}

const DNS_LABEL = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)';
/** PBS `S3_ENDPOINT_REGEX`: a DNS name with optional `{{bucket}}.` and `{{region}}` labels, or an IP. */
const ENDPOINT_REGEX = new RegExp(
  `^(?:(?:\\{\\{bucket\\}\\}\\.)*(?:(?:${DNS_LABEL}|\\{\\{region\\}\\})\\.)*${DNS_LABEL}` +
    '|(?:\\d{1,3}\\.){3}\\d{1,3}|\\[?[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\\]?)$',
);
/** PBS `S3_REGION_REGEX`. */
const REGION_REGEX = /^[_a-z\d][-_a-z\d]+$/;

function bad(key: string, value: unknown, why: string): BadRequestError {
  return new BadRequestError(`invalid ${key} '${String(value)}': ${why}`, { param: key });
}

export const S3_ENDPOINTS: JobKind<S3EndpointConfig> = {
  file: 's3.cfg',
  lock: '.s3.lck',
  sectionType: 's3-endpoint',
  // PBS's order: the flattened S3ClientConfig, then the secret
  props: [
    ['endpoint', 'string'],
    ['port', 'int'],
    ['region', 'string'],
    ['fingerprint', 'string'],
    ['access-key', 'string'],
    ['path-style', 'bool'],
    ['put-rate-limit', 'int'],
    ['provider-quirks', 'list'],
    ['rate-in', 'string'],
    ['burst-in', 'string'],
    ['rate-out', 'string'],
    ['burst-out', 'string'],
    ['secret-key', 'string'],
  ],
  required: ['endpoint', 'access-key', 'secret-key'],
  check(e) {
    if (!ENDPOINT_REGEX.test(e.endpoint) || e.endpoint.length > 255) {
      throw bad(
        'endpoint',
        e.endpoint,
        'must be a host name (with {{bucket}} and {{region}} templates) or an IP address',
      );
    }
    if (e.port !== undefined && e.port > 65535)
      throw bad('port', e.port, 'must be a port number from 1 to 65535');
    if (e.region !== undefined && (!REGION_REGEX.test(e.region) || e.region.length > 32)) {
      throw bad('region', e.region, 'must be 2 to 32 characters of a-z 0-9 _ -');
    }
    if (e.fingerprint !== undefined && !FINGERPRINT_REGEX.test(e.fingerprint)) {
      throw bad(
        'fingerprint',
        e.fingerprint,
        'must be a SHA-256 fingerprint (32 hex bytes separated by colons)',
      );
    }
    for (const q of e['provider-quirks'] ?? []) {
      if (!(PROVIDER_QUIRKS as readonly string[]).includes(q)) {
        throw bad('provider-quirks', q, `must be one of ${PROVIDER_QUIRKS.join(', ')}`);
      }
    }
    for (const key of ['rate-in', 'burst-in', 'rate-out', 'burst-out'] as const) {
      if (e[key] === undefined) continue;
      try {
        parseHumanByte(e[key], key);
      } catch (err) {
        throw bad(key, e[key], (err as Error).message);
      }
    }
  },
};

/** The API's view of an endpoint: everything but the secret and the unknown properties. */
export function s3EndpointInfo(e: S3EndpointConfig): S3EndpointInfo {
  const { 'secret-key': _secret, extra: _extra, ...info } = e;
  return info;
}

export const s3EndpointConfig = (configDir: string) => new JobConfigFile(S3_ENDPOINTS, configDir);
