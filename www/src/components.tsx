/** Small shared pieces: icons, the maintenance marker, usage bar, dialogs, error boxes. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { bytes, percent } from './format.js';
import { describe, typeLabel, type MaintenanceMode } from './maintenance.js';

// Inline SVG rather than an icon font or emoji: the marker must look the same on every system,
// including headless browsers without emoji fonts.
export function WrenchIcon() {
  return (
    <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path
        fill="currentColor"
        d="M22.7 19.3 13.6 10.2c.9-2.3.4-5-1.5-6.9C10.1 1.3 7.1.9 4.7 2l4.4 4.4-3 3L1.6 5C.4 7.4.9 10.4 2.9 12.4c1.9 1.9 4.6 2.4 6.9 1.5l9.1 9.1c.4.4 1 .4 1.4 0l2.3-2.3c.5-.4.5-1.1.1-1.4z"
      />
    </svg>
  );
}

export function TrashIcon() {
  return (
    <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path
        fill="currentColor"
        d="M6 19c0 1.1.9 2 2 2h8a2 2 0 0 0 2-2V7H6v12zM19 4h-3.5l-1-1h-5l-1 1H5v2h14V4z"
      />
    </svg>
  );
}

export function CheckIcon() {
  return (
    <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path fill="currentColor" d="M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z" />
    </svg>
  );
}

/**
 * The maintenance marker: icon plus type, and the message both as visible text and as title
 * (PBS shows it only as a tooltip, reference §4.2; a tooltip alone is not accessible).
 */
export function MaintenanceMarker({ mode, compact }: { mode: MaintenanceMode; compact?: boolean }) {
  const deleting = mode.type === 'delete';
  return (
    <span class={`marker marker-${mode.type}`} title={describe(mode)} data-testid="maintenance-marker">
      {deleting ? <TrashIcon /> : <WrenchIcon />}
      <span class="marker-text">
        <strong>{typeLabel(mode.type)}</strong>
        {mode.message && !compact && `: ${mode.message}`}
      </span>
    </span>
  );
}

export function UsageBar({ used, total, label }: { used?: number; total?: number; label: string }) {
  const p = percent(used, total);
  if (p === undefined) return <span class="muted">–</span>;
  return (
    <div class="usage">
      <progress
        value={p}
        max={100}
        aria-label={label}
        class={p > 90 ? 'usage-critical' : p > 75 ? 'usage-warn' : ''}
      />
      <small>
        {p.toFixed(1)}% ({bytes(used)} of {bytes(total)})
      </small>
    </div>
  );
}

export function ErrorBox({ error, title }: { error: Error | undefined; title?: string }) {
  if (!error) return null;
  return (
    <div class="error-box" role="alert">
      {title && <strong>{title}: </strong>}
      {error.message}
    </div>
  );
}

/** A modal <dialog>: focus is trapped by the browser, Escape closes it. */
export function Modal({
  title,
  onClose,
  children,
  footer,
  labelId,
  wide,
}: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  footer?: ComponentChildren;
  labelId: string;
  /** For tables with several columns, such as the file browser. */
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e: Event) => {
      e.preventDefault();
      onClose();
    };
    d?.addEventListener('cancel', cancel);
    return () => d?.removeEventListener('cancel', cancel);
  }, [onClose]);
  return (
    <dialog ref={ref} aria-labelledby={labelId}>
      <article class={wide ? 'wide' : undefined}>
        <header>
          <button type="button" aria-label="Close" {...{ rel: 'prev' }} onClick={onClose} />
          <h2 id={labelId} class="dialog-title">
            {title}
          </h2>
        </header>
        {children}
        {footer && <footer>{footer}</footer>}
      </article>
    </dialog>
  );
}

/** Ask before a destructive action. */
export function Confirm({
  title,
  children,
  confirmLabel,
  onConfirm,
  onCancel,
  busy,
  error,
  errorTitle,
}: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
  busy?: boolean;
  error?: Error;
  /** Says whose refusal the error is, e.g. "The server refused to delete it". */
  errorTitle?: string;
}) {
  return (
    <Modal
      title={title}
      onClose={onCancel}
      labelId="confirm-title"
      footer={
        <>
          <button type="button" class="secondary" onClick={onCancel}>
            Cancel
          </button>
          <button type="button" class="danger" onClick={onConfirm} aria-busy={busy} disabled={busy}>
            {confirmLabel}
          </button>
        </>
      }
    >
      {children}
      <ErrorBox error={error} title={errorTitle} />
    </Modal>
  );
}

export function Loading({ what }: { what: string }) {
  return <p aria-busy="true">Loading {what}…</p>;
}
