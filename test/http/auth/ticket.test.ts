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

test('after five failed logins within a minute the next attempt must wait until the window passes', () => {
  const limiter = new LoginLimiter({ maxFailures: 5, windowMs: 60_000 });
  for (let i = 0; i < 5; i++) {
    assert.equal(limiter.retryAfterMs('10.0.0.1', 'alice@pbs', 1000 + i), 0);
    limiter.recordFailure('10.0.0.1', 'alice@pbs', 1000 + i);
  }
  assert.equal(limiter.retryAfterMs('10.0.0.1', 'alice@pbs', 2000), 59_000);
  assert.equal(limiter.retryAfterMs('10.0.0.2', 'alice@pbs', 2000), 0, 'another address is not affected');
  assert.equal(limiter.retryAfterMs('10.0.0.1', 'bob@pbs', 2000), 0, 'another user is not affected');
  assert.equal(limiter.retryAfterMs('10.0.0.1', 'alice@pbs', 61_001), 0);
  limiter.recordSuccess('10.0.0.1', 'alice@pbs');
  assert.equal(limiter.retryAfterMs('10.0.0.1', 'alice@pbs', 2000), 0);
});
