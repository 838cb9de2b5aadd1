import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { remoteConfig, remoteInfo } from '../../src/config/remote-config.js';
import { StowageError } from '../../src/errors.js';

const FP = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, '0')).join(':');

function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-remote-cfg-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('a remote is written as PBS writes remote.cfg: base64 password, mode 0600, and read back', async () => {
  await withDir(async (dir) => {
    const cfg = remoteConfig(dir);
    await cfg.update((remotes) => {
      remotes.set('offsite', {
        name: 'offsite',
        host: 'pbs2.example.com',
        port: 8007,
        'auth-id': 'sync@pbs!pull',
        password: 'tok-secret',
        fingerprint: FP,
        comment: 'second site',
      });
    });
    assert.equal(
      readFileSync(cfg.path, 'utf8'),
      'remote: offsite\n\thost pbs2.example.com\n\tport 8007\n\tauth-id sync@pbs!pull\n' +
        `\tpassword ${Buffer.from('tok-secret').toString('base64')}\n\tfingerprint ${FP}\n\tcomment second site\n`,
    );
    assert.equal(statSync(cfg.path).mode & 0o777, 0o600);
    const r = cfg.get('offsite')!;
    assert.equal(r.password, 'tok-secret');
    assert.equal('password' in remoteInfo(r), false);
  });
});

test('a file PBS wrote (unknown property, IPv6 host) is read and its unknown property kept on rewrite', async () => {
  await withDir(async (dir) => {
    const cfg = remoteConfig(dir);
    writeFileSync(
      cfg.path,
      `remote: pbs1\n\thost fd00::2\n\tauth-id root@pam\n\tpassword ${Buffer.from('pw').toString('base64')}\n\tfuture-option 1\n`,
    );
    assert.equal(cfg.get('pbs1')?.host, 'fd00::2');
    await cfg.update((remotes) => {
      remotes.get('pbs1')!.comment = 'edited';
    });
    assert.match(readFileSync(cfg.path, 'utf8'), /\tfuture-option 1\n/);
  });
});

test('a bad field is refused naming it, and nothing is written', async () => {
  await withDir(async (dir) => {
    const cfg = remoteConfig(dir);
    for (const [key, value] of [
      ['host', 'bad host'],
      ['port', 70000],
      ['auth-id', 'nobody'],
      ['fingerprint', 'ab:cd'],
    ] as const) {
      await assert.rejects(
        cfg.update((remotes) => {
          remotes.set('r1x', { name: 'r1x', host: 'h', 'auth-id': 'a@pbs', password: 'p', [key]: value });
        }),
        (err: StowageError) => err.status === 400 && err.message.includes(`invalid ${key}`),
        key,
      );
    }
    assert.throws(() => statSync(cfg.path), /ENOENT/);
  });
});
