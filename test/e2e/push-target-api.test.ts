/**
 * Stowage as the remote of a PBS 4 push sync job (PBS `src/server/push.rs`, `sync.rs`,
 * `pbs-client/src/backup_writer.rs`): the calls a push job makes against its target, replayed
 * over HTTPS with the parameters encoded as PBS's `HttpClient` encodes them (GET and DELETE in the
 * query, POST as a JSON body; inside the backup protocol everything in the query except the
 * JSON body of the append PUT), and the answers checked for what the PBS side parses.
 *
 * The remote user holds what PBS documents for a push target: DatastorePowerUser (Datastore.Backup
 * and Datastore.Prune) on the target namespace. Creating and removing namespaces needs
 * Datastore.Modify on the parent, so that part runs as a second remote user with DatastoreAdmin.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openProtocolSession, type ProtocolSession } from '../../src/client/connection.js';
import { decodeBlob, encodeBlob } from '../../src/datastore/data-blob.js';
import { DynamicIndexReader } from '../../src/datastore/dynamic-index.js';
import { FixedIndexReader } from '../../src/datastore/fixed-index.js';
import { startTestServer, type ApiReply, type Auth, type TestServer } from '../helpers/https-api.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';

let t: TestServer;
let storePath: string;
let pusher: Auth;
let nsAdmin: Auth;
const STORE = 'target';
const TARGET_NS = 'push';
const PUSH_USER = 'push@pbs';
const NS_ADMIN = 'push-admin@pbs';
const DS = `/admin/datastore/${STORE}`;
const T1 = 1717236000; // 2024-06-01T10:00:00Z
const T2 = T1 + 86400;
const T3 = T2 + 86400;
const MiB = 1024 * 1024;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-push-' });
  storePath = await t.addBareDatastore(STORE);
  for (const name of [TARGET_NS, 'elsewhere']) {
    const res = await t.api('POST', `${DS}/namespace`, { auth: t.root, body: { name } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }
  pusher = await t.addUser(PUSH_USER, [
    { path: `/datastore/${STORE}/${TARGET_NS}`, role: 'DatastorePowerUser' },
  ]);
  nsAdmin = await t.addUser(NS_ADMIN, [{ path: `/datastore/${STORE}/${TARGET_NS}`, role: 'DatastoreAdmin' }]);
});

after(async () => {
  await t?.close();
});

// ---- PBS's HTTP client ----------------------------------------------------------------------

/** proxmox-http `json_object_to_query`: strings, numbers and booleans; arrays repeat the key. */
function jsonObjectToQuery(args: Record<string, unknown>): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(args)) {
    for (const v of Array.isArray(value) ? (value as unknown[]) : [value]) {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') q.append(key, String(v));
      else throw new Error(`json_object_to_query: unable to handle ${key}`);
    }
  }
  return q.toString();
}

/**
 * One call as `pbs_client::HttpClient` makes it (`request_builder`): POST with the arguments as a
 * JSON body, every other method with them in the query and an empty form-encoded body.
 */
function pbsCall(
  auth: Auth,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  args?: Record<string, unknown>,
): Promise<ApiReply> {
  if (method === 'POST') return t.api(method, path, { auth, body: args });
  const query = args ? jsonObjectToQuery(args) : '';
  return t.api(method, query ? `${path}?${query}` : path, { auth, form: '' });
}

/** The `data` of a successful call: what `client.get(...)?["data"]` hands to serde. */
async function pbsData(
  auth: Auth,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  args?: Record<string, unknown>,
): Promise<unknown> {
  const res = await pbsCall(auth, method, path, args);
  assert.equal(res.status, 200, `${method} ${path} ${JSON.stringify(args)}: ${JSON.stringify(res.body)}`);
  return res.body.data;
}

// ---- the pbs-api-types PBS deserializes answers into (required fields must be there) -------------

interface GroupListItem {
  'backup-type': string;
  'backup-id': string;
  'last-backup': number;
  'backup-count': number;
  files: string[];
  owner?: string;
}

interface SnapshotListItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  files: Array<{ filename: string; 'crypt-mode'?: string; size?: number }>;
  protected: boolean;
  owner?: string;
  verification?: { state: string; upid: string };
}

interface BackupGroupDeleteStats {
  'removed-groups': number;
  'protected-snapshots': number;
  'removed-snapshots': number;
}

const isInt = (v: unknown) => Number.isSafeInteger(v);

function asGroupList(data: unknown): GroupListItem[] {
  assert.ok(Array.isArray(data));
  for (const g of data as GroupListItem[]) {
    assert.ok(['vm', 'ct', 'host'].includes(g['backup-type']) && typeof g['backup-id'] === 'string');
    assert.ok(isInt(g['last-backup']) && isInt(g['backup-count']), JSON.stringify(g));
    assert.ok(Array.isArray(g.files) && g.files.every((f) => typeof f === 'string'), JSON.stringify(g));
  }
  return data as GroupListItem[];
}

function asSnapshotList(data: unknown): SnapshotListItem[] {
  assert.ok(Array.isArray(data));
  for (const s of data as SnapshotListItem[]) {
    assert.ok(isInt(s['backup-time']) && typeof s['backup-id'] === 'string', JSON.stringify(s));
    assert.ok(Array.isArray(s.files) && s.files.every((f) => typeof f.filename === 'string'));
    assert.equal(typeof s.protected, 'boolean');
  }
  return data as SnapshotListItem[];
}

/** serde with all three fields required, as push.rs reads it when the remote is ≥ 3.2.11. */
function asDeleteStats(data: unknown): BackupGroupDeleteStats {
  const s = data as BackupGroupDeleteStats;
  assert.deepEqual(Object.keys(s).sort(), ['protected-snapshots', 'removed-groups', 'removed-snapshots']);
  assert.ok(Object.values(s).every(isInt), JSON.stringify(s));
  return s;
}

/** `ApiVersion::try_from(ApiVersionInfo)`: major.minor from `version`, `release` a number. */
function apiVersion(info: { version: string; release: string }): [number, number, number] {
  const dot = info.version.indexOf('.');
  assert.ok(dot > 0, `malformed API version ${info.version}`);
  const parts = [info.version.slice(0, dot), info.version.slice(dot + 1), info.release];
  assert.ok(
    parts.every((p) => /^\+?\d+$/.test(p)),
    `u64 parse of ${JSON.stringify(parts)}`,
  );
  return parts.map(Number) as [number, number, number];
}

const atLeast = (v: number[], min: number[]) => {
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i]! > min[i]!;
  return true;
};

// ---- the source side: snapshots as the push job reads them from its local datastore ---------

type Archive = { name: string; blob: Buffer } | { name: string; chunks: Buffer[] };

interface SourceSnapshot {
  time: number;
  archives: Archive[];
  clientLog?: Buffer;
  unprotected?: Record<string, unknown>;
}

interface SourceGroup {
  type: 'vm' | 'ct' | 'host';
  id: string;
  snapshots: SourceSnapshot[];
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const fill = (size: number, text: string) => Buffer.alloc(size, text);
const rfc3339 = (time: number) => new Date(time * 1000).toISOString().replace('.000Z', 'Z');

// ---- the push job ----------------------------------------------------------------------------

interface SnapshotUpload {
  newChunks: number;
  knownChunks: number;
}

interface PushReport {
  pushed: string[];
  uploads: Map<string, SnapshotUpload>;
  removedSnapshots: string[];
  keptProtected: string[];
  groupDeletes: Map<string, BackupGroupDeleteStats>;
  warnings: string[];
}

/** The bare chunk store has `.chunks/0000` only; make the prefix directory a chunk goes into. */
function chunkDir(hex: string): void {
  mkdirSync(join(storePath, '.chunks', hex.slice(0, 4)), { recursive: true });
}

/**
 * An h2 request as `H2Client` sends it: parameters in the query, no body (a POST says
 * form-encoded; node ends a GET stream at once, so it goes without the content type PBS adds).
 */
function h2(
  s: ProtocolSession,
  method: 'GET' | 'POST',
  name: string,
  args: Record<string, string | number>,
): Promise<Buffer> {
  if (method === 'GET') return s.request(method, name, args);
  return s.request(method, name, args, '', 'application/x-www-form-urlencoded');
}

async function h2Data<T>(
  s: ProtocolSession,
  method: 'GET' | 'POST',
  name: string,
  args: Record<string, string | number>,
): Promise<T> {
  return (JSON.parse((await h2(s, method, name, args)).toString()) as { data: T }).data;
}

/**
 * PBS `push_snapshot`: a backup session on the target; with `fetchPrevious` the previous
 * manifest, and for each index the previous index, whose chunks are then only appended by
 * digest (`load_previous_snapshot_known_chunks`, `spawn_push_index_worker`); blobs uploaded as
 * they are; the client log re-wrapped by `upload_blob_from_file`; the manifest rebuilt from the
 * upload statistics with the source's `unprotected` part; finish.
 */
async function pushSnapshot(
  auth: Auth,
  ns: string,
  group: SourceGroup,
  snap: SourceSnapshot,
  fetchPrevious: boolean,
): Promise<SnapshotUpload> {
  const session = await openProtocolSession({
    target: { host: '127.0.0.1', port: Number(new URL(t.server.url).port) },
    policy: { fingerprint: t.server.fingerprint },
    credentials: { kind: 'ticket', ticket: auth.ticket!, csrf: auth.csrf },
    path: '/api2/json/backup',
    protocol: 'proxmox-backup-protocol-v1',
    query: {
      'backup-type': group.type,
      'backup-id': group.id,
      'backup-time': snap.time,
      store: STORE,
      debug: 'false',
      benchmark: 'false',
      ...(ns !== '' && { ns }),
    },
  });
  const upload: SnapshotUpload = { newChunks: 0, knownChunks: 0 };
  try {
    let previous: { files: Array<{ filename: string; csum: string }> } | undefined;
    if (fetchPrevious) {
      const raw = await h2(session, 'GET', 'previous', { 'archive-name': 'index.json.blob' });
      previous = JSON.parse(decodeBlob(raw).toString()) as typeof previous;
    }
    const known = new Set<string>();
    const files: Array<{ filename: string; 'crypt-mode': string; size: number; csum: string }> = [];
    for (const archive of snap.archives) {
      if ('blob' in archive) {
        await session.request(
          'POST',
          'blob',
          { 'encoded-size': archive.blob.length, 'file-name': archive.name },
          archive.blob,
          'application/octet-stream',
        );
        const csum = sha(archive.blob).toString('hex');
        files.push({ filename: archive.name, 'crypt-mode': 'none', size: archive.blob.length, csum });
        continue;
      }
      const fixed = archive.name.endsWith('.fidx');
      const prefix = fixed ? 'fixed' : 'dynamic';
      const prevFile = previous?.files.find((f) => f.filename === archive.name);
      if (prevFile) {
        // download_previous_{fixed,dynamic}_index: checked against the previous manifest
        const raw = await h2(session, 'GET', 'previous', { 'archive-name': archive.name });
        const index = fixed ? FixedIndexReader.fromBuffer(raw) : DynamicIndexReader.fromBuffer(raw);
        assert.equal(index.computeCsum().toString('hex'), prevFile.csum, `previous ${archive.name}`);
        for (let i = 0; i < index.count; i++) known.add(index.digest(i).toString('hex'));
      }
      const size = archive.chunks.reduce((n, c) => n + c.length, 0);
      const wid = await h2Data<number>(session, 'POST', `${prefix}_index`, {
        'archive-name': archive.name,
        ...(fixed && { size }),
      });
      const csum = createHash('sha256');
      const digestList: string[] = [];
      const offsetList: number[] = [];
      let offset = 0;
      for (const chunk of archive.chunks) {
        const digest = sha(chunk);
        const hex = digest.toString('hex');
        if (known.has(hex)) upload.knownChunks++;
        else {
          known.add(hex);
          const encoded = encodeBlob(chunk, { compress: true });
          chunkDir(hex);
          await session.request(
            'POST',
            `${prefix}_chunk`,
            { wid, digest: hex, size: chunk.length, 'encoded-size': encoded.length },
            encoded,
            'application/octet-stream',
          );
          upload.newChunks++;
        }
        digestList.push(hex);
        offsetList.push(offset);
        offset += chunk.length;
        if (!fixed) {
          const end = Buffer.alloc(8);
          end.writeBigUInt64LE(BigInt(offset));
          csum.update(end);
        }
        csum.update(digest);
      }
      // append_chunk_queue: the one PUT with a JSON body
      await session.request(
        'PUT',
        `${prefix}_index`,
        {},
        JSON.stringify({ wid, 'digest-list': digestList, 'offset-list': offsetList }),
        'application/json',
      );
      const indexCsum = csum.digest('hex');
      await h2(session, 'POST', `${prefix}_close`, {
        wid,
        'chunk-count': archive.chunks.length,
        size,
        csum: indexCsum,
      });
      files.push({ filename: archive.name, 'crypt-mode': 'none', size, csum: indexCsum });
    }
    if (snap.clientLog) {
      const wrapped = encodeBlob(snap.clientLog, { compress: true });
      await session.request(
        'POST',
        'blob',
        { 'encoded-size': wrapped.length, 'file-name': 'client.log.blob' },
        wrapped,
        'application/octet-stream',
      );
    }
    const manifest = {
      'backup-type': group.type,
      'backup-id': group.id,
      'backup-time': snap.time,
      files,
      unprotected: snap.unprotected ?? {},
      signature: null,
    };
    const blob = encodeBlob(Buffer.from(JSON.stringify(manifest, null, 2)), { compress: true });
    await session.request(
      'POST',
      'blob',
      { 'encoded-size': blob.length, 'file-name': 'index.json.blob' },
      blob,
      'application/octet-stream',
    );
    await h2(session, 'POST', 'finish', {});
  } finally {
    await session.close();
  }
  return upload;
}

/**
 * PBS `push_namespace` and `push_group` for one namespace: the target's groups (owned ones are
 * those whose owner is the remote user), per group the target's snapshots, the source snapshots
 * newer than the newest one there, then with `removeVanished` the snapshots and owned groups the
 * source no longer has (protected snapshots skipped as the listing marks them).
 */
async function runPush(
  auth: Auth,
  remoteUser: string,
  ns: string,
  source: SourceGroup[],
  opts: { removeVanished?: boolean } = {},
): Promise<PushReport> {
  const report: PushReport = {
    pushed: [],
    uploads: new Map(),
    removedSnapshots: [],
    keptProtected: [],
    groupDeletes: new Map(),
    warnings: [],
  };
  const groups = asGroupList(await pbsData(auth, 'GET', `${DS}/groups`, { ns }));
  const key = (g: { 'backup-type': string; 'backup-id': string }) => `${g['backup-type']}/${g['backup-id']}`;
  const owned = groups.filter((g) => g.owner === remoteUser).map(key);
  const notOwned = new Set(groups.filter((g) => g.owner !== remoteUser).map(key));
  const synced = new Set<string>();
  for (const group of source) {
    const name = `${group.type}/${group.id}`;
    if (notOwned.has(name)) {
      report.warnings.push(
        `Group '${name}' not owned by remote user '${remoteUser}' on target, skipping upload`,
      );
      continue;
    }
    synced.add(name);
    const groupArgs = { 'backup-type': group.type, 'backup-id': group.id, ...(ns !== '' && { ns }) };
    const target = asSnapshotList(await pbsData(auth, 'GET', `${DS}/snapshots`, groupArgs)).sort(
      (a, b) => a['backup-time'] - b['backup-time'],
    );
    const last = target.at(-1)?.['backup-time'] ?? -Infinity;
    let fetchPrevious = target.length > 0;
    for (const snap of [...group.snapshots].sort((a, b) => a.time - b.time)) {
      if (snap.time <= last) continue;
      report.uploads.set(
        `${name}/${rfc3339(snap.time)}`,
        await pushSnapshot(auth, ns, group, snap, fetchPrevious),
      );
      report.pushed.push(`${name}/${rfc3339(snap.time)}`);
      fetchPrevious = true;
    }
    if (!opts.removeVanished) continue;
    const sourceTimes = new Set(group.snapshots.map((s) => s.time));
    for (const snap of target) {
      const snapName = `${name}/${rfc3339(snap['backup-time'])}`;
      if (sourceTimes.has(snap['backup-time'])) continue;
      if (snap.protected) {
        report.keptProtected.push(snapName);
        continue;
      }
      await pbsData(auth, 'DELETE', `${DS}/snapshots`, { ...groupArgs, 'backup-time': snap['backup-time'] });
      report.removedSnapshots.push(snapName);
    }
  }
  if (opts.removeVanished) {
    for (const name of owned.sort()) {
      if (synced.has(name)) continue;
      const [type, id] = name.split('/');
      const stats = asDeleteStats(
        await pbsData(auth, 'DELETE', `${DS}/groups`, {
          'backup-type': type,
          'backup-id': id,
          ns,
          'error-on-protected': false,
        }),
      );
      report.groupDeletes.set(name, stats);
    }
  }
  return report;
}

// ---- the source datastore's contents in two runs of the job -------------------------------

const didx = (label: string, n: number) =>
  Array.from({ length: n }, (_, i) => fill(20_000 + i * 1000, `${label}:${i};`));
const hostSnapshot = (time: number, label: string): SourceSnapshot => ({
  time,
  archives: [
    { name: 'root.pxar.didx', chunks: didx(`root-${label}`, 3) },
    { name: 'catalog.pcat1.didx', chunks: didx(`catalog-${label}`, 1) },
  ],
  clientLog: encodeBlob(Buffer.from(`client log of ${label}\n`)),
});
const VERIFIED = {
  verify_state: { state: 'ok', upid: 'UPID:source:00000001:00000002:00000003:665AF0A0:verify:src:root@pam:' },
};
const vmSnapshot = (time: number, second: string): SourceSnapshot => ({
  time,
  archives: [
    { name: 'qemu-server.conf.blob', blob: encodeBlob(Buffer.from('memory: 2048\ncores: 2\n')) },
    // 4 MiB chunks, as PBS's fixed indexes have them
    { name: 'drive-scsi0.img.fidx', chunks: [fill(4 * MiB, 'a'), fill(4 * MiB, second), fill(MiB, 'c')] },
  ],
  unprotected: { ...VERIFIED, notes: 'web server\nsecond line' },
});

const RUN1: SourceGroup[] = [
  { type: 'host', id: 'keep', snapshots: [hostSnapshot(T1, 'keep1'), hostSnapshot(T2, 'keep2')] },
  { type: 'host', id: 'old', snapshots: [hostSnapshot(T1, 'old1')] },
  { type: 'host', id: 'web1', snapshots: [hostSnapshot(T1, 'web1'), hostSnapshot(T2, 'web2')] },
  { type: 'vm', id: '100', snapshots: [vmSnapshot(T1, 'b')] },
];

/** A day later: vm/100 has a new snapshot, web1 a new one and lost its old ones, keep and old are gone. */
const RUN2: SourceGroup[] = [
  { type: 'host', id: 'web1', snapshots: [hostSnapshot(T3, 'web3')] },
  { type: 'vm', id: '100', snapshots: [vmSnapshot(T1, 'b'), vmSnapshot(T2, 'B')] },
];

// ---- the tests ---------------------------------------------------------------------------------

test('the version check of a PBS 4 push job passes: API 4.2.3, which also turns on error-on-protected and delete statistics', async () => {
  const info = (await pbsData(pusher, 'GET', '/version')) as {
    version: string;
    release: string;
    repoid: string;
  };
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  assert.deepEqual(info, { version: '4.2', release: '3', repoid: `stowage-${pkg.version}` });
  const v = apiVersion(info);
  assert.ok(atLeast(v, [2, 2, 0]), 'push refuses remotes below 2.2');
  assert.ok(atLeast(v, [3, 2, 11]), 'supports_prune_delete_stats');
});

test('the push user lists only the namespaces it holds privileges on; creating one below the target needs Datastore.Modify on the parent', async () => {
  const listed = (await pbsData(pusher, 'GET', `${DS}/namespace`)) as Array<{ ns: string }>;
  assert.deepEqual(listed, [{ ns: TARGET_NS }]);

  // check_or_create_target_namespace: one POST per missing level, parent as a namespace string
  const refused = await pbsCall(pusher, 'POST', `${DS}/namespace`, { name: 'hosts', parent: TARGET_NS });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));

  for (const [name, parent] of [
    ['hosts', TARGET_NS],
    ['deep', `${TARGET_NS}/hosts`],
  ] as const) {
    assert.equal(await pbsData(nsAdmin, 'POST', `${DS}/namespace`, { name, parent }), `${parent}/${name}`);
  }
  const afterCreate = (await pbsData(pusher, 'GET', `${DS}/namespace`)) as Array<{ ns: string }>;
  assert.deepEqual(
    afterCreate.map((i) => i.ns),
    [TARGET_NS, `${TARGET_NS}/hosts`, `${TARGET_NS}/hosts/deep`],
  );
});

test('a first push creates the groups through the backup protocol, owned by the remote user, with the source manifest carried over', async () => {
  const report = await runPush(pusher, PUSH_USER, TARGET_NS, RUN1);
  assert.deepEqual(report.warnings, []);
  assert.equal(report.pushed.length, 6);
  // the first snapshot of a group is pushed without a previous manifest, the second one with it
  assert.deepEqual(report.uploads.get(`host/web1/${rfc3339(T2)}`), { newChunks: 4, knownChunks: 0 });
  assert.deepEqual(report.uploads.get(`vm/100/${rfc3339(T1)}`), { newChunks: 3, knownChunks: 0 });

  const groups = asGroupList(await pbsData(pusher, 'GET', `${DS}/groups`, { ns: TARGET_NS }));
  assert.deepEqual(
    groups.map((g) => [g['backup-type'], g['backup-id'], g['backup-count'], g['last-backup'], g.owner]),
    [
      ['host', 'keep', 2, T2, PUSH_USER],
      ['host', 'old', 1, T1, PUSH_USER],
      ['host', 'web1', 2, T2, PUSH_USER],
      ['vm', '100', 1, T1, PUSH_USER],
    ],
  );
  const [vm] = asSnapshotList(
    await pbsData(pusher, 'GET', `${DS}/snapshots`, {
      'backup-type': 'vm',
      'backup-id': '100',
      ns: TARGET_NS,
    }),
  );
  assert.equal(vm!.verification?.state, 'ok');
  assert.deepEqual(vm!.files.map((f) => f.filename).sort(), [
    'drive-scsi0.img.fidx',
    'index.json.blob',
    'qemu-server.conf.blob',
  ]);
  const web1 = asSnapshotList(
    await pbsData(pusher, 'GET', `${DS}/snapshots`, {
      'backup-type': 'host',
      'backup-id': 'web1',
      ns: TARGET_NS,
    }),
  );
  assert.ok(web1[0]!.files.some((f) => f.filename === 'client.log.blob'));
});

test('a second push of a group downloads the previous manifest and index and uploads only the chunks the target lacks', async () => {
  // the operator of the target protects one snapshot in a group the source still has, and one in
  // a group the source no longer has
  for (const [id, time] of [
    ['web1', T1],
    ['keep', T1],
  ] as const) {
    const res = await t.api('PUT', `${DS}/protected`, {
      auth: t.root,
      body: { ns: TARGET_NS, 'backup-type': 'host', 'backup-id': id, 'backup-time': time, protected: true },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  }

  const report = await runPush(pusher, PUSH_USER, TARGET_NS, RUN2, { removeVanished: true });
  assert.deepEqual(report.pushed, [`host/web1/${rfc3339(T3)}`, `vm/100/${rfc3339(T2)}`]);
  // vm/100: of the image's three 4 MiB-aligned chunks only the changed one crosses the wire
  assert.deepEqual(report.uploads.get(`vm/100/${rfc3339(T2)}`), { newChunks: 1, knownChunks: 2 });
  const manifest = JSON.parse(
    decodeBlob(
      readFileSync(join(storePath, 'ns', TARGET_NS, 'vm', '100', rfc3339(T2), 'index.json.blob')),
    ).toString(),
  ) as { unprotected: { chunk_upload_stats: { count: number }; notes: string } };
  assert.equal(manifest.unprotected.chunk_upload_stats.count, 1);
  assert.equal(manifest.unprotected.notes, 'web server\nsecond line');

  // remove-vanished: web1's unprotected old snapshot is deleted, the protected one kept
  assert.deepEqual(report.removedSnapshots, [`host/web1/${rfc3339(T2)}`]);
  assert.deepEqual(report.keptProtected, [`host/web1/${rfc3339(T1)}`]);
  // ...and the vanished groups: old entirely, keep up to its protected snapshot
  assert.deepEqual(Object.fromEntries(report.groupDeletes), {
    'host/keep': { 'removed-groups': 0, 'protected-snapshots': 1, 'removed-snapshots': 1 },
    'host/old': { 'removed-groups': 1, 'protected-snapshots': 0, 'removed-snapshots': 1 },
  });
  const groups = asGroupList(await pbsData(pusher, 'GET', `${DS}/groups`, { ns: TARGET_NS }));
  assert.deepEqual(
    groups.map((g) => [`${g['backup-type']}/${g['backup-id']}`, g['backup-count']]),
    [
      ['host/keep', 1],
      ['host/web1', 2],
      ['vm/100', 2],
    ],
  );
});

test('protected snapshots: listed as protected, deleting one is refused, and error-on-protected (default true) fails a group deletion after removing the rest', async () => {
  const args = { 'backup-type': 'host', 'backup-id': 'keep', ns: TARGET_NS };
  const [kept] = asSnapshotList(await pbsData(pusher, 'GET', `${DS}/snapshots`, args));
  assert.equal(kept!.protected, true);
  const del = await pbsCall(pusher, 'DELETE', `${DS}/snapshots`, { ...args, 'backup-time': T1 });
  assert.equal(del.status, 409);
  assert.match(del.body.message!, /cannot remove protected snapshot/);

  // a newer, unprotected snapshot next to it: deleted even though the call fails
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'host', id: 'keep', time: T3, owner: PUSH_USER, ns: TARGET_NS },
  ]);
  for (const extra of [{}, { 'error-on-protected': true }]) {
    const refused = await pbsCall(pusher, 'DELETE', `${DS}/groups`, { ...args, ...extra });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal(refused.body.message, 'group only partially deleted due to protected snapshots');
  }
  const left = asSnapshotList(await pbsData(pusher, 'GET', `${DS}/snapshots`, args));
  assert.deepEqual(
    left.map((s) => [s['backup-time'], s.protected]),
    [[T1, true]],
  );
  // remove_target_group always sends `ns`, the empty string for the root namespace
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'ct', id: '200', time: T1, owner: 'root@pam' },
  ]);
  const rootStats = asDeleteStats(
    await pbsData(t.root, 'DELETE', `${DS}/groups`, {
      'backup-type': 'ct',
      'backup-id': '200',
      ns: '',
      'error-on-protected': false,
    }),
  );
  assert.deepEqual(rootStats, { 'removed-groups': 1, 'protected-snapshots': 0, 'removed-snapshots': 1 });
});

test('remove-vanished namespaces: deepest first with delete-groups, protected snapshots reported with error-on-protected=false and refused without', async () => {
  await writeSnapshots(t.server.context.datastores, STORE, [
    { type: 'vm', id: '300', time: T1, owner: NS_ADMIN, ns: `${TARGET_NS}/hosts` },
    { type: 'vm', id: '300', time: T2, owner: NS_ADMIN, ns: `${TARGET_NS}/hosts` },
  ]);
  const protect = await t.api('PUT', `${DS}/protected`, {
    auth: t.root,
    body: {
      ns: `${TARGET_NS}/hosts`,
      'backup-type': 'vm',
      'backup-id': '300',
      'backup-time': T1,
      protected: true,
    },
  });
  assert.equal(protect.status, 200);

  // the push user may not remove namespaces (Datastore.Modify on the parent)
  const forbidden = await pbsCall(pusher, 'DELETE', `${DS}/namespace`, {
    ns: `${TARGET_NS}/hosts`,
    'delete-groups': true,
    'error-on-protected': false,
  });
  assert.equal(forbidden.status, 403);

  // remove_target_namespace for each vanished namespace below the target, deepest first
  const stats: Record<string, BackupGroupDeleteStats> = {};
  for (const ns of [`${TARGET_NS}/hosts/deep`, `${TARGET_NS}/hosts`]) {
    stats[ns] = asDeleteStats(
      await pbsData(nsAdmin, 'DELETE', `${DS}/namespace`, {
        ns,
        'delete-groups': true,
        'error-on-protected': false,
      }),
    );
  }
  assert.deepEqual(stats, {
    [`${TARGET_NS}/hosts/deep`]: { 'removed-groups': 0, 'protected-snapshots': 0, 'removed-snapshots': 0 },
    [`${TARGET_NS}/hosts`]: { 'removed-groups': 0, 'protected-snapshots': 1, 'removed-snapshots': 1 },
  });
  const listed = (await pbsData(pusher, 'GET', `${DS}/namespace`)) as Array<{ ns: string }>;
  assert.deepEqual(
    listed.map((i) => i.ns),
    [TARGET_NS, `${TARGET_NS}/hosts`],
  );

  const refused = await pbsCall(nsAdmin, 'DELETE', `${DS}/namespace`, {
    ns: `${TARGET_NS}/hosts`,
    'delete-groups': true,
  });
  assert.equal(refused.status, 409, JSON.stringify(refused.body));
  assert.equal(refused.body.message, 'group only partially deleted due to protected snapshots');
});
