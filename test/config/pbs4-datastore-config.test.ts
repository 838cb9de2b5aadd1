import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  datastoreAbsolutePath,
  DatastoreConfigFile,
  formatDatastoreConfig,
  parseDatastoreBackend,
  parseDatastoreConfig,
  unsupportedDatastoreFeature,
} from '../../src/config/datastore-config.js';
import { storedMaintenanceMode } from '../../src/maintenance/datastore-access.js';

// Modelled on PBS 4's docs/storage.rst and docs/config/datastore: keys sorted as PBS writes them,
// a plain store, a removable one (backing-device, path relative to the device), S3 ones (`backend
// type=s3,...`), and one store per maintenance type, the pre-3.2 `type=offline,...` spelling too.
const FIXTURE = readFileSync(
  fileURLToPath(new URL('./fixtures/pbs4-datastore.cfg', import.meta.url)),
  'utf8',
);

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'stowage-pbs4cfg-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

function fixtureFile(name: string): DatastoreConfigFile {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'datastore.cfg'), FIXTURE);
  return new DatastoreConfigFile(dir);
}

test('a datastore.cfg written by PBS 4 loads: every store, typed, unknown PBS 4 keys kept verbatim', () => {
  const { stores } = parseDatastoreConfig(FIXTURE);
  assert.deepEqual(
    [...stores.keys()],
    [
      'backup',
      'usb1',
      's3store',
      'localfs',
      'readonly',
      'offline',
      'offline-old',
      'usb2',
      's3refresh',
      'unmounting',
      'refreshing',
      'deleting',
    ],
  );
  assert.deepEqual(stores.get('usb1'), {
    name: 'usb1',
    path: 'pbs/usb1',
    'backing-device': '5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f',
    comment: 'Offsite USB disk',
    'gc-schedule': 'daily',
    extra: [['gc-on-unmount', 'true']],
  });
  assert.deepEqual(stores.get('s3store'), {
    name: 's3store',
    path: '/mnt/datastore/s3store-local-cache',
    backend: 'bucket=pbs-s3-bucket,client=aws-s3,type=s3',
    'gc-schedule': 'daily',
    extra: [
      ['counter-reset-schedule', 'monthly'],
      ['notification-thresholds', 's3-get=100000,s3-put=50000'],
    ],
  });
  assert.equal(stores.get('backup')!['verify-new'], true);
  assert.deepEqual(stores.get('backup')!.extra, [['notify', 'gc=error,verify=always']]);
});

test('every maintenance type of the fixture parses, both spellings of offline included', () => {
  const { stores } = parseDatastoreConfig(FIXTURE);
  const modes = Object.fromEntries([...stores].map(([name, cfg]) => [name, storedMaintenanceMode(cfg)]));
  assert.deepEqual(modes, {
    backup: undefined,
    usb1: undefined,
    s3store: undefined,
    localfs: undefined,
    readonly: { type: 'read-only', message: 'disk swap' },
    offline: { type: 'offline' },
    'offline-old': { type: 'offline', message: 'fsck, back at 10' },
    usb2: { type: 'unmount' },
    s3refresh: { type: 's3-refresh' },
    unmounting: { type: 'unmount' },
    refreshing: { type: 's3-refresh', message: 'resync from bucket' },
    deleting: { type: 'delete' },
  });
});

test('S3 and removable stores are served; only a backend type this version lacks is told apart, by the config alone', () => {
  const { stores } = parseDatastoreConfig(FIXTURE);
  const features = Object.fromEntries(
    [...stores].map(([name, cfg]) => [name, unsupportedDatastoreFeature(cfg)?.param ?? 'supported']),
  );
  assert.deepEqual(features, {
    backup: 'supported',
    usb1: 'supported', // served while mounted (src/maintenance/removable-datastore.ts)
    s3store: 'supported', // served when its endpoint is in s3.cfg (src/maintenance/chunk-backend-for.ts)
    localfs: 'supported', // `backend type=filesystem` is a plain datastore
    readonly: 'supported',
    offline: 'supported',
    'offline-old': 'supported',
    usb2: 'supported',
    s3refresh: 'supported',
    unmounting: 'supported',
    refreshing: 'supported',
    deleting: 'supported',
  });
  assert.deepEqual(parseDatastoreBackend(stores.get('s3store')!), {
    type: 's3',
    bucket: 'pbs-s3-bucket',
    client: 'aws-s3',
  });
  // PBS's absolute_path: a removable datastore lives at its mount point
  assert.equal(datastoreAbsolutePath(stores.get('usb1')!), '/mnt/datastore/usb1');
  assert.equal(datastoreAbsolutePath(stores.get('backup')!), '/mnt/datastore/backup');
});

test('a backend that does not parse is refused for that store only, never read as a plain one', () => {
  const text = FIXTURE.replace('type=filesystem', 'type=filesystem,bucket=x');
  const { stores } = parseDatastoreConfig(text); // the file still loads
  assert.equal(stores.size, 12);
  const feature = unsupportedDatastoreFeature(stores.get('localfs')!);
  assert.equal(feature?.param, 'backend');
  assert.match(feature!.what, /additional option bucket, not allowed for backend type filesystem/);
  const s3 = parseDatastoreConfig(FIXTURE.replace('client=aws-s3,type=s3\n\tcounter', 'type=s3\n\tcounter'));
  assert.match(unsupportedDatastoreFeature(s3.stores.get('s3store')!)!.what, /missing option client/);
  const future = parseDatastoreConfig(FIXTURE.replace('type=filesystem', 'type=tape'));
  assert.equal(
    unsupportedDatastoreFeature(future.stores.get('localfs')!)!.what,
    "a datastore with backend type 'tape'",
  );
});

test('a relative path is accepted only with a backing-device', () => {
  assert.throws(
    () =>
      parseDatastoreConfig(FIXTURE.replace('\tbacking-device 5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f\n', '')),
    /path of datastore 'usb1' is not absolute: 'pbs\/usb1'/,
  );
});

test('the fixture round-trips byte for byte when rewritten without changes', async () => {
  const { stores, sections } = parseDatastoreConfig(FIXTURE);
  assert.equal(formatDatastoreConfig(stores, sections), FIXTURE);
  // and through the file API, with every store replaced by an unfrozen copy of itself
  const file = fixtureFile('roundtrip');
  await file.update((all) => {
    for (const [name, cfg] of all) all.set(name, { ...cfg });
  });
  assert.equal(readFileSync(file.path, 'utf8'), FIXTURE);
});

test('a change to one store keeps every other store verbatim', async () => {
  const file = fixtureFile('one-change');
  await file.update((stores) => {
    stores.get('s3store')!['maintenance-mode'] = 'read-only,message="maintenance window"';
    stores.get('usb2')!.comment = 'second disk';
    delete stores.get('unmounting')!['maintenance-mode'];
  });
  const expected = FIXTURE.replace(
    '\tpath /mnt/datastore/s3store-local-cache\n',
    '\tpath /mnt/datastore/s3store-local-cache\n\tmaintenance-mode read-only,message="maintenance window"\n',
  )
    .replace('\tpath usb2\n', '\tpath usb2\n\tcomment second disk\n')
    .replace('datastore: unmounting\n\tmaintenance-mode unmount\n', 'datastore: unmounting\n');
  assert.equal(readFileSync(file.path, 'utf8'), expected);
  // undoing two of the changes gives those stores back byte for byte
  await file.update((stores) => {
    delete stores.get('s3store')!['maintenance-mode'];
    delete stores.get('usb2')!.comment;
  });
  assert.equal(
    readFileSync(file.path, 'utf8'),
    FIXTURE.replace('datastore: unmounting\n\tmaintenance-mode unmount\n', 'datastore: unmounting\n'),
  );
});
