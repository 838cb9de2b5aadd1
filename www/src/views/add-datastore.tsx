/**
 * Add a datastore (PBS `POST /config/datastore`, a `create-datastore` task): a directory on this
 * host, or a removable one on a device named by its filesystem UUID with a path relative to the
 * device's root (PBS's `backing-device`; the task mounts the device and leaves it mounted).
 * "Reuse" takes over the datastore already at the path (a disk written elsewhere). The form
 * checks what the server checks before sending; the task's outcome shows here.
 */
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { ErrorBox, Modal } from '../components.js';
import { FILESYSTEM_UUID_RE, SAFE_ID_REGEX } from '../../../src/api-types/names.js';
import { taskOutcome } from './mount-controls.js';

/** What is wrong with the form, field by field (undefined: nothing). */
function problems(f: { name: string; path: string; removable: boolean; uuid: string }) {
  const out: Partial<Record<'name' | 'path' | 'uuid', string>> = {};
  if (!SAFE_ID_REGEX.test(f.name) || f.name.length < 3 || f.name.length > 32)
    out.name = '3 to 32 letters, digits, _ . -; not starting with . or -';
  if (f.removable) {
    if (!FILESYSTEM_UUID_RE.test(f.uuid))
      out.uuid = 'a filesystem UUID such as blkid shows: 8-4-4-4-12 hex digits';
    if (f.path === '' || f.path.startsWith('/') || f.path.split('/').includes('..'))
      out.path = "relative to the device's root, without '..'";
  } else if (!f.path.startsWith('/')) {
    out.path = 'an absolute path on the server';
  }
  return out;
}

export function AddDatastoreDialog({ onClose, onCreated }: { onClose: () => void; onCreated: () => void }) {
  const [name, setName] = useState('');
  const [path, setPath] = useState('');
  const [removable, setRemovable] = useState(false);
  const [uuid, setUuid] = useState('');
  const [reuse, setReuse] = useState(false);
  const [comment, setComment] = useState('');
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  const wrong = problems({ name, path, removable, uuid });
  const invalid = Object.keys(wrong).length > 0;
  const shown = touched ? wrong : {};

  const submit = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    if (invalid) return;
    setBusy(true);
    setError(undefined);
    try {
      const upid = (
        await api.post<string>('/config/datastore', {
          name,
          path,
          ...(removable && { 'backing-device': uuid }),
          ...(reuse && { 'reuse-datastore': true }),
          ...(comment !== '' && { comment }),
        })
      ).data;
      const outcome = await taskOutcome(upid);
      if (outcome !== 'OK' && !outcome.startsWith('WARNINGS')) throw new Error(outcome);
      onCreated();
      onClose();
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  const field = (id: 'name' | 'path' | 'uuid') => ({
    'aria-invalid': shown[id] ? ('true' as const) : undefined,
    'aria-describedby': `add-ds-${id}-help`,
  });
  const help = (id: 'name' | 'path' | 'uuid', text: string) => (
    <small id={`add-ds-${id}-help`} class={shown[id] ? 'field-error' : ''}>
      {shown[id] ?? text}
    </small>
  );

  return (
    <Modal
      title="Add datastore"
      labelId="add-ds-title"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="add-ds-form" disabled={busy || (touched && invalid)} aria-busy={busy}>
            {busy ? 'Creating…' : 'Create'}
          </button>
        </>
      }
    >
      <form id="add-ds-form" onSubmit={submit} noValidate>
        <label for="add-ds-name">
          Name
          <input
            id="add-ds-name"
            value={name}
            onInput={(e) => setName(e.currentTarget.value)}
            {...field('name')}
          />
          {help('name', 'as clients name it in their repository')}
        </label>
        <label>
          <input
            type="checkbox"
            role="switch"
            checked={removable}
            onChange={(e) => setRemovable(e.currentTarget.checked)}
          />
          Removable datastore (on a disk that comes and goes)
        </label>
        {removable && (
          <label for="add-ds-uuid">
            Device UUID
            <input
              id="add-ds-uuid"
              value={uuid}
              placeholder="5c7d2f1e-3a9b-4c6d-8e0f-1a2b3c4d5e6f"
              onInput={(e) => setUuid(e.currentTarget.value.trim())}
              {...field('uuid')}
            />
            {help('uuid', "the filesystem's UUID (blkid); the disk must be connected")}
          </label>
        )}
        <label for="add-ds-path">
          {removable ? 'Path on the device' : 'Path'}
          <input
            id="add-ds-path"
            value={path}
            onInput={(e) => setPath(e.currentTarget.value)}
            {...field('path')}
          />
          {help(
            'path',
            removable
              ? "relative to the device's root, e.g. backups/pbs"
              : 'an absolute directory, missing or empty',
          )}
        </label>
        <label>
          <input
            type="checkbox"
            role="switch"
            checked={reuse}
            onChange={(e) => setReuse(e.currentTarget.checked)}
          />
          Reuse the datastore already at this path
        </label>
        <label for="add-ds-comment">
          Comment
          <input id="add-ds-comment" value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
        </label>
      </form>
      <ErrorBox error={error} title="The datastore was not created" />
    </Modal>
  );
}
