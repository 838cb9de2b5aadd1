import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkMaintenance,
  checkTransition,
  conflictingClasses,
  formatMaintenanceMode,
  MAINTENANCE_TYPES,
  MaintenanceError,
  modeAdmits,
  OPERATION_CLASSES,
  OPERATOR_SETTABLE,
  parseMaintenanceMode,
  type MaintenanceMode,
  type OperationClass,
  type SystemHold,
} from '../../src/maintenance/maintenance-mode.js';

const MSG = 'replacing disk 3';

// The full matrix: every mode × every class, with the exact refusal text (null: admitted).
// Classes: read, ingest (new data: backups, uploads), reclaim (prune, deletes, GC, notes), lookup.
const RO = `datastore 'local' is unavailable: read-only maintenance mode: ${MSG}`;
const SEALED = `datastore 'local' is unavailable: sealed maintenance mode: ${MSG}`;
const OFF = `datastore 'local' is unavailable: offline maintenance mode: ${MSG}`;
const DEL = "datastore 'local' is unavailable: datastore is being deleted";
const UNMOUNT = "datastore 'local' is unavailable: datastore is being unmounted";
const S3 = `datastore 'local' is unavailable: S3 refresh maintenance mode: ${MSG}`;
const ROWS: Array<[MaintenanceMode | undefined, Record<OperationClass, string | null>]> = [
  [undefined, { read: null, ingest: null, reclaim: null, lookup: null }],
  [
    { type: 'read-only', message: MSG },
    { read: null, ingest: RO, reclaim: RO, lookup: null },
  ],
  [
    { type: 'sealed', message: MSG },
    { read: null, ingest: SEALED, reclaim: null, lookup: null },
  ],
  [
    { type: 'offline', message: MSG },
    { read: OFF, ingest: OFF, reclaim: OFF, lookup: null },
  ],
  [{ type: 'delete' }, { read: DEL, ingest: DEL, reclaim: DEL, lookup: DEL }],
  // PBS 3.3+ unmount: the message is never appended
  [
    { type: 'unmount', message: MSG },
    { read: UNMOUNT, ingest: UNMOUNT, reclaim: UNMOUNT, lookup: null },
  ],
  [
    { type: 's3-refresh', message: MSG },
    { read: S3, ingest: S3, reclaim: S3, lookup: null },
  ],
  // without a message the sentence ends after the mode
  [
    { type: 'read-only' },
    {
      read: null,
      ingest: "datastore 'local' is unavailable: read-only maintenance mode",
      reclaim: "datastore 'local' is unavailable: read-only maintenance mode",
      lookup: null,
    },
  ],
  [
    { type: 'sealed' },
    {
      read: null,
      ingest: "datastore 'local' is unavailable: sealed maintenance mode",
      reclaim: null,
      lookup: null,
    },
  ],
];
const MATRIX: Array<[MaintenanceMode | undefined, OperationClass, string | null]> = ROWS.flatMap(
  ([mode, row]) =>
    OPERATION_CLASSES.map((cls): [MaintenanceMode | undefined, OperationClass, string | null] => [
      mode,
      cls,
      row[cls],
    ]),
);

test('the mode matrix covers every mode and every class', () => {
  const types = new Set(ROWS.map(([m]) => m?.type ?? 'none'));
  assert.deepEqual([...types].sort(), ['none', ...MAINTENANCE_TYPES].sort());
});

for (const [mode, op, expected] of MATRIX) {
  const label = `${mode ? `${mode.type}${mode.message ? ' with message' : ''}` : 'no maintenance'} ${expected ? 'refuses' : 'admits'} ${op}`;
  test(label, () => {
    if (expected === null) {
      assert.doesNotThrow(() => checkMaintenance('local', mode, op));
    } else {
      assert.throws(
        () => checkMaintenance('local', mode, op),
        (err: unknown) => {
          const e = err as { code: string; status: number; message: string };
          assert.equal(e.code, 'MAINTENANCE');
          assert.equal(e.status, 503);
          assert.equal(e.message, expected);
          return true;
        },
      );
    }
  });
}

// System holds × class (and kind, for the drain hold), alone and under an operator mode.
const LOW = { source: 'low-space', type: 'sealed', message: 'low space: 4% free', since: 1 } as const;
const WIN = {
  source: 'window:w1',
  type: 'offline',
  message: 'offline maintenance window: swap',
  since: 2,
} as const;
const DRAIN = {
  source: 'window:w1',
  type: 'drain',
  message: 'offline maintenance window at 2026-12-03T18:00:00Z: swap',
  since: 3,
} as const;
const HOLD_MATRIX: Array<
  [string, MaintenanceMode | undefined, SystemHold[], OperationClass, string, string | null]
> = [
  [
    'low-space hold',
    undefined,
    [LOW],
    'ingest',
    'backup',
    "datastore 'local' is unavailable: low space: 4% free",
  ],
  ['low-space hold', undefined, [LOW], 'reclaim', 'prune', null],
  ['low-space hold', undefined, [LOW], 'reclaim', 'gc', null],
  ['low-space hold', undefined, [LOW], 'read', 'reader', null],
  ['low-space hold', undefined, [LOW], 'lookup', 'status', null],
  [
    'offline window',
    undefined,
    [WIN],
    'read',
    'reader',
    "datastore 'local' is unavailable: offline maintenance window: swap",
  ],
  [
    'offline window',
    undefined,
    [WIN],
    'reclaim',
    'prune',
    "datastore 'local' is unavailable: offline maintenance window: swap",
  ],
  ['offline window', undefined, [WIN], 'lookup', 'status', null],
  [
    'drain hold',
    undefined,
    [DRAIN],
    'ingest',
    'backup',
    `datastore 'local' is unavailable: ${DRAIN.message}`,
  ],
  ['drain hold', undefined, [DRAIN], 'reclaim', 'gc', `datastore 'local' is unavailable: ${DRAIN.message}`],
  ['drain hold', undefined, [DRAIN], 'read', 'verify', `datastore 'local' is unavailable: ${DRAIN.message}`],
  ['drain hold', undefined, [DRAIN], 'read', 'reader', null],
  ['drain hold', undefined, [DRAIN], 'reclaim', 'prune', null],
  ['drain hold', undefined, [DRAIN], 'ingest', 'create-namespace', null],
  // the operator's mode is checked first: its message is the one given
  ['low-space hold under read-only', { type: 'read-only', message: MSG }, [LOW], 'ingest', 'backup', RO],
  ['low-space hold under read-only', { type: 'read-only', message: MSG }, [LOW], 'reclaim', 'prune', RO],
  [
    'two holds',
    undefined,
    [LOW, WIN],
    'read',
    'reader',
    "datastore 'local' is unavailable: offline maintenance window: swap",
  ],
];

for (const [what, mode, holds, cls, kind, expected] of HOLD_MATRIX) {
  test(`${what} ${expected ? 'refuses' : 'admits'} ${cls} (${kind})`, () => {
    if (expected === null) {
      assert.doesNotThrow(() => checkMaintenance('local', mode, cls, holds, kind));
      return;
    }
    assert.throws(
      () => checkMaintenance('local', mode, cls, holds, kind),
      (err: unknown) => {
        const e = err as MaintenanceError;
        assert.equal(e.code, 'MAINTENANCE');
        assert.equal(e.status, 503);
        assert.equal(e.message, expected);
        if (mode && !modeAdmits(mode, cls)) assert.deepEqual(e.mode, mode);
        else assert.ok(e.hold && holds.includes(e.hold), 'the refusal names the hold');
        return true;
      },
    );
  });
}

test('both PBS spellings of a mode parse to the same value', () => {
  const expected = { type: 'offline', message: 'disk swap' };
  for (const s of [
    'offline,message=disk swap',
    'type=offline,message=disk swap',
    'type=offline,message="disk swap"',
    'offline,message="disk swap"',
    'message="disk swap",type=offline',
  ]) {
    assert.deepEqual(parseMaintenanceMode(s), expected, s);
  }
  assert.deepEqual(parseMaintenanceMode('read-only'), { type: 'read-only' });
  assert.deepEqual(parseMaintenanceMode('type=read-only'), { type: 'read-only' });
});

test('the PBS 4 types unmount and s3-refresh parse in both spellings and are written as PBS writes them', () => {
  for (const s of ['unmount', 'type=unmount'])
    assert.deepEqual(parseMaintenanceMode(s), { type: 'unmount' }, s);
  for (const s of [
    's3-refresh,message=resync',
    'type=s3-refresh,message="resync"',
    'message=resync,type=s3-refresh',
  ]) {
    assert.deepEqual(parseMaintenanceMode(s), { type: 's3-refresh', message: 'resync' }, s);
  }
  assert.equal(formatMaintenanceMode({ type: 'unmount' }), 'unmount');
  assert.equal(formatMaintenanceMode({ type: 's3-refresh' }), 's3-refresh');
  assert.equal(formatMaintenanceMode({ type: 's3-refresh', message: 'a,b' }), 's3-refresh,message="a,b"');
  // the casing is PBS's kebab-case; anything else stays an error
  assert.throws(() => parseMaintenanceMode('S3Refresh'), /unknown type 'S3Refresh'/);
  assert.throws(() => parseMaintenanceMode('s3_refresh'), /unknown type 's3_refresh'/);
});

test('the message is always quoted when written, and commas, quotes, = and backslashes round-trip', () => {
  for (const message of ['a,b', 'say "hi"', 'k=v,x=y', 'back\\slash', ' lead and trail ', 'ünïcödé ✓']) {
    const text = formatMaintenanceMode({ type: 'read-only', message });
    assert.match(text, /^read-only,message="/);
    assert.deepEqual(parseMaintenanceMode(text), { type: 'read-only', message }, text);
  }
  assert.equal(formatMaintenanceMode({ type: 'offline' }), 'offline');
});

test('bad mode strings are refused with an error naming maintenance-mode and what was wrong', () => {
  const cases: Array<[string, RegExp]> = [
    [`read-only,message="${'x'.repeat(65)}"`, /maintenance-mode: message is 65 characters long, at most 64/],
    ['read-only,message="line1\\nline2"', /maintenance-mode: message must not contain control characters/],
    ['read-only,message="tab\there"', /control characters/],
    ['frozen', /maintenance-mode: unknown type 'frozen'/],
    ['read-only,message="unbalanced', /maintenance-mode: unbalanced quote/],
    ['read-only,color=red', /maintenance-mode: unknown property 'color'/],
    ['message=x', /maintenance-mode: missing 'type'/],
    ['read-only,offline', /maintenance-mode: duplicate key 'type'/],
    ['', /maintenance-mode: missing 'type'/],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseMaintenanceMode(text),
      (e: unknown) => {
        assert.equal((e as { status: number }).status, 400, text);
        assert.match((e as Error).message, re, text);
        return true;
      },
    );
  }
  // 64 characters is fine, counted as characters, not bytes
  assert.equal(parseMaintenanceMode(`offline,message="${'é'.repeat(64)}"`).message, 'é'.repeat(64));
});

test('PBS corrupted unquoted messages with commas; we refuse to read them as "no maintenance"', () => {
  // What PBS 3.2 writes for message "a,b": the tail parses as a second type.
  assert.throws(() => parseMaintenanceMode('read-only,message=a,b'), /maintenance-mode/);
});

test('nothing leaves delete except delete; every other transition is allowed (unmount and s3-refresh may be left to anything, as PBS 4)', () => {
  const modes: Array<MaintenanceMode | undefined> = [
    undefined,
    { type: 'read-only' },
    { type: 'sealed' },
    { type: 'offline' },
    { type: 'delete' },
    { type: 'unmount' },
    { type: 's3-refresh', message: MSG },
  ];
  for (const from of modes) {
    for (const to of modes) {
      const allowed = from?.type !== 'delete' || to?.type === 'delete';
      if (allowed) assert.doesNotThrow(() => checkTransition('s', from, to));
      else assert.throws(() => checkTransition('s', from, to), /being deleted/);
    }
  }
});

test('the operations that block a transition are the classes the new mode refuses, lookup never', () => {
  assert.deepEqual(conflictingClasses(undefined), []);
  assert.deepEqual(conflictingClasses({ type: 'read-only' }), ['ingest', 'reclaim']);
  assert.deepEqual(conflictingClasses({ type: 'sealed' }), ['ingest']);
  assert.deepEqual(conflictingClasses({ type: 'offline' }), ['read', 'ingest', 'reclaim']);
  assert.deepEqual(conflictingClasses({ type: 'delete' }), ['read', 'ingest', 'reclaim']);
  assert.deepEqual(conflictingClasses({ type: 'unmount' }), ['read', 'ingest', 'reclaim']);
  assert.deepEqual(conflictingClasses({ type: 's3-refresh' }), ['read', 'ingest', 'reclaim']);
});

test('an operator may set sealed, and unmount and s3-refresh as PBS 4 update_datastore allows, never delete', () => {
  assert.deepEqual([...OPERATOR_SETTABLE].sort(), [
    'offline',
    'read-only',
    's3-refresh',
    'sealed',
    'unmount',
  ]);
  assert.deepEqual([...MAINTENANCE_TYPES].sort(), [
    'delete',
    'offline',
    'read-only',
    's3-refresh',
    'sealed',
    'unmount',
  ]);
});

test('sealed is stored in the same property string and read back', () => {
  const mode: MaintenanceMode = { type: 'sealed', message: 'retiring, prune only' };
  assert.equal(formatMaintenanceMode(mode), 'sealed,message="retiring, prune only"');
  assert.deepEqual(parseMaintenanceMode(formatMaintenanceMode(mode)), mode);
});
