import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadRequestError } from '../../src/errors.js';
import { backupTimeFromString, backupTimeToString } from '../../src/api-types/names.js';
import {
  BackupGroup,
  BackupNamespace,
  snapshotPath,
  type BackupStore,
} from '../../src/datastore/backup-info.js';
import { newManifest, storeManifest } from '../../src/datastore/manifest.js';
import {
  computePrune,
  isoWeekId,
  pruneGroup,
  validateKeepOptions,
  type KeepOptions,
  type PruneCandidate,
} from '../../src/datastore/prune.js';
import { listTree } from '../helpers/files.js';
import { testDatastoreLocks } from '../helpers/test-datastore.js';

const t = (s: string) => backupTimeFromString(s);
const fin = (s: string, extra: Partial<PruneCandidate> = {}): PruneCandidate => ({
  time: t(s),
  protected: false,
  finished: true,
  ...extra,
});

/** The kept snapshots as `time reason`, newest first. */
function kept(snaps: PruneCandidate[], opts: KeepOptions): string[] {
  return computePrune(snaps, opts)
    .filter((m) => m.keep)
    .map((m) => `${backupTimeToString(m.time)} ${m.reason}`);
}

test('ISO weeks follow strftime %G/%V across year boundaries', () => {
  for (const [day, week] of [
    ['2020-12-31T12:00:00Z', '2020/53'],
    ['2021-01-03T23:59:59Z', '2020/53'],
    ['2021-01-04T00:00:00Z', '2021/01'],
    ['2019-12-30T00:00:00Z', '2020/01'],
    ['2024-12-30T08:00:00Z', '2025/01'],
    ['2026-01-01T00:00:00Z', '2026/01'],
    ['2023-12-31T12:00:00Z', '2023/52'],
  ]) {
    assert.equal(isoWeekId(t(day!)), week, day);
  }
});

test('keep-last keeps the newest N snapshots whatever order they come in', () => {
  const snaps = ['2024-01-03', '2024-01-01', '2024-01-05', '2024-01-02', '2024-01-04'].map((d) =>
    fin(`${d}T10:00:00Z`),
  );
  assert.deepEqual(kept(snaps, { 'keep-last': 3 }), [
    '2024-01-05T10:00:00Z keep-last',
    '2024-01-04T10:00:00Z keep-last',
    '2024-01-03T10:00:00Z keep-last',
  ]);
  const marks = computePrune(snaps, { 'keep-last': 3 });
  assert.deepEqual(
    marks.map((m) => m.time),
    [...snaps.map((s) => s.time)].sort((a, b) => b - a),
    'every snapshot once, newest first',
  );
  assert.deepEqual(
    marks.filter((m) => !m.keep).map((m) => m.reason),
    ['remove', 'remove'],
  );
});

test('keep-hourly keeps the newest snapshot of each of the last N hours', () => {
  const snaps = ['10:00', '10:30', '11:15', '11:45', '12:05'].map((h) => fin(`2024-03-01T${h}:00Z`));
  assert.deepEqual(kept(snaps, { 'keep-hourly': 2 }), [
    '2024-03-01T12:05:00Z keep-hourly',
    '2024-03-01T11:45:00Z keep-hourly',
  ]);
});

test('keep-daily keeps the newest snapshot of each of the last N days (UTC)', () => {
  const snaps = [
    '2024-03-01T01:00:00Z',
    '2024-03-01T23:00:00Z',
    '2024-03-02T12:00:00Z',
    '2024-03-03T00:00:00Z',
    '2024-03-03T23:59:59Z',
  ].map((s) => fin(s));
  assert.deepEqual(kept(snaps, { 'keep-daily': 2 }), [
    '2024-03-03T23:59:59Z keep-daily',
    '2024-03-02T12:00:00Z keep-daily',
  ]);
  assert.deepEqual(kept(snaps, { 'keep-daily': 5 }), [
    '2024-03-03T23:59:59Z keep-daily',
    '2024-03-02T12:00:00Z keep-daily',
    '2024-03-01T23:00:00Z keep-daily',
  ]);
});

test('keep-weekly uses ISO weeks, so Dec 31 and Jan 3 share a week', () => {
  const snaps = ['2020-12-31', '2021-01-01', '2021-01-03', '2021-01-04'].map((d) => fin(`${d}T12:00:00Z`));
  assert.deepEqual(kept(snaps, { 'keep-weekly': 2 }), [
    '2021-01-04T12:00:00Z keep-weekly',
    '2021-01-03T12:00:00Z keep-weekly',
  ]);
});

test('keep-monthly and keep-yearly keep the newest snapshot of each month and year', () => {
  const snaps = [
    '2022-06-15',
    '2022-12-01',
    '2023-01-10',
    '2023-01-20',
    '2023-02-05',
    '2023-02-25',
    '2023-03-01',
  ].map((d) => fin(`${d}T00:00:00Z`));
  assert.deepEqual(kept(snaps, { 'keep-monthly': 3 }), [
    '2023-03-01T00:00:00Z keep-monthly',
    '2023-02-25T00:00:00Z keep-monthly',
    '2023-01-20T00:00:00Z keep-monthly',
  ]);
  assert.deepEqual(kept(snaps, { 'keep-yearly': 5 }), [
    '2023-03-01T00:00:00Z keep-yearly',
    '2022-12-01T00:00:00Z keep-yearly',
  ]);
});

test('a year of daily snapshots with keep-daily 7, keep-weekly 4, keep-monthly 6 keeps exactly 17', () => {
  const snaps: PruneCandidate[] = [];
  for (let d = Date.UTC(2023, 0, 1, 12); d <= Date.UTC(2023, 11, 31, 12); d += 86400_000) {
    snaps.push({ time: d / 1000, protected: false, finished: true });
  }
  assert.equal(snaps.length, 365);
  // 2023-12-31 is a Sunday: the 7 dailies are Mon Dec 25..Sun Dec 31 (ISO week 52), so the
  // weeklies start one week back, on Sundays. Keep-weekly also marks the rest of the week of its
  // last pick (Mon Nov 27..Sat Dec 2) for removal, so those are no longer candidates: monthly
  // skips December (already covered) and takes Nov 26, then the last day of each month to June.
  assert.deepEqual(kept(snaps, { 'keep-daily': 7, 'keep-weekly': 4, 'keep-monthly': 6 }), [
    '2023-12-31T12:00:00Z keep-daily',
    '2023-12-30T12:00:00Z keep-daily',
    '2023-12-29T12:00:00Z keep-daily',
    '2023-12-28T12:00:00Z keep-daily',
    '2023-12-27T12:00:00Z keep-daily',
    '2023-12-26T12:00:00Z keep-daily',
    '2023-12-25T12:00:00Z keep-daily',
    '2023-12-24T12:00:00Z keep-weekly',
    '2023-12-17T12:00:00Z keep-weekly',
    '2023-12-10T12:00:00Z keep-weekly',
    '2023-12-03T12:00:00Z keep-weekly',
    '2023-11-26T12:00:00Z keep-monthly',
    '2023-10-31T12:00:00Z keep-monthly',
    '2023-09-30T12:00:00Z keep-monthly',
    '2023-08-31T12:00:00Z keep-monthly',
    '2023-07-31T12:00:00Z keep-monthly',
    '2023-06-30T12:00:00Z keep-monthly',
  ]);
});

test('keep-last and keep-daily combine: daily only reaches past the days keep-last covered', () => {
  const snaps = [
    '2024-05-01T08:00:00Z',
    '2024-05-01T20:00:00Z',
    '2024-05-02T08:00:00Z',
    '2024-05-02T20:00:00Z',
    '2024-05-03T08:00:00Z',
    '2024-05-03T20:00:00Z',
  ].map((s) => fin(s));
  assert.deepEqual(kept(snaps, { 'keep-last': 2, 'keep-daily': 2 }), [
    '2024-05-03T20:00:00Z keep-last',
    '2024-05-03T08:00:00Z keep-last',
    '2024-05-02T20:00:00Z keep-daily',
    '2024-05-01T20:00:00Z keep-daily',
  ]);
});

test('protected snapshots are always kept and do not count towards any option', () => {
  const snaps = [
    fin('2024-01-01T00:00:00Z', { protected: true }),
    fin('2024-01-02T00:00:00Z'),
    fin('2024-01-03T00:00:00Z'),
    fin('2024-01-04T00:00:00Z'),
    fin('2024-01-05T00:00:00Z', { protected: true }),
  ];
  assert.deepEqual(kept(snaps, { 'keep-last': 2 }), [
    '2024-01-05T00:00:00Z protected',
    '2024-01-04T00:00:00Z keep-last',
    '2024-01-03T00:00:00Z keep-last',
    '2024-01-01T00:00:00Z protected',
  ]);
  // a protected snapshot does not cover its day for keep-daily either
  const sameDay = [fin('2024-02-01T10:00:00Z'), fin('2024-02-01T11:00:00Z', { protected: true })];
  assert.deepEqual(kept(sameDay, { 'keep-daily': 1 }), [
    '2024-02-01T11:00:00Z protected',
    '2024-02-01T10:00:00Z keep-daily',
  ]);
});

test('only the newest unfinished snapshot newer than every finished one is kept, and never counts', () => {
  const snaps = [
    fin('2024-01-01T00:00:00Z'),
    fin('2024-01-02T00:00:00Z'),
    fin('2024-01-03T00:00:00Z', { finished: false }),
    fin('2024-01-04T00:00:00Z'),
    fin('2024-01-05T00:00:00Z', { finished: false }),
  ];
  const marks = computePrune(snaps, { 'keep-last': 2 }).map(
    (m) => `${backupTimeToString(m.time)} ${m.keep} ${m.reason}`,
  );
  assert.deepEqual(marks, [
    '2024-01-05T00:00:00Z true keep-partial',
    '2024-01-04T00:00:00Z true keep-last',
    '2024-01-03T00:00:00Z false incomplete',
    '2024-01-02T00:00:00Z true keep-last',
    '2024-01-01T00:00:00Z false remove',
  ]);
  // two unfinished at the top: only the newest one is kept
  const two = [
    fin('2024-01-01T00:00:00Z'),
    fin('2024-01-02T00:00:00Z', { finished: false }),
    fin('2024-01-03T00:00:00Z', { finished: false }),
  ];
  assert.deepEqual(kept(two, { 'keep-last': 5 }), [
    '2024-01-03T00:00:00Z keep-partial',
    '2024-01-01T00:00:00Z keep-last',
  ]);
  // an unfinished protected snapshot is still kept, as protected
  const prot = [
    fin('2024-01-02T00:00:00Z'),
    fin('2024-01-01T00:00:00Z', { finished: false, protected: true }),
  ];
  assert.deepEqual(kept(prot, { 'keep-last': 1 }), [
    '2024-01-02T00:00:00Z keep-last',
    '2024-01-01T00:00:00Z protected',
  ]);
});

test('without a keep option above zero everything is kept', () => {
  const snaps = [
    fin('2024-01-01T00:00:00Z'),
    fin('2024-01-02T00:00:00Z', { finished: false }),
    fin('2024-01-03T00:00:00Z', { protected: true }),
  ];
  for (const opts of [{}, { 'keep-last': 0 }, { 'keep-daily': 0, 'keep-yearly': 0 }] as KeepOptions[]) {
    assert.deepEqual(kept(snaps, opts), [
      '2024-01-03T00:00:00Z protected',
      '2024-01-02T00:00:00Z keep-all',
      '2024-01-01T00:00:00Z keep-all',
    ]);
  }
});

test('keep options from a request must be positive integers', () => {
  assert.deepEqual(validateKeepOptions({ 'keep-last': 3, other: 'ignored' }), { 'keep-last': 3 });
  for (const bad of [0, -1, 1.5, '3', null]) {
    assert.throws(
      () => validateKeepOptions({ 'keep-daily': bad }),
      (err: unknown) => {
        return err instanceof BadRequestError && err.message.startsWith('invalid keep-daily');
      },
    );
  }
});

// --- pruneGroup on disk ---

function setup(): { store: BackupStore; group: BackupGroup; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'stowage-prune-'));
  const basePath = join(root, 'store');
  mkdirSync(basePath);
  const store: BackupStore = { basePath, locks: testDatastoreLocks(root, basePath) };
  const group = new BackupGroup(BackupNamespace.root(), 'vm', '100');
  const add = (time: string, opts: { finished?: boolean; protected?: boolean } = {}) => {
    const dir = group.snapshot(t(time));
    const path = snapshotPath(store, dir);
    mkdirSync(path, { recursive: true });
    if (opts.finished !== false) storeManifest(path, newManifest('vm', '100', dir.time));
    if (opts.protected) closeSync(openSync(join(path, '.protected'), 'w'));
  };
  add('2024-01-01T00:00:00Z', { protected: true });
  add('2024-01-02T00:00:00Z');
  add('2024-01-03T00:00:00Z');
  add('2024-01-04T00:00:00Z');
  add('2024-01-05T00:00:00Z', { finished: false });
  return { store, group, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

test('a dry-run prune reports the plan and changes nothing on disk', async () => {
  const { store, group, cleanup } = setup();
  try {
    const before = listTree(store.basePath);
    const result = await pruneGroup(store, group, { 'keep-last': 1 }, { dryRun: true });
    assert.deepEqual(
      result.map((r) => `${r.dir.timeString} ${r.keep} ${r.reason}`),
      [
        '2024-01-05T00:00:00Z true keep-partial',
        '2024-01-04T00:00:00Z true keep-last',
        '2024-01-03T00:00:00Z false remove',
        '2024-01-02T00:00:00Z false remove',
        '2024-01-01T00:00:00Z true protected',
      ],
    );
    assert.deepEqual(listTree(store.basePath), before);
  } finally {
    cleanup();
  }
});

test('prune removes exactly the snapshots it marked and leaves one in use in place with an error', async () => {
  const { store, group, cleanup } = setup();
  try {
    // a reader holds the 2024-01-02 snapshot (shared lock), as a restore would
    const reader = await store.locks.lockSnapshot(group.snapshot(t('2024-01-02T00:00:00Z')), {
      shared: true,
    });
    let result;
    try {
      result = await pruneGroup(store, group, { 'keep-last': 1 });
    } finally {
      reader.release();
    }
    assert.deepEqual(
      result.filter((r) => r.error).map((r) => r.dir.timeString),
      ['2024-01-02T00:00:00Z'],
    );
    assert.match(result.find((r) => r.error)!.error!, /in use/);
    assert.deepEqual(readdirSync(join(store.basePath, 'vm', '100')).sort(), [
      '2024-01-01T00:00:00Z',
      '2024-01-02T00:00:00Z',
      '2024-01-04T00:00:00Z',
      '2024-01-05T00:00:00Z',
    ]);
    // once the reader is gone, the next prune removes it
    await pruneGroup(store, group, { 'keep-last': 1 });
    assert.deepEqual(readdirSync(join(store.basePath, 'vm', '100')).sort(), [
      '2024-01-01T00:00:00Z',
      '2024-01-04T00:00:00Z',
      '2024-01-05T00:00:00Z',
    ]);
  } finally {
    cleanup();
  }
});
