/**
 * A real one-node Ceph cluster for the S3 tests: one monitor, one OSD on memstore and a RADOS
 * Gateway on a loopback port, all under a temp dir, with an S3 user made by `radosgw-admin`.
 * Debian's Ceph 16.2 packages (`ceph-mon`, `ceph-osd`, `radosgw`, `ceph-common`; `.ci/run`
 * installs them). No mock S3 server stands in for it (issue 16).
 *
 * `npm test` starts one cluster for the whole run when a selected file sits under `test/s3/`
 * (scripts/test.mjs runs this file with `--serve`) and passes it on in STOWAGE_TEST_S3_*; a file
 * run on its own starts its own through `testS3Target()`.
 *
 * Why these settings: memstore starts in a second and needs no disk setup; cephx everywhere
 * because Ceph 16's radosgw does not get past the monitor with `auth ... = none`; size 1 pools and
 * no pg autoscaler so that one OSD is a healthy cluster; no mgr (nothing here needs one).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { killWithProcess } from './service-lifetime.js';

/** Where the tests find the object store, and as whom they talk to it. */
export interface S3TestTarget {
  /** Plain http on loopback, for the backend tests. */
  endpoint: string;
  /** The same gateway over https with a self-signed certificate, as an operator configures it. */
  httpsPort: number;
  /** SHA-256 fingerprint of that certificate (`aa:bb:...`), PBS's `fingerprint`. */
  fingerprint: string;
  accessKey: string;
  secretKey: string;
  region: string;
  /**
   * The cluster's temp dir (ceph.conf, keyring, certificate), when it is the test cluster:
   * `startTestGateway` starts a gateway of the test's own on it. Absent for another S3 store.
   */
  cephDir?: string;
}

export interface CephCluster extends S3TestTarget {
  /** The temp dir with ceph.conf, the daemons' data and their logs. */
  dir: string;
  /** Milliseconds from the first command to the gateway answering. */
  startupMs: number;
  /** Stop the daemons and remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Synchronous last resort for `process.on('exit')`: SIGKILL and remove the dir. */
  killSync(): void;
}

export const S3_TEST_ENV = {
  endpoint: 'STOWAGE_TEST_S3_ENDPOINT',
  accessKey: 'STOWAGE_TEST_S3_ACCESS_KEY',
  secretKey: 'STOWAGE_TEST_S3_SECRET_KEY',
  httpsPort: 'STOWAGE_TEST_S3_HTTPS_PORT',
  fingerprint: 'STOWAGE_TEST_S3_FINGERPRINT',
  cephDir: 'STOWAGE_TEST_S3_CEPH_DIR',
} as const;

/** RGW's default zonegroup answers to any region name; the SDK wants one. */
const REGION = 'us-east-1';
const STARTUP_TIMEOUT_MS = 90_000;
const DAEMON_BINARIES = [
  'openssl',
  'ceph-mon',
  'ceph-osd',
  'radosgw',
  'radosgw-admin',
  'ceph',
  'ceph-authtool',
  'monmaptool',
];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function missingBinaries(): string[] {
  return DAEMON_BINARIES.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
}

function tail(file: string, lines = 25): string {
  if (!existsSync(file)) return `(${file} does not exist)`;
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

class CephStartError extends Error {}

/** Start the cluster; rejects with the tails of the daemons' logs when a step fails. */
export async function startCephCluster(): Promise<CephCluster> {
  const missing = missingBinaries();
  if (missing.length > 0) {
    throw new CephStartError(
      `the S3 tests need a Ceph cluster, but ${missing.join(', ')} is not installed ` +
        `(Debian: apt-get install ceph-mon ceph-osd radosgw ceph-common; .ci/run does it)`,
    );
  }
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'stowage-ceph-'));
  const conf = join(dir, 'ceph.conf');
  const children: ChildProcess[] = [];
  let stopped = false;

  const killSync = () => {
    if (stopped) return;
    stopped = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const stop = async () => {
    if (stopped) return;
    const exits = children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map(
        (c) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
            // waited for now: an unref'd child's exit would not keep the loop alive until it comes
            c.ref();
            c.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      );
    // radosgw first: it holds connections to the OSD and monitor and exits fastest that way
    await Promise.all(exits.reverse());
    killSync();
  };

  const run = (cmd: string, args: string[], what: string): string => {
    const res = spawnSync(cmd, ['-c', conf, ...args], { encoding: 'utf8', timeout: 60_000 });
    if (res.status !== 0) {
      throw new CephStartError(
        `${what} failed (${cmd} ${args.join(' ')}: exit ${res.status ?? res.signal}):\n${res.stderr}${res.stdout}`,
      );
    }
    return res.stdout;
  };
  const daemon = (cmd: string, args: string[], name: string) => {
    const out = openSync(join(dir, `${name}.out`), 'a');
    // -f: stay in the foreground, so the daemon is our child and stops with us
    const child = spawn(cmd, ['-f', '-c', conf, ...args], { stdio: ['ignore', out, out] });
    closeSync(out);
    // the daemons must not keep a test process alive: it stops them on exit (testS3Target)
    child.unref();
    children.push(child);
    return child;
  };

  try {
    const [monPort, rgwPort, httpsPort] = [await freePort(), await freePort(), await freePort()];
    // a self-signed certificate for the https frontend, as an operator's own RGW would have
    const pem = join(dir, 'rgw.pem');
    const req = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'rgw.key'),
        '-out',
        join(dir, 'rgw.crt'),
      ],
      { encoding: 'utf8' },
    );
    if (req.status !== 0)
      throw new CephStartError(`openssl could not make the gateway's certificate: ${req.stderr}`);
    const crt = readFileSync(join(dir, 'rgw.crt'), 'utf8');
    writeFileSync(pem, crt + readFileSync(join(dir, 'rgw.key'), 'utf8'));
    const fingerprint = new X509Certificate(crt).fingerprint256.toLowerCase();
    const fsid = randomUUID();
    for (const sub of ['mon', 'osd/0', 'run', 'rgw']) mkdirSync(join(dir, sub), { recursive: true });
    writeFileSync(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        `mon host = v2:127.0.0.1:${monPort}`,
        'ms bind msgr1 = false',
        `keyring = ${dir}/keyring`,
        `run dir = ${dir}/run`,
        `admin socket = ${dir}/run/$name.$pid.asok`,
        `log file = ${dir}/$name.log`,
        `pid file = ${dir}/run/$name.pid`,
        `mon data = ${dir}/mon/$id`,
        `osd data = ${dir}/osd/$id`,
        // a memstore OSD: RAM only (capped at 1 GiB), nothing to format, starts in a second
        'osd objectstore = memstore',
        'memstore device bytes = 1073741824',
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'mon allow pool size one = true',
        'mon warn on pool no redundancy = false',
        'osd pool default pg autoscale mode = off',
        'osd pool default pg num = 8',
        'osd pool default pgp num = 8',
        'osd crush chooseleaf type = 0',
        'mon max pg per osd = 1000',
        // the monitor batches changes for 1 s by default; every pool radosgw creates waits for it
        'paxos propose interval = 0.01',
        'paxos min wait = 0.001',
        // the host's disk is shared with everything else: a fuller disk must not stop the monitor
        'mon data avail warn = 1',
        'mon data avail crit = 0',
        'auth allow insecure global id reclaim = false',
        // fail in seconds, not in the default five minutes, when a daemon cannot reach the monitor
        'client mount timeout = 20',
        'rados mon op timeout = 20',
        `rgw frontends = beast endpoint=127.0.0.1:${rgwPort} ssl_endpoint=127.0.0.1:${httpsPort} ssl_certificate=${pem}`,
        `rgw data = ${dir}/rgw`,
        '',
      ].join('\n'),
    );
    const keyring = join(dir, 'keyring');
    const entities: [string, string[]][] = [
      ['mon.', ['--cap', 'mon', 'allow *']],
      ['client.admin', ['--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *']],
      ['osd.0', ['--cap', 'mon', 'allow profile osd', '--cap', 'osd', 'allow *']],
      ['client.rgw.a', ['--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']],
    ];
    entities.forEach(([name, caps], i) => {
      const create = i === 0 ? ['--create-keyring'] : [];
      const res = spawnSync('ceph-authtool', [...create, keyring, '--gen-key', '-n', name, ...caps], {
        encoding: 'utf8',
      });
      if (res.status !== 0) throw new CephStartError(`ceph-authtool for ${name} failed: ${res.stderr}`);
    });
    const monmap = join(dir, 'monmap');
    const mm = spawnSync(
      'monmaptool',
      ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, monmap],
      {
        encoding: 'utf8',
      },
    );
    if (mm.status !== 0) throw new CephStartError(`monmaptool failed: ${mm.stderr}`);
    // mkfs imports every key of the keyring into the monitor's auth database
    run('ceph-mon', ['--mkfs', '-i', 'a', '--monmap', monmap], 'creating the monitor');
    daemon('ceph-mon', ['-i', 'a'], 'mon.a');

    const osdUuid = randomUUID();
    const id = run('ceph', ['--connect-timeout', '20', 'osd', 'new', osdUuid], 'registering the OSD').trim();
    if (id !== '0') throw new CephStartError(`expected OSD id 0, the monitor gave '${id}'`);
    run('ceph-osd', ['-i', '0', '--mkfs', '--osd-uuid', osdUuid], 'creating the OSD');
    daemon('ceph-osd', ['-i', '0'], 'osd.0');
    daemon('radosgw', ['-n', 'client.rgw.a'], 'client.rgw.a');

    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitForGateway(endpoint, children, started);

    const accessKey = `STOWAGE${randomBytes(6).toString('hex').toUpperCase()}`;
    const secretKey = randomBytes(24).toString('base64url');
    run(
      'radosgw-admin',
      [
        'user',
        'create',
        '--uid=stowage-test',
        '--display-name=Stowage tests',
        `--access-key=${accessKey}`,
        `--secret-key=${secretKey}`,
      ],
      'creating the S3 user',
    );
    return {
      endpoint,
      httpsPort,
      fingerprint,
      accessKey,
      secretKey,
      region: REGION,
      dir,
      cephDir: dir,
      startupMs: Date.now() - started,
      stop,
      killSync,
    };
  } catch (err) {
    const logs = ['mon.a', 'osd.0', 'client.rgw.a']
      .map(
        (n) =>
          `--- ${n}.log (last lines) ---\n${tail(join(dir, `${n}.log`))}\n--- ${n}.out ---\n${tail(join(dir, `${n}.out`), 10)}`,
      )
      .join('\n');
    await stop();
    const msg = err instanceof Error ? err.message : String(err);
    throw new CephStartError(`starting the test Ceph cluster failed: ${msg}\n${logs}`, { cause: err });
  }
}

async function waitForGateway(endpoint: string, children: ChildProcess[], started: number): Promise<void> {
  for (;;) {
    const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null);
    if (dead) throw new CephStartError(`${dead.spawnargs[0]} exited (${dead.exitCode ?? dead.signalCode})`);
    if (Date.now() - started > STARTUP_TIMEOUT_MS) {
      throw new CephStartError(`radosgw did not answer at ${endpoint} within ${STARTUP_TIMEOUT_MS / 1000} s`);
    }
    try {
      const res = await fetch(endpoint, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

let ownCluster: Promise<S3TestTarget> | undefined;

/**
 * The object store of this test run: the one `npm test` started (STOWAGE_TEST_S3_*), or else a
 * cluster of this process's own, started at the first call and stopped when the process exits.
 */
export function testS3Target(): Promise<S3TestTarget> {
  const endpoint = process.env[S3_TEST_ENV.endpoint];
  const accessKey = process.env[S3_TEST_ENV.accessKey];
  const secretKey = process.env[S3_TEST_ENV.secretKey];
  const httpsPort = Number(process.env[S3_TEST_ENV.httpsPort]);
  const fingerprint = process.env[S3_TEST_ENV.fingerprint];
  const cephDir = process.env[S3_TEST_ENV.cephDir] || undefined;
  if (endpoint && accessKey && secretKey && httpsPort && fingerprint) {
    return Promise.resolve({
      endpoint,
      httpsPort,
      fingerprint,
      accessKey,
      secretKey,
      region: REGION,
      cephDir,
    });
  }
  ownCluster ??= startCephCluster().then(killWithProcess);
  return ownCluster;
}

/** A RADOS Gateway of one test's own on the shared cluster, which the test may stop and start. */
export interface TestGateway {
  /** Its https port (the cluster's certificate, so the target's fingerprint). */
  httpsPort: number;
  /** Stop the radosgw process (SIGTERM; SIGKILL after 5 s) and wait until it has exited. */
  stop(): Promise<void>;
  /** Start it again on the same port and wait until it answers. */
  start(): Promise<void>;
}

/**
 * Start a second `radosgw` on the test cluster (`target.cephDir`), https only on a port of its
 * own, serving the same users and buckets: a gateway a test can really stop mid-request and bring
 * back, which the shared one (used by every test file) must never be. Undefined when the target
 * is not the test cluster. Takes a second or two: the gateway's pools exist already.
 */
export async function startTestGateway(target: S3TestTarget): Promise<TestGateway | undefined> {
  const dir = target.cephDir;
  if (!dir) return undefined;
  const httpsPort = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    const out = openSync(join(dir, `client.rgw.test-${httpsPort}.out`), 'a');
    // the shared gateway's name and key; its own log, and its admin socket carries its pid
    child = spawn(
      'radosgw',
      [
        '-f',
        '-c',
        join(dir, 'ceph.conf'),
        '-n',
        'client.rgw.a',
        '--rgw-frontends',
        `beast ssl_endpoint=127.0.0.1:${httpsPort} ssl_certificate=${join(dir, 'rgw.pem')}`,
        '--log-file',
        join(dir, `client.rgw.test-${httpsPort}.log`),
        '--pid-file',
        join(dir, 'run', `rgw-test-${httpsPort}.pid`),
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    child.unref();
    const started = Date.now();
    const exited = child;
    for (;;) {
      if (exited.exitCode !== null || exited.signalCode !== null)
        throw new CephStartError(
          `the test gateway exited: ${tail(join(dir, `client.rgw.test-${httpsPort}.log`))}`,
        );
      if (await answers(httpsPort)) return;
      if (Date.now() - started > STARTUP_TIMEOUT_MS)
        throw new CephStartError(`the test gateway on port ${httpsPort} did not answer`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.ref();
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
    clearTimeout(timer);
  };
  process.once('exit', () => child?.kill('SIGKILL'));
  await start();
  return { httpsPort, stop, start };
}

/** Whether an https server on loopback `port` answers a request (any status). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: '/', rejectUnauthorized: false, timeout: 2_000 },
      (res) => {
        res.resume();
        resolve(true);
      },
    );
    req.once('error', () => resolve(false));
    req.once('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * `node --import tsx test/helpers/ceph-cluster.ts --serve`: start a cluster, print one JSON line
 * with the target (or `{"error": ...}`), and stop it when stdin closes or on SIGTERM/SIGINT.
 */
async function serve(): Promise<void> {
  let cluster: CephCluster;
  try {
    cluster = await startCephCluster();
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + '\n');
    process.exitCode = 1;
    return;
  }
  const { endpoint, httpsPort, fingerprint, accessKey, secretKey, region, dir, startupMs } = cluster;
  process.stdout.write(
    JSON.stringify({ endpoint, httpsPort, fingerprint, accessKey, secretKey, region, dir, startupMs }) + '\n',
  );
  const shutdown = () => void cluster.stop().then(() => process.exit(0));
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  process.once('exit', () => cluster.killSync());
  createInterface({ input: process.stdin }).once('close', shutdown);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--serve')) await serve();
