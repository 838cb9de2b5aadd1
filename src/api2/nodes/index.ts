/** `/nodes/{node}`: per-node resources (tasks). */
import type { AnyRoute } from '../../server/route.js';
import { routes as tasks } from './tasks.js';

export const routes: AnyRoute[] = [...tasks];
