/**
 * Who may see or stop a task (PBS `check_task_access`): the auth id that started it, the user
 * owning the token that started it, or anyone with `priv` (Sys.Audit to read, Sys.Modify to
 * stop) on `/system/tasks`. Every ownership-checked task route calls this one helper.
 */
import { authIdUser, isTokenId } from '../config/user-config.js';
import type { UserInfo } from '../http/permissions.js';

export function mayAccessTask(
  info: UserInfo,
  authId: string,
  taskAuthId: string,
  priv: 'Sys.Audit' | 'Sys.Modify',
): boolean {
  if (taskAuthId === authId) return true;
  if (!isTokenId(authId) && isTokenId(taskAuthId) && authIdUser(taskAuthId) === authId) return true;
  return info.hasPrivs(authId, '/system/tasks', [priv]);
}

/** Throw the usual 403 unless `mayAccessTask`. */
export function checkTaskAccess(
  info: UserInfo,
  authId: string,
  taskAuthId: string,
  priv: 'Sys.Audit' | 'Sys.Modify',
): void {
  if (!mayAccessTask(info, authId, taskAuthId, priv)) info.checkPrivs(authId, '/system/tasks', [priv]);
}
