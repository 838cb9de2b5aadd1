import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateAuthKeys } from '../../../src/http/auth/auth-keys.js';
import { createCsrfToken, verifyCsrfToken } from '../../../src/http/auth/csrf.js';
import { LoginLimiter } from '../../../src/http/auth/login-limiter.js';
import { createTicket, TICKET_LIFETIME, verifyTicket } from '../../../src/http/auth/ticket.js';

const keys = generateAuthKeys();
const NOW = 1_700_000_000;

test('a ticket has the PBS shape and verifies to its user id', () => {
  const ticket = createTicket(keys.privateKey, 'alice@pbs', NOW);
  assert.match(ticket, /^PBS:alice@pbs:6553F100::[A-Za-z0-9+/]+$/);
  assert.deepEqual(verifyTicket(keys.publicKey, ticket, NOW + 10), {
    ok: true,
    userid: 'alice@pbs',
    time: NOW,
  });
});

test('a ticket older than two hours is refused as expired', () => {
  const ticket = createTicket(keys.privateKey, 'alice@pbs', NOW);
  assert.equal(verifyTicket(keys.publicKey, ticket, NOW + TICKET_LIFETIME).ok, true);
  assert.deepEqual(verifyTicket(keys.publicKey, ticket, NOW + TICKET_LIFETIME + 1), {
    ok: false,
    reason: 'invalid ticket - expired',
  });
});

test('a ticket from up to 300 s in the future is accepted, beyond that refused', () => {
  const ticket = createTicket(keys.privateKey, 'alice@pbs', NOW + 300);
  assert.equal(verifyTicket(keys.publicKey, ticket, NOW).ok, true);
  const later = createTicket(keys.privateKey, 'alice@pbs', NOW + 301);
  assert.equal(verifyTicket(keys.publicKey, later, NOW).ok, false);
});

test('changing the user id, the timestamp or the signature of a ticket makes it invalid', () => {
  const ticket = createTicket(keys.privateKey, 'alice@pbs', NOW);
  const [, , time, , sig] = ticket.split(':');
  const forgedUser = `PBS:root@pam:${time}::${sig}`;
  assert.deepEqual(verifyTicket(keys.publicKey, forgedUser, NOW), {
    ok: false,
    reason: 'ticket with invalid signature',
  });
  const forgedTime = `PBS:alice@pbs:6553F101::${sig}`;
  assert.equal(verifyTicket(keys.publicKey, forgedTime, NOW).ok, false);
  const flipped = sig!.startsWith('A') ? 'B' + sig!.slice(1) : 'A' + sig!.slice(1);
  assert.equal(verifyTicket(keys.publicKey, `PBS:alice@pbs:${time}::${flipped}`, NOW).ok, false);
  assert.equal(verifyTicket(keys.publicKey, 'PBS:alice@pbs', NOW).ok, false);
});

test('a ticket signed by another server key is refused', () => {
  const other = generateAuthKeys();
  const ticket = createTicket(other.privateKey, 'alice@pbs', NOW);
  assert.equal(verifyTicket(keys.publicKey, ticket, NOW).ok, false);
});

test('a CSRF token is valid only for the user it was issued to', () => {
  const token = createCsrfToken(keys.csrfSecret, 'alice@pbs', NOW);
  assert.match(token, /^6553F100:[A-Za-z0-9+/]+$/);
  assert.equal(verifyCsrfToken(keys.csrfSecret, 'alice@pbs', token, NOW + 60), true);
  assert.equal(verifyCsrfToken(keys.csrfSecret, 'bob@pbs', token, NOW + 60), false);
  assert.equal(verifyCsrfToken(keys.csrfSecret, 'alice@pbs', token, NOW + TICKET_LIFETIME + 1), false);
  assert.equal(verifyCsrfToken(generateAuthKeys().csrfSecret, 'alice@pbs', token, NOW), false);
});

test('after five free failures each further one doubles the wait, for that address and user only', () => {
  const limiter = new LoginLimiter();
  const ip = '192.0.2.7';
  for (let i = 0; i < 5; i++) {
    assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 1000 + i), 0, 'five tries are free');
    limiter.recordFailure(ip, 'alice@pbs', 1000 + i);
  }
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 1005), 0, 'five failures alone impose no wait');
  limiter.recordFailure(ip, 'alice@pbs', 2000);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 2000), 1000);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 3000), 0);
  limiter.recordFailure(ip, 'alice@pbs', 3000);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 3000), 2000);
  limiter.recordFailure(ip, 'alice@pbs', 5000);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 5000), 4000);
  assert.equal(limiter.retryAfterMs('192.0.2.8', 'alice@pbs', 5000), 0, 'another address is not affected');
  assert.equal(limiter.retryAfterMs(ip, 'bob@pbs', 5000), 0, 'another user is not affected');
  for (let t = 10_000; t < 100_000; t += 1000) limiter.recordFailure(ip, 'alice@pbs', t);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 99_000), 300_000, 'the wait is capped at five minutes');
  assert.equal(
    limiter.retryAfterMs(ip, 'alice@pbs', 99_000 + 15 * 60_000),
    0,
    'quiet for 15 minutes: forgotten',
  );
  limiter.recordFailure(ip, 'alice@pbs', 2_000_000);
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 2_000_000), 0, 'counting starts again');
  for (let i = 0; i < 6; i++) limiter.recordFailure(ip, 'alice@pbs', 2_000_001 + i);
  assert.ok(limiter.retryAfterMs(ip, 'alice@pbs', 2_000_010) > 0);
  limiter.recordSuccess(ip, 'alice@pbs');
  assert.equal(limiter.retryAfterMs(ip, 'alice@pbs', 2_000_010), 0, 'a success clears the record');
});

test('attempts from the host itself are always checked, however many failed', () => {
  const limiter = new LoginLimiter();
  for (const local of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.8.9.10']) {
    for (let i = 0; i < 50; i++) limiter.recordFailure(local, 'root@pam', 1000 + i);
    assert.equal(limiter.retryAfterMs(local, 'root@pam', 1050), 0, local);
  }
  for (const remote of ['128.0.0.1', '::2', '::ffff:10.0.0.1', '1270.0.0.1']) {
    for (let i = 0; i < 50; i++) limiter.recordFailure(remote, 'root@pam', 1000 + i);
    assert.ok(limiter.retryAfterMs(remote, 'root@pam', 1050) > 0, remote);
  }
  const strict = new LoginLimiter({ exemptLoopback: false });
  for (let i = 0; i < 6; i++) strict.recordFailure('127.0.0.1', 'root@pam', 1000 + i);
  assert.ok(strict.retryAfterMs('127.0.0.1', 'root@pam', 1010) > 0);
});
