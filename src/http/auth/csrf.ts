/**
 * CSRF prevention tokens (PBS `assemble_csrf_prevention_token`): `<timestamp 8 hex upper>:<HMAC>`
 * where the HMAC-SHA256 over `<timestamp>:<userid>` uses the server's `csrf.key` and is base64
 * without padding. Valid as long as a ticket, with the same clock skew.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { TICKET_LIFETIME, TICKET_MAX_SKEW } from './ticket.js';

const nowSec = () => Math.floor(Date.now() / 1000);

function digest(secret: Buffer, timeHex: string, userid: string): string {
  return createHmac('sha256', secret).update(`${timeHex}:${userid}`).digest('base64').replace(/=+$/, '');
}

/** Issue a token for `userid`, returned beside the ticket at login. */
export function createCsrfToken(secret: Buffer, userid: string, now = nowSec()): string {
  const timeHex = now.toString(16).toUpperCase().padStart(8, '0');
  return `${timeHex}:${digest(secret, timeHex, userid)}`;
}

/** Whether `token` was issued to `userid` by this server and is not too old. */
export function verifyCsrfToken(secret: Buffer, userid: string, token: string, now = nowSec()): boolean {
  const m = /^([0-9A-F]{8}):(\S+)$/.exec(token);
  if (!m) return false;
  const age = now - parseInt(m[1]!, 16);
  if (age < -TICKET_MAX_SKEW || age > TICKET_LIFETIME) return false;
  const expected = Buffer.from(digest(secret, m[1]!, userid));
  const actual = Buffer.from(m[2]!);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
