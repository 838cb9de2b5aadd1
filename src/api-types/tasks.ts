/**
 * A task list entry, PBS `TaskListItem` (JSON keys as PBS spells them): the route schema
 * (src/api2/nodes/tasks.ts), the task manager's type and the web UI's, declared once.
 */
import { Type, type Static } from 'typebox';

export const TaskListItemSchema = Type.Object({
  upid: Type.String(),
  node: Type.String(),
  pid: Type.Integer(),
  pstart: Type.Integer(),
  starttime: Type.Integer(),
  worker_type: Type.String(),
  worker_id: Type.Optional(Type.String()),
  user: Type.String(),
  endtime: Type.Optional(Type.Integer()),
  status: Type.Optional(Type.String()),
});
export type TaskListItem = Static<typeof TaskListItemSchema>;
