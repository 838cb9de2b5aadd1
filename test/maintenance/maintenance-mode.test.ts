import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkMaintenance,
  checkTransition,
  conflictingClasses,
  formatMaintenanceMode,
  MAINTENANCE_TYPES,
  OPERATOR_SETTABLE,
  parseMaintenanceMode,
  type MaintenanceMode,
  type OperationClass,
} from '../../src/maintenance/maintenance-mode.js';

const MSG = 'replacing disk 3';

// The full matrix: every mode × every class, with the exact refusal text (or admission).
const MATRIX: Array<[MaintenanceMode | undefined, OperationClass, string | null]> = [
  [undefined, 'read', null],
  [undefined, 'write', null],
  [undefined, 'lookup', null],
  [{ type: 'read-only', message: MSG }, 'read', null],
  [
    { type: 'read-only', message: MSG },
    'write',
    `datastore 'local' is unavailable: read-only maintenance mode: ${MSG}`,
  ],
  [{ type: 'read-only', message: MSG }, 'lookup', null],
  [
    { type: 'offline', message: MSG },
    'read',
    `datastore 'local' is unavailable: offline maintenance mode: ${MSG}`,
  ],
  [
    { type: 'offline', message: MSG },
    'write',
    `datastore 'local' is unavailable: offline maintenance mode: ${MSG}`,
  ],
  [{ type: 'offline', message: MSG }, 'lookup', null],
  [{ type: 'delete' }, 'read', "datastore 'local' is unavailable: datastore is being deleted"],
  [{ type: 'delete' }, 'write', "datastore 'local' is unavailable: datastore is being deleted"],
  [{ type: 'delete' }, 'lookup', "datastore 'local' is unavailable: datastore is being deleted"],
  [{ type: 'offline' }, 'read', "datastore 'local' is unavailable: offline maintenance mode"],
  [{ type: 'read-only' }, 'write', "datastore 'local' is unavailable: read-only maintenance mode"],
  // PBS 3.3+ unmount: the message is never appended
  [{ type: 'unmount' }, 'read', "datastore 'local' is unavailable: datastore is being unmounted"],
  [{ type: 'unmount' }, 'write', "datastore 'local' is unavailable: datastore is being unmounted"],
  [{ type: 'unmount' }, 'lookup', null],
  [
    { type: 'unmount', message: MSG },
    'read',
    "datastore 'local' is unavailable: datastore is being unmounted",
  ],
  [{ type: 'unmount', message: MSG }, 'lookup', null],
  // PBS 4 s3-refresh
  [
    { type: 's3-refresh', message: MSG },
    'read',
    `datastore 'local' is unavailable: S3 refresh maintenance mode: ${MSG}`,
  ],
  [
    { type: 's3-refresh', message: MSG },
    'write',
    `datastore 'local' is unavailable: S3 refresh maintenance mode: ${MSG}`,
  ],
  [{ type: 's3-refresh', message: MSG }, 'lookup', null],
  [{ type: 's3-refresh' }, 'write', "datastore 'local' is unavailable: S3 refresh maintenance mode"],
  [{ type: 's3-refresh' }, 'lookup', null],
];

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
    ['sealed', /maintenance-mode: unknown type 'sealed'/],
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
  assert.deepEqual(conflictingClasses({ type: 'read-only' }), ['write']);
  assert.deepEqual(conflictingClasses({ type: 'offline' }), ['read', 'write']);
  assert.deepEqual(conflictingClasses({ type: 'delete' }), ['read', 'write']);
  assert.deepEqual(conflictingClasses({ type: 'unmount' }), ['read', 'write']);
  assert.deepEqual(conflictingClasses({ type: 's3-refresh' }), ['read', 'write']);
});

test('an operator may set unmount and s3-refresh as PBS 4 update_datastore allows, never delete', () => {
  assert.deepEqual([...OPERATOR_SETTABLE].sort(), ['offline', 'read-only', 's3-refresh', 'unmount']);
  assert.deepEqual([...MAINTENANCE_TYPES].sort(), [
    'delete',
    'offline',
    'read-only',
    's3-refresh',
    'unmount',
  ]);
});
