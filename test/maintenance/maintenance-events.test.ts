/**
 * The instance's maintenance history (SQLite) against the event log conformance suite: two
 * handles on one file stand for two processes of the instance (server and CLI).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteMaintenanceEventLog } from '../../src/maintenance/maintenance-events.js';
import { maintenanceEventLogConformance } from '../suites/maintenance-event-log-conformance.js';

maintenanceEventLogConformance('SQLite (one instance, two processes)', ({ keep }) => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-events-test-'));
  const file = join(dir, 'maintenance-events.sqlite');
  const opts = keep !== undefined ? { keep } : {};
  const log = new SqliteMaintenanceEventLog(file, opts);
  const other = new SqliteMaintenanceEventLog(file, opts);
  return Promise.resolve({
    log,
    other,
    cleanup() {
      log.close();
      other.close();
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  });
});
