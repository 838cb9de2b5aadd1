/**
 * PBS authentication tickets (reference §8.1, proxmox-auth-api `ticket.rs`):
 * `PBS:<userid>:<timestamp 8 hex upper>::<signature base64 without padding>`, the signature made
 * over `PBS:<userid>:<timestamp>` with the server key. Valid for 2 h, accepting clocks up to
 * 300 s ahead. Pure apart from the clock, which callers may pass.
 */
import { sign, verify, type KeyObject } from 'node:crypto';

export const TICKET_PREFIX = 'PBS';
/** PBS `TICKET_LIFETIME` (seconds). */
export const TICKET_LIFETIME = 7200;
/** How far a ticket's timestamp may lie in the future (clock skew between nodes). */
export const TICKET_MAX_SKEW = 300;

const nowSec = () => Math.floor(Date.now() / 1000);

// PBS percent-encodes control characters and ':' in the prefix and data.
const encodeData = (s: string) =>
  s.replace(/[\x00-\x1f\x7f:%]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** Sign a new ticket for `userid`. */
export function createTicket(privateKey: KeyObject, userid: string, now = nowSec()): string {
  const data = `${TICKET_PREFIX}:${encodeData(userid)}:${hex8(now)}`;
  const signature = sign(null, Buffer.from(data), privateKey).toString('base64').replace(/=+$/, '');
  return `${data}::${signature}`;
}

export type TicketCheck = { ok: true; userid: string; time: number } | { ok: false; reason: string };

/**
 * Verify a ticket; the reason on failure is for the server log only (clients always get
 * "authentication failed").
 */
export function verifyTicket(publicKey: KeyObject, ticket: string, now = nowSec()): TicketCheck {
  const m = /^([^:]+):([^:]+):([0-9A-Fa-f]{8,16})::([A-Za-z0-9+/]+={0,2})$/.exec(ticket);
  if (!m) return { ok: false, reason: 'malformed ticket' };
  const [, prefix, data, timeHex, sig] = m as unknown as [string, string, string, string, string];
  if (prefix !== TICKET_PREFIX) return { ok: false, reason: 'ticket with invalid prefix' };
  const time = parseInt(timeHex, 16);
  const age = now - time;
  if (age < -TICKET_MAX_SKEW) return { ok: false, reason: 'invalid ticket - timestamp newer than expected' };
  if (age > TICKET_LIFETIME) return { ok: false, reason: 'invalid ticket - expired' };
  const signed = Buffer.from(`${prefix}:${data}:${timeHex}`);
  let valid = false;
  try {
    valid = verify(null, signed, publicKey, Buffer.from(sig, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, reason: 'ticket with invalid signature' };
  let userid: string;
  try {
    userid = decodeURIComponent(data);
  } catch {
    return { ok: false, reason: 'invalid ticket data' };
  }
  return { ok: true, userid, time };
}
