/**
 * Cluster mode's settings (issue 17, docs/cluster.md): where the cluster's etcd is, under which
 * key prefix, this server's node name, TLS to etcd and the lease TTL.
 *
 * `stowage server --cluster etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (or STOWAGE_CLUSTER) turns it
 * on. The server then writes the settings to `<config dir>/cluster.json`, and removes that file
 * when it starts without `--cluster`: other processes of the instance that open the datastores
 * themselves (admin CLI commands while no server runs, `--quickstart`) read it, so they use the
 * same etcd and the same configuration as the server instead of the host's datastore.cfg.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BadRequestError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';

export const DEFAULT_CLUSTER_PREFIX = '/stowage/';
export const DEFAULT_LEASE_TTL_SECONDS = 10;
/** etcd refuses to keep a lease shorter than about two seconds alive reliably. */
const MIN_LEASE_TTL_SECONDS = 2;
const DEFAULT_ETCD_PORT = 2379;

export interface ClusterTls {
  /** CA certificate file that signed the etcd members' certificates. */
  ca?: string;
  /** Client certificate and key files, for etcd's `--client-cert-auth`. */
  cert?: string;
  key?: string;
}

export interface ClusterSettings {
  /** Client URLs of the etcd members: `http://HOST:PORT`, `https://` with TLS. */
  endpoints: string[];
  /** Key prefix of the cluster's state, starting and ending with '/'. */
  prefix: string;
  /** This server's name in the cluster (recorded with its operations and locks). */
  node: string;
  leaseTtlSeconds: number;
  tls?: ClusterTls;
}

/** What `stowage server` was given (flags, or their environment variables). */
export interface ClusterOptionValues {
  cluster?: string;
  node?: string;
  clusterCa?: string;
  clusterCert?: string;
  clusterKey?: string;
  clusterLeaseTtl?: string;
}

const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$/;
const PREFIX_SEGMENT_RE = /^[A-Za-z0-9._-]+$/;

/** The host name up to its first dot, as PBS names its node. */
export function defaultNodeName(): string {
  return hostname().split('.')[0] || 'localhost';
}

/**
 * The settings from the server's options, or undefined without `--cluster`. Every bad value is a
 * BadRequestError naming the option (the CLI prints it on one line and exits non-zero).
 */
export function clusterSettingsFromOptions(o: ClusterOptionValues): ClusterSettings | undefined {
  if (o.cluster === undefined || o.cluster === '') {
    const stray = (
      [
        ['--node', o.node],
        ['--cluster-ca', o.clusterCa],
        ['--cluster-cert', o.clusterCert],
        ['--cluster-key', o.clusterKey],
        ['--cluster-lease-ttl', o.clusterLeaseTtl],
      ] as const
    ).find(([, v]) => v !== undefined && v !== '');
    if (stray)
      throw new BadRequestError(`${stray[0]}: only used in cluster mode; give --cluster etcd://… too`);
    return undefined;
  }
  const tls: ClusterTls = {};
  for (const [flag, field, value] of [
    ['--cluster-ca', 'ca', o.clusterCa],
    ['--cluster-cert', 'cert', o.clusterCert],
    ['--cluster-key', 'key', o.clusterKey],
  ] as const) {
    if (value === undefined || value === '') continue;
    try {
      readFileSync(value);
    } catch (err) {
      throw new BadRequestError(
        `${flag}: cannot read '${value}' (${(err as NodeJS.ErrnoException).code ?? err})`,
      );
    }
    tls[field] = value;
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new BadRequestError('--cluster-cert and --cluster-key: give both or neither');
  }
  const useTls = Object.keys(tls).length > 0;
  const { endpoints, prefix } = parseClusterUrl(o.cluster, useTls);
  const node = o.node === undefined || o.node === '' ? defaultNodeName() : o.node;
  if (!NODE_NAME_RE.test(node)) {
    throw new BadRequestError(
      `--node: '${node}' is not a node name (letters, digits, '.', '_', '-', at most 63 characters)`,
    );
  }
  let leaseTtlSeconds = DEFAULT_LEASE_TTL_SECONDS;
  if (o.clusterLeaseTtl !== undefined && o.clusterLeaseTtl !== '') {
    leaseTtlSeconds = Number(o.clusterLeaseTtl);
    if (
      !/^\d+$/.test(o.clusterLeaseTtl) ||
      leaseTtlSeconds < MIN_LEASE_TTL_SECONDS ||
      leaseTtlSeconds > 3600
    ) {
      throw new BadRequestError(
        `--cluster-lease-ttl: '${o.clusterLeaseTtl}' is not a whole number of seconds from ${MIN_LEASE_TTL_SECONDS} to 3600`,
      );
    }
  }
  return { endpoints, prefix, node, leaseTtlSeconds, ...(useTls && { tls }) };
}

/** `etcd://HOST[:PORT][,HOST[:PORT]…][/PREFIX]` → endpoint URLs and the key prefix. */
export function parseClusterUrl(url: string, tls: boolean): { endpoints: string[]; prefix: string } {
  const bad = (why: string) => new BadRequestError(`--cluster: '${url}' ${why}`);
  const m = /^etcd:\/\/([^/]*)(\/.*)?$/.exec(url);
  if (!m) throw bad('is not etcd://HOST:PORT[,HOST:PORT…][/PREFIX]');
  const hosts = m[1]!.split(',');
  const endpoints = hosts.map((hostPort) => {
    const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostPort);
    const host = hp?.[1] ?? '';
    if (!hp || !HOST_RE.test(host)) throw bad(`has no valid host in '${hostPort}'`);
    const port = hp[2] === undefined ? DEFAULT_ETCD_PORT : Number(hp[2]);
    if (port < 1 || port > 65535) throw bad(`has an invalid port in '${hostPort}'`);
    return `${tls ? 'https' : 'http'}://${host}:${port}`;
  });
  let prefix = DEFAULT_CLUSTER_PREFIX;
  const path = m[2];
  if (path !== undefined && path !== '/') {
    const segments = path.split('/').filter((s) => s !== '');
    if (!segments.every((s) => PREFIX_SEGMENT_RE.test(s))) {
      throw bad(`has an invalid key prefix '${path}' (letters, digits, '.', '_', '-' and '/')`);
    }
    prefix = `/${segments.join('/')}/`;
  }
  return { endpoints, prefix };
}

/** `<config dir>/cluster.json`: the instance's cluster settings while it is in cluster mode. */
export function clusterSettingsPath(configDir: string): string {
  return join(configDir, 'cluster.json');
}

/** Record the server's cluster mode for the instance's other processes (undefined: not a cluster). */
export function writeInstanceClusterSettings(configDir: string, settings: ClusterSettings | undefined): void {
  const path = clusterSettingsPath(configDir);
  if (settings === undefined) rmSync(path, { force: true });
  else {
    mkdirSync(configDir, { recursive: true });
    replaceFile(path, JSON.stringify(settings, null, 2) + '\n', { mode: 0o640 });
  }
}

/** The instance's cluster settings as its server last recorded them, or undefined (local mode). */
export function readInstanceClusterSettings(configDir: string): ClusterSettings | undefined {
  let text: string;
  try {
    text = readFileSync(clusterSettingsPath(configDir), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as ClusterSettings;
}

/**
 * The cluster settings a process of this instance uses: `given` when the caller decided (false:
 * no cluster), else as its server last recorded them (`cluster.json`).
 */
export function resolveClusterSettings(
  configDir: string,
  given: ClusterSettings | false | undefined,
): ClusterSettings | false | undefined {
  return given === undefined ? readInstanceClusterSettings(configDir) : given;
}
