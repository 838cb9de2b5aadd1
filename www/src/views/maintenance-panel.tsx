/** The panel shown instead of a datastore's contents while maintenance refuses reads. */
import { TrashIcon, WrenchIcon } from '../components.js';
import { refuses, typeLabel, type MaintenanceMode } from '../maintenance.js';

/** "Datastore is in maintenance: MESSAGE" instead of an error (PBS masks the panel, §4.2). */
export function MaintenancePanel({ mode }: { mode: MaintenanceMode }) {
  const deleting = mode.type === 'delete';
  return (
    <article
      class={`maintenance-panel ${deleting ? 'deleting' : ''}`}
      data-testid="maintenance-panel"
      role="status"
    >
      <div class="big-icon">{deleting ? <TrashIcon /> : <WrenchIcon />}</div>
      <div>
        <h2>{deleting ? 'This datastore is being deleted' : heading(mode)}</h2>
        <p class="panel-message">
          maintenance:{' '}
          {deleting
            ? 'datastore is being deleted'
            : mode.type === 'unmount'
              ? // a failed unmount leaves its reason as the message (src/maintenance/removable-datastore.ts)
                mode.message || 'datastore is being unmounted'
              : mode.message || '(no message given)'}
        </p>
        {mode.type === 'unmount' && mode.message ? (
          <p class="muted">
            Close what holds the disk and use Unmount again, or clear the maintenance mode to keep using it.
          </p>
        ) : (
          !deleting && (
            <p class="muted">
              Its contents cannot be read until an administrator clears the maintenance mode.
            </p>
          )
        )}
      </div>
    </article>
  );
}

function heading(mode: MaintenanceMode): string {
  if (mode.type === 'unmount') return 'Datastore is being unmounted (Unmounting)';
  return `Datastore is in ${mode.type === 's3-refresh' ? typeLabel(mode.type) : mode.type} maintenance`;
}

/**
 * Offline, delete, unmount and s3-refresh refuse reads, so status and content are not even asked
 * for.
 */
export function refusesReads(mode: MaintenanceMode | undefined): boolean {
  return refuses(mode, 'read');
}
