/**
 * `POST /admin/datastore/{store}/change-owner` (PBS `set_backup_owner`, reference §2): give a
 * backup group to another user or API token. A `write` operation (design §2).
 *
 * Datastore.Modify on the group's namespace may give any group to any active user or token.
 * Datastore.Backup alone only moves a group the caller owns between the caller and the caller's
 * own tokens (PBS's table: token → token of the same user, token → its user, user → own token;
 * never user → user).
 */
import { Type } from 'typebox';
import { parseAuthid } from '../../../api-types/names.js';
import { authIdUser, isTokenId } from '../../../config/user-config.js';
import { BadRequestError, ForbiddenError, NotFoundError } from '../../../errors.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { AuthidSchema } from '../../../http/schemas.js';
import { ownerChecked } from './access.js';
import { GroupQuery, groupOf, StoreParams } from './common.js';

const MODIFY = ['Datastore.Modify'];
const BACKUP = ['Datastore.Backup'];

/**
 * Whether a caller with Datastore.Backup only may move a group from `owner` to `newOwner`: PBS
 * allows only moves between a user and that user's own tokens, made by the user.
 */
export function mayMoveOwnGroup(caller: string, owner: string, newOwner: string): boolean {
  const ownerIsToken = isTokenId(owner);
  const newIsToken = isTokenId(newOwner);
  if (ownerIsToken && newIsToken)
    return authIdUser(owner) === authIdUser(newOwner) && authIdUser(owner) === caller;
  if (ownerIsToken) return authIdUser(owner) === caller && newOwner === caller;
  if (newIsToken) return owner === caller && authIdUser(newOwner) === caller;
  return false;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/change-owner',
    params: StoreParams,
    body: Type.Object({ ...GroupQuery, 'new-owner': AuthidSchema }),
    // the owner part is PBS's own rule here (user <-> own token), not plain ownership
    permission: ownerChecked({ path: '/datastore/{store}/{ns}', full: MODIFY, owner: BACKUP }),
    protected: true,
    description:
      'Change the owner of a backup group (write operation). Datastore.Modify on the namespace, or ' +
      "Datastore.Backup to move a group the caller owns between the caller and the caller's own " +
      'API tokens. The new owner must be an existing, enabled user or API token.',
    handler: ({ body, authId, userInfo, access }) => {
      const group = groupOf(body);
      const newOwner = parseAuthid(body['new-owner'], 'new-owner').authid;
      return access.withStore('reclaim', { kind: 'change-owner', detail: group.toString() }, async (ds) => {
        if (!ds.groupExists(group)) throw new NotFoundError(`backup group '${group}' does not exist`);
        const owner = ds.getOwner(group);
        if (!access.full && !mayMoveOwnGroup(authId, owner, newOwner)) {
          throw new ForbiddenError(
            `${authId} does not have permission to change owner of backup group '${group}' to ${newOwner}`,
          );
        }
        if (!userInfo.isActive(newOwner)) {
          throw new BadRequestError(
            `${isTokenId(newOwner) ? 'API token' : 'user'} '${newOwner}' is inactive or non-existent`,
            { param: 'new-owner' },
          );
        }
        await ds.changeOwner(group, owner, newOwner);
        return null;
      });
    },
  }),
];
