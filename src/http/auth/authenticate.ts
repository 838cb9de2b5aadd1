/**
 * Request authentication (reference §8.1; proxmox-rest-server `auth.rs`): a ticket in the
 * `PBSAuthCookie` (or `__Host-PBSAuthCookie`) cookie, checked first as PBS does, or an API token
 * in `Authorization: PBSAPIToken=<user@realm!name>:<secret>` (`=` or a space after the scheme).
 * Ticket-authenticated requests other than GET need a valid `CSRFPreventionToken` header; token
 * requests never do. Every credential failure is the same 401 "authentication failed".
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ERR_NO_CREDENTIALS, UnauthorizedError } from '../../errors.js';
import { isTokenId, parseAuthId } from '../../config/user-config.js';
import { verifyTokenSecret } from '../../config/token-config.js';
import type { ServerContext } from '../context.js';
import { verifyCsrfToken } from './csrf.js';
import { verifyTicket } from './ticket.js';

export type Credentials =
  { kind: 'ticket'; ticket: string; csrfToken?: string } | { kind: 'token'; tokenid: string; secret: string };

export const AUTH_COOKIE = 'PBSAuthCookie';
export const HOST_AUTH_COOKIE = '__Host-PBSAuthCookie';

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function percentDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

/** Pull credentials out of the headers; undefined when there are none at all. */
export function extractCredentials(headers: IncomingHttpHeaders): Credentials | undefined {
  const cookie = cookieValue(headers.cookie, AUTH_COOKIE) ?? cookieValue(headers.cookie, HOST_AUTH_COOKIE);
  if (cookie !== undefined && cookie !== '') {
    const csrf = headers['csrfpreventiontoken'];
    return {
      kind: 'ticket',
      ticket: percentDecode(cookie) ?? '',
      csrfToken: Array.isArray(csrf) ? csrf[0] : csrf,
    };
  }
  const auth = headers.authorization;
  const m = auth ? /^PBSAPIToken[= ](.*)$/.exec(auth) : null;
  if (m) {
    const value = m[1]!;
    const colon = value.indexOf(':');
    if (colon === -1) return { kind: 'token', tokenid: value, secret: '' };
    return {
      kind: 'token',
      tokenid: value.slice(0, colon),
      secret: percentDecode(value.slice(colon + 1)) ?? '',
    };
  }
  return undefined;
}

export interface AuthResult {
  authId: string;
  kind: 'ticket' | 'token';
}

/**
 * Authenticate one request. `method` decides whether a CSRF token is needed. Throws
 * UnauthorizedError; `reason` (for the server log) is attached as its cause.
 */
export function authenticate(ctx: ServerContext, method: string, headers: IncomingHttpHeaders): AuthResult {
  const creds = extractCredentials(headers);
  if (!creds) throw ERR_NO_CREDENTIALS();
  const fail = (reason: string): never => {
    const err = new UnauthorizedError();
    (err as { reason?: string }).reason = reason;
    throw err;
  };
  const info = ctx.userInfo.get();
  if (creds.kind === 'ticket') {
    const check = verifyTicket(ctx.keys.publicKey, creds.ticket);
    if (!check.ok) return fail(check.reason);
    if (isTokenId(check.userid) || !info.isActive(check.userid))
      return fail(`user '${check.userid}' is not active`);
    // HEAD is fastify's automatic twin of a GET route: as read-only as the GET
    if (method !== 'GET' && method !== 'HEAD') {
      if (!creds.csrfToken)
        throw new UnauthorizedError('authentication failed - missing CSRF prevention token');
      if (!verifyCsrfToken(ctx.keys.csrfSecret, check.userid, creds.csrfToken)) {
        throw new UnauthorizedError('authentication failed - invalid CSRF prevention token');
      }
    }
    return { authId: check.userid, kind: 'ticket' };
  }
  const id = parseAuthId(creds.tokenid);
  if (!id || id.tokenName === undefined) return fail('malformed token id');
  if (!info.isActive(creds.tokenid)) return fail(`token '${creds.tokenid}' is not active`);
  if (!verifyTokenSecret(ctx.paths.configDir, creds.tokenid, creds.secret)) return fail('wrong token secret');
  return { authId: creds.tokenid, kind: 'token' };
}
