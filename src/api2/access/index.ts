/** `/access`: login, users and their API tokens, the ACL, roles, effective permissions, passwords. */
import type { AnyRoute } from '../../http/route.js';
import { routes as acl } from './acl.js';
import { routes as password } from './password.js';
import { routes as permissions } from './permissions.js';
import { routes as roles } from './roles.js';
import { routes as ticket } from './ticket.js';
import { routes as token } from './users/token.js';
import { routes as users } from './users.js';

export const routes: AnyRoute[] = [
  ...ticket,
  ...users,
  ...token,
  ...acl,
  ...roles,
  ...permissions,
  ...password,
];
