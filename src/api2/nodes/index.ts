/** `/nodes/{node}`: per-node resources (tasks, status). */
import type { AnyRoute } from '../../http/route.js';
import { routes as status } from './status.js';
import { routes as tasks } from './tasks.js';

export const routes: AnyRoute[] = [...tasks, ...status];
