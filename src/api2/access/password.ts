/**
 * `PUT /access/password` (PBS 4 `change_password` in `src/api2/access/mod.rs`). Everybody may
 * change their own password; root@pam, and users with Permissions.Modify on `/`, may change other
 * users' passwords, except that only root@pam may change a `@pam` user's. API tokens may not use
 * it at all. As in PBS 4, everyone but root@pam confirms the change with their own current
 * password (`confirmation-password`), so that a stolen ticket alone cannot take over an account.
 */
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError } from '../../errors.js';
import { isTokenId, readUserConfig, SUPERUSER } from '../../config/user-config.js';
import { hasLocalPasswordRealm, setPassword, verifyPassword } from '../../http/auth/password.js';
import type { ServerContext } from '../../http/context.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { PasswordSchema, UseridSchema } from '../../http/schemas.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * PBS `user_update_auth`: the caller proves it is itself with its own password (root@pam is
 * exempt). A wrong password counts as a failed login of the caller (same limiter, same delay as
 * `POST /access/ticket`), so this route cannot be used to guess passwords faster than the login.
 */
async function confirmCaller(
  server: ServerContext,
  request: FastifyRequest,
  caller: string,
  confirmation: string | undefined,
): Promise<void> {
  if (caller === SUPERUSER) return;
  if (confirmation === undefined) {
    throw new BadRequestError(
      "parameter verification failed - 'confirmation-password': your current password is required to change a password (unless logged in as root@pam)",
    );
  }
  const remote = request.ip;
  const limited = server.loginLimiter.retryAfterMs(remote, caller) > 0;
  if (!limited && (await verifyPassword(server.paths.configDir, caller, confirmation))) {
    server.loginLimiter.recordSuccess(remote, caller);
    return;
  }
  if (!limited) server.loginLimiter.recordFailure(remote, caller);
  request.log.info({ username: caller, remote }, 'password change: confirmation password refused');
  await sleep(server.authFailureDelayMs);
  throw new UnauthorizedError();
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'PUT',
    path: '/access/password',
    body: Type.Object({
      userid: UseridSchema,
      password: PasswordSchema,
      'confirmation-password': Type.Optional(
        Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', minLength: 1, maxLength: 1024 }),
      ),
    }),
    permission: filtered(
      "own password; others' with Permissions.Modify on / (root@pam for @pam users); tokens refused",
    ),
    protected: true,
    description:
      "Change a user's password. Everybody may change their own; root@pam, and users with Permissions.Modify on /, may change others' (only root@pam those of @pam users). API tokens are refused. Except for root@pam, the caller's current password must be given as `confirmation-password`.",
    handler: async ({ body, authId, userInfo, server, request }) => {
      const { userid, password } = body;
      if (isTokenId(authId)) {
        throw new ForbiddenError('permission check failed - API tokens cannot access this API endpoint');
      }
      await confirmCaller(server, request, authId, body['confirmation-password']);
      if (userid !== authId && !userInfo.isSuperuser(authId)) {
        userInfo.checkPrivs(authId, '/', ['Permissions.Modify']);
        if (userid.endsWith('@pam')) {
          throw new ForbiddenError(
            `permission check failed - only root@pam may change the password of '${userid}'`,
          );
        }
      }
      // after the permission check, so that the answer reveals nothing to those not allowed
      if (!readUserConfig(server.paths.configDir).config.users.has(userid)) {
        throw new NotFoundError(`user '${userid}' does not exist.`);
      }
      if (!hasLocalPasswordRealm(userid)) {
        throw new BadRequestError(
          `parameter verification failed - 'userid': realm '${userid.slice(userid.lastIndexOf('@') + 1)}' has no local passwords`,
        );
      }
      await setPassword(server.paths.configDir, userid, password);
      request.log.info({ userid, by: authId }, 'password changed');
      return null;
    },
  }),
];
