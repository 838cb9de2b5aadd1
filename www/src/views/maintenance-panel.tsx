/** The panel shown instead of a datastore's contents while maintenance refuses reads. */
import { TrashIcon, WrenchIcon } from '../components.js';
import type { MaintenanceMode } from '../maintenance.js';

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
        <h2>{deleting ? 'This datastore is being deleted' : `Datastore is in ${mode.type} maintenance`}</h2>
        <p class="panel-message">
          maintenance: {deleting ? 'datastore is being deleted' : mode.message || '(no message given)'}
        </p>
        {!deleting && (
          <p class="muted">Its contents cannot be read until an administrator clears the maintenance mode.</p>
        )}
      </div>
    </article>
  );
}

/** Offline and delete refuse reads, so status and content are not even asked for. */
export function refusesReads(mode: MaintenanceMode | undefined): boolean {
  return mode?.type === 'offline' || mode?.type === 'delete';
}
