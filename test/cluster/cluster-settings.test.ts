/**
 * `stowage server --cluster …` options (issue 17): what each spelling means, and that every bad
 * value is one line naming the option and a non-zero exit, before anything is started.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterSettingsFromOptions, defaultNodeName } from '../../src/cluster/cluster-settings.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';

describe('cluster settings from the server options', () => {
  test('endpoints, prefix, node and lease TTL; https when TLS files are given', () => {
    assert.equal(clusterSettingsFromOptions({}), undefined);
    assert.deepEqual(clusterSettingsFromOptions({ cluster: 'etcd://10.0.0.1:2379,etcd-b,[::1]:2381' }), {
      endpoints: ['http://10.0.0.1:2379', 'http://etcd-b:2379', 'http://[::1]:2381'],
      prefix: '/stowage/',
      node: defaultNodeName(),
      leaseTtlSeconds: 10,
    });
    const dir = mkdtempSync(join(tmpdir(), 'stowage-cluster-tls-'));
    try {
      const ca = join(dir, 'ca.pem');
      writeFileSync(ca, 'not checked here');
      assert.deepEqual(
        clusterSettingsFromOptions({
          cluster: 'etcd://e1:2379/prod/backup',
          node: 'pbs-2',
          clusterCa: ca,
          clusterLeaseTtl: '3',
        }),
        {
          endpoints: ['https://e1:2379'],
          prefix: '/prod/backup/',
          node: 'pbs-2',
          leaseTtlSeconds: 3,
          tls: { ca },
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bad values name the option', () => {
    const refused: Array<[Parameters<typeof clusterSettingsFromOptions>[0], RegExp]> = [
      [{ cluster: 'http://e1:2379' }, /^--cluster: 'http:\/\/e1:2379' is not etcd:\/\//],
      [{ cluster: 'etcd://e1:0' }, /^--cluster: .* invalid port/],
      [{ cluster: 'etcd://e 1:2379' }, /^--cluster: .* no valid host/],
      [{ cluster: 'etcd://e1/a b' }, /^--cluster: .* invalid key prefix/],
      [{ cluster: 'etcd://e1', node: 'a/b' }, /^--node: 'a\/b' is not a node name/],
      [{ cluster: 'etcd://e1', clusterLeaseTtl: '1' }, /^--cluster-lease-ttl: '1'/],
      [{ cluster: 'etcd://e1', clusterLeaseTtl: '2.5' }, /^--cluster-lease-ttl: '2.5'/],
      [{ cluster: 'etcd://e1', clusterCa: '/nonexistent/ca.pem' }, /^--cluster-ca: cannot read/],
      [{ cluster: 'etcd://e1', clusterCert: '/etc/hostname' }, /^--cluster-cert and --cluster-key/],
      [{ node: 'pbs-1' }, /^--node: only used in cluster mode/],
    ];
    for (const [opts, message] of refused) {
      assert.throws(() => clusterSettingsFromOptions(opts), { status: 400, message }, JSON.stringify(opts));
    }
  });

  test('stowage server refuses a bad value with one line and a non-zero exit, flag or environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stowage-cluster-cli-'));
    try {
      const env = { STOWAGE_DATA_DIR: dir };
      const flag = await runCli(
        STOWAGE_BIN,
        ['server', '--cluster', 'etcd://e1', '--cluster-lease-ttl', 'x'],
        env,
      );
      assert.notEqual(flag.code, 0);
      assert.equal(
        flag.stderr,
        "error: --cluster-lease-ttl: 'x' is not a whole number of seconds from 2 to 3600\n",
      );
      const fromEnv = await runCli(STOWAGE_BIN, ['server'], { ...env, STOWAGE_CLUSTER: 'etcd:/e1' });
      assert.notEqual(fromEnv.code, 0);
      assert.equal(
        fromEnv.stderr,
        "error: --cluster: 'etcd:/e1' is not etcd://HOST:PORT[,HOST:PORT…][/PREFIX]\n",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
