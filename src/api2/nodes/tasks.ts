/**
 * `/nodes/{node}/tasks` (PBS `src/api2/node/tasks.rs`): the task list, a task's status and log,
 * and stopping it. `{node}` is `localhost` or this node's name. Access to a single task is
 * ownership-checked by `checkTaskAccess` (src/tasks/task-access.ts).
 */
import { TaskListItemSchema } from '../../api-types/tasks.js';
import { Type } from 'typebox';
import { authIdUser, isTokenId } from '../../config/user-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { NodeSchema, UpidSchema } from '../../http/schemas.js';
import { checkTaskAccess } from '../../tasks/task-access.js';
import { checkNode } from './check-node.js';
import { parseUpid } from '../../tasks/upid.js';

const TaskParams = Type.Object({ node: NodeSchema, upid: UpidSchema });

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/nodes/:node/tasks',
    params: Type.Object({ node: NodeSchema }),
    query: Type.Object({
      start: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Type.Integer({ minimum: 0 })),
      running: Type.Optional(Type.Boolean()),
      errors: Type.Optional(Type.Boolean()),
      userfilter: Type.Optional(Type.String()),
      store: Type.Optional(Type.String()),
      typefilter: Type.Optional(Type.String()),
      since: Type.Optional(Type.Integer()),
      until: Type.Optional(Type.Integer()),
    }),
    permission: filtered(
      "with Sys.Audit on /system/tasks all tasks, else the caller's own (a user's: also its tokens')",
    ),
    description:
      "List tasks, newest first, with the `total` attribute. With Sys.Audit on /system/tasks all tasks; otherwise the caller's own (for a user, also those of its tokens).",
    returns: Type.Array(TaskListItemSchema),
    handler: ({ params, query, authId, userInfo, server, setAttribute }) => {
      checkNode(server, params.node);
      let authIds: string[] | undefined;
      if (!userInfo.hasPrivs(authId, '/system/tasks', ['Sys.Audit'])) {
        authIds = [authId];
        if (!isTokenId(authId)) {
          for (const id of userInfo.users.tokens.keys()) if (authIdUser(id) === authId) authIds.push(id);
        }
      }
      const { items, total } = server.tasks.list({ ...query, authIds });
      setAttribute('total', total);
      return items;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/nodes/:node/tasks/:upid/status',
    params: TaskParams,
    permission: filtered("the task's owner (or the owner of its token), else Sys.Audit on /system/tasks"),
    description:
      'Task status. Owners (and the owner of the token that started it) or Sys.Audit on /system/tasks.',
    handler: ({ params, authId, userInfo, server }) => {
      checkNode(server, params.node);
      const u = parseUpid(params.upid);
      checkTaskAccess(userInfo, authId, u.authId, 'Sys.Audit');
      const item = server.tasks.item(params.upid);
      const progress = server.tasks.progressOf(params.upid);
      const errorCode = server.tasks.errorCode(params.upid);
      return {
        upid: item.upid,
        node: item.node,
        pid: item.pid,
        pstart: item.pstart,
        starttime: item.starttime,
        type: item.worker_type,
        ...(item.worker_id !== undefined && { id: item.worker_id }),
        user: authIdUser(item.user),
        ...(isTokenId(item.user) && { tokenid: item.user.slice(item.user.indexOf('!') + 1) }),
        status: item.endtime === undefined ? 'running' : 'stopped',
        ...(item.status !== undefined && { exitstatus: item.status }),
        // Stowage extension (PBS clients ignore it): the failed task's error code
        ...(errorCode !== undefined && { 'error-code': errorCode }),
        ...(item.endtime !== undefined && { endtime: item.endtime }),
        ...(progress !== undefined && { progress }),
      };
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/nodes/:node/tasks/:upid/log',
    params: TaskParams,
    query: Type.Object({
      start: Type.Optional(Type.Integer({ minimum: 0 })),
      limit: Type.Optional(Type.Integer({ minimum: 0 })),
      'test-status': Type.Optional(Type.Boolean()),
    }),
    permission: filtered("the task's owner (or the owner of its token), else Sys.Audit on /system/tasks"),
    description:
      'Task log lines `{n, t}` (n counts from 1), with the `total` attribute and, with `test-status`, `active`. Owners or Sys.Audit on /system/tasks.',
    handler: ({ params, query, authId, userInfo, server, setAttribute }) => {
      checkNode(server, params.node);
      const u = parseUpid(params.upid);
      checkTaskAccess(userInfo, authId, u.authId, 'Sys.Audit');
      const { lines, total } = server.tasks.readLog(params.upid, query.start ?? 0, query.limit ?? 50);
      setAttribute('total', total);
      if (query['test-status']) setAttribute('active', server.tasks.isRunning(params.upid));
      return lines;
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/nodes/:node/tasks/:upid',
    params: TaskParams,
    permission: filtered("the task's owner (or the owner of its token), else Sys.Modify on /system/tasks"),
    protected: true,
    description: 'Ask a running task to stop. Owners or Sys.Modify on /system/tasks.',
    handler: ({ params, authId, userInfo, server }) => {
      checkNode(server, params.node);
      const u = parseUpid(params.upid);
      checkTaskAccess(userInfo, authId, u.authId, 'Sys.Modify');
      server.tasks.item(params.upid); // 404 for unknown tasks
      server.tasks.abortTask(params.upid);
      return null;
    },
  }),
];
