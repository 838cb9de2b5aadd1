/** `/status/...` (PBS `src/api2/status.rs`). */
import type { AnyRoute } from '../../http/route.js';
import { routes as datastoreUsage } from './datastore-usage.js';

export const routes: AnyRoute[] = [...datastoreUsage];
