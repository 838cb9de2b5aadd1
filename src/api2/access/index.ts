/** `/access`: login, users and their API tokens, the ACL. */
import type { AnyRoute } from '../../server/route.js';
import { routes as acl } from './acl.js';
import { routes as ticket } from './ticket.js';
import { routes as token } from './users/token.js';
import { routes as users } from './users.js';

export const routes: AnyRoute[] = [...ticket, ...users, ...token, ...acl];
