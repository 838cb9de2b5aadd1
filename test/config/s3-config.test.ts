import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { s3EndpointConfig, s3EndpointInfo } from '../../src/config/s3-config.js';

const FP = Array.from({ length: 32 }, (_, i) => (i * 5).toString(16).padStart(2, '0')).join(':');

// as PBS 4 writes it: the flattened S3ClientConfig in its field order, an array property as one
// line per item, the secret last; `future-option` stands for a property a later PBS may add
const PBS_FILE = `s3-endpoint: minio
\tendpoint {{bucket}}.minio.example.com
\tport 9000
\tregion eu-central-1
\tfingerprint ${FP}
\taccess-key MINIOKEY
\tpath-style false
\tput-rate-limit 100
\tprovider-quirks skip-if-none-match-header
\tprovider-quirks delete-objects-via-delete-object
\trate-in 10 MiB
\tfuture-option kept
\tsecret-key minio secret

`;

test("PBS 4's s3.cfg reads with every field, and an unrelated change keeps the rest verbatim", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-s3-cfg-'));
  try {
    writeFileSync(join(dir, 's3.cfg'), PBS_FILE);
    const cfg = s3EndpointConfig(dir);
    const minio = cfg.get('minio')!;
    assert.deepEqual(s3EndpointInfo(minio), {
      id: 'minio',
      endpoint: '{{bucket}}.minio.example.com',
      port: 9000,
      region: 'eu-central-1',
      fingerprint: FP,
      'access-key': 'MINIOKEY',
      'path-style': false,
      'put-rate-limit': 100,
      'provider-quirks': ['skip-if-none-match-header', 'delete-objects-via-delete-object'],
      'rate-in': '10 MiB',
    });
    assert.equal(minio['secret-key'], 'minio secret');
    await cfg.update((endpoints) => {
      endpoints.set('rgw', { id: 'rgw', endpoint: '127.0.0.1', 'access-key': 'A', 'secret-key': 'S' });
    });
    assert.equal(
      readFileSync(join(dir, 's3.cfg'), 'utf8'),
      `${PBS_FILE}s3-endpoint: rgw\n\tendpoint 127.0.0.1\n\taccess-key A\n\tsecret-key S\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
