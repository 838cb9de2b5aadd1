/**
 * `POST /access/ticket`: log in with a password, or renew a ticket by passing it as the password
 * (reference §8.1). Failures are all 401 "authentication failed", delayed, and rate-limited per
 * remote address and user (`src/http/auth/login-limiter.ts`).
 */
import { Type } from 'typebox';
import { UnauthorizedError } from '../../errors.js';
import { isTokenId, isValidUserid, SUPERUSER } from '../../config/user-config.js';
import { createCsrfToken } from '../../http/auth/csrf.js';
import { verifyPassword } from '../../http/auth/password.js';
import { createTicket, TICKET_PREFIX, verifyTicket } from '../../http/auth/ticket.js';
import { defineRoute, type AnyRoute } from '../../http/route.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/ticket',
    permission: 'anybody',
    description: 'Dummy method, as in PBS, so that the login path answers GET.',
    handler: () => null,
  }),
  defineRoute({
    method: 'POST',
    path: '/access/ticket',
    permission: 'anybody',
    protected: true,
    description:
      'Create or verify an authentication ticket. Returns the ticket, the CSRF prevention token and the user id.',
    body: Type.Object({
      username: Type.String({ minLength: 1, maxLength: 64 }),
      password: Type.String({ minLength: 1, maxLength: 4096 }),
      realm: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$', maxLength: 32 })),
      path: Type.Optional(Type.String()),
      privs: Type.Optional(Type.String()),
      port: Type.Optional(Type.Integer()),
      'tfa-challenge': Type.Optional(Type.String()),
    }),
    returns: Type.Object({
      username: Type.String(),
      ticket: Type.String(),
      CSRFPreventionToken: Type.String(),
    }),
    handler: async ({ body, server, request, reply }) => {
      const username =
        body.realm && !body.username.includes('@') ? `${body.username}@${body.realm}` : body.username;
      const remote = request.ip;
      const refuse = async (reason: string, count = true): Promise<never> => {
        if (count) server.loginLimiter.recordFailure(remote, username);
        request.log.info({ username, remote, reason }, 'login failed');
        await sleep(server.authFailureDelayMs);
        throw new UnauthorizedError();
      };

      const waitMs = server.loginLimiter.retryAfterMs(remote, username);
      if (waitMs > 0) {
        void reply.header('Retry-After', String(Math.ceil(waitMs / 1000)));
        return refuse('too many failed attempts', false);
      }
      const info = server.userInfo.get();
      if (!isValidUserid(username) || isTokenId(username) || !info.isActive(username)) {
        await verifyPassword(server.paths.configDir, '', body.password); // same time as a wrong password
        return refuse('unknown or inactive user');
      }
      if (body.password.startsWith(`${TICKET_PREFIX}:`)) {
        const check = verifyTicket(server.keys.publicKey, body.password);
        if (!check.ok || check.userid !== username)
          return refuse(check.ok ? 'ticket of another user' : check.reason);
      } else {
        const realm = username.slice(username.lastIndexOf('@') + 1);
        if (realm !== 'pbs' && username !== SUPERUSER)
          return refuse(`realm '${realm}' has no local passwords`);
        if (!(await verifyPassword(server.paths.configDir, username, body.password)))
          return refuse('wrong password');
      }
      server.loginLimiter.recordSuccess(remote, username);
      return {
        username,
        ticket: createTicket(server.keys.privateKey, username),
        CSRFPreventionToken: createCsrfToken(server.keys.csrfSecret, username),
      };
    },
  }),
];
