/** `GET /access/roles` (PBS `src/api2/access/role.rs`): the built-in roles and their privileges. */
import { Type } from 'typebox';
import { ROLE_COMMENTS, ROLE_NAMES, ROLES, PRIVILEGES } from '../../config/acl-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/access/roles',
    permission: filtered('nothing to filter: the role table is the same for every caller'),
    description:
      'List the roles, each with its privileges (in PBS privilege order) and description. Any authenticated user or token may read it.',
    returns: Type.Array(
      Type.Object({
        roleid: Type.String(),
        privs: Type.Array(Type.String()),
        comment: Type.Optional(Type.String()),
      }),
    ),
    handler: () =>
      ROLE_NAMES.map((roleid) => ({
        roleid,
        privs: PRIVILEGES.filter((p) => ROLES[roleid]!.includes(p)),
        comment: ROLE_COMMENTS[roleid],
      })),
  }),
];
