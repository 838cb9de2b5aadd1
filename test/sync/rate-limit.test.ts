import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHumanByte } from '../../src/api-types/human-byte.js';
import { RateLimiter } from '../../src/sys/rate-limiter.js';
import { StowageError } from '../../src/errors.js';

test('byte sizes are read as PBS reads them', () => {
  const cases: Array<[string, number]> = [
    ['1300', 1300],
    ['1300 B', 1300],
    ['1.5KB', 1500],
    ['2KiB', 2048],
    ['2Ki', 2048],
    ['2kib', 2048],
    ['10 MiB', 10 * 2 ** 20],
    ['4gib', 4 * 2 ** 30],
    ['1M', 1e6],
  ];
  for (const [text, bytes] of cases) assert.equal(parseHumanByte(text, 'rate-in'), bytes, text);
  for (const bad of ['', 'fast', '10 XB', '-1MB', '1..5K']) {
    assert.throws(
      () => parseHumanByte(bad, 'rate-in'),
      (err: StowageError) => err.status === 400 && err.message.includes(`byte-size parse error for '${bad}'`),
      bad,
    );
  }
});

test('the limiter lets a burst through at once, then paces to the rate', async () => {
  let now = 0;
  const slept: number[] = [];
  const limiter = new RateLimiter(
    1000,
    2000,
    () => now,
    async (ms) => {
      slept.push(ms);
      now += ms;
    },
  );
  await limiter.consume(2000); // the burst
  assert.deepEqual(slept, []);
  await limiter.consume(500); // in debt by 500 bytes: half a second
  assert.deepEqual(slept, [500]);
  now += 3000; // idle time refills, but only up to the burst
  await limiter.consume(2000);
  assert.deepEqual(slept, [500]);
  await limiter.consume(3000);
  assert.deepEqual(slept, [500, 3000]);
  // 7500 bytes in 6.5 s of clock: at most rate × time + burst
  assert.ok(7500 <= 1000 * (now / 1000) + 2000);
});
