/**
 * Which blocks of a restored file become holes (`dataRuns`): exactly the all-zero 4 KiB blocks,
 * whatever a block's first and last bytes are.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dataRuns } from '../../src/sys/restore-files.js';

const B = 4096;

test('only all-zero whole blocks are left out; a block zero at both ends but not between is data', () => {
  const data = Buffer.alloc(6 * B + 100);
  data.fill(7, 0, B); // block 0: data
  // block 1: all zero (a hole)
  data[2 * B + 2000] = 1; // block 2: zero first and last byte, data in between
  data[3 * B] = 1; // block 3: data in its first byte only
  data[5 * B - 1] = 1; // block 4: data in its last byte only
  // block 5: all zero (a hole); the 100-byte tail is never a hole, even when zero
  const runs = dataRuns(data, 8 * B);
  assert.deepEqual(
    runs.map((r) => [r.pos - 8 * B, r.buf.length]),
    [
      [0, B],
      [2 * B, 3 * B],
      [6 * B, 100],
    ],
  );
  for (const r of runs) assert.ok(r.buf.equals(data.subarray(r.pos - 8 * B, r.pos - 8 * B + r.buf.length)));
});
