/**
 * The HTTPS certificate: PBS's `proxy.pem` / `proxy.key` in the config directory, a self-signed
 * RSA 2048 certificate valid 10 years, created with the `openssl` binary on first start. Clients
 * pin its SHA-256 fingerprint (printed as `aa:bb:...`, PBS's lower-case spelling).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ERR_TLS_CERT_CREATE } from '../errors.js';
import { withFileLock } from '../sys/file-lock.js';
import { tempPathFor } from '../sys/atomic-file.js';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  /** SHA-256 of the DER certificate, lower-case hex pairs separated by `:`. */
  fingerprint: string;
  /** True when this call created the certificate. */
  created: boolean;
}

export function certFingerprint(certPem: Buffer | string): string {
  return new X509Certificate(certPem).fingerprint256.toLowerCase();
}

/** Load `<configDir>/proxy.pem` and `proxy.key`, generating them first if missing. */
export async function ensureCertificate(configDir: string, cn = hostname()): Promise<TlsMaterial> {
  const certPath = join(configDir, 'proxy.pem');
  const keyPath = join(configDir, 'proxy.key');
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  let created = false;
  await withFileLock(join(configDir, '.proxy.lck'), () => {
    if (existsSync(certPath) && existsSync(keyPath)) return;
    const tmpKey = tempPathFor(keyPath);
    const tmpCert = tempPathFor(certPath);
    const safeCn = cn.replace(/[^A-Za-z0-9.-]/g, '') || 'localhost';
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '3650',
          '-sha256',
          '-subj',
          `/CN=${safeCn}`,
          '-addext',
          `subjectAltName=DNS:${safeCn},DNS:localhost,IP:127.0.0.1,IP:::1`,
          '-keyout',
          tmpKey,
          '-out',
          tmpCert,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      throw ERR_TLS_CERT_CREATE(stderr || (err as Error).message);
    }
    chmodSync(tmpKey, 0o600);
    renameSync(tmpKey, keyPath);
    renameSync(tmpCert, certPath);
    created = true;
  });
  const cert = readFileSync(certPath);
  return { key: readFileSync(keyPath), cert, fingerprint: certFingerprint(cert), created };
}
