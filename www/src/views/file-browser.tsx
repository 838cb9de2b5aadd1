/**
 * The file browser of a snapshot (PBS's "File Browser" on a snapshot of the content tab): the
 * tree of its pxar archives, one directory at a time as it is expanded
 * (`GET admin/datastore/{store}/catalog`), and a selected file, or a folder as zip, downloaded
 * by the browser itself from `pxar-file-download` (the ticket cookie goes with it).
 *
 * The listing comes from the snapshot's catalog (`catalog.pcat1.didx`); a snapshot with pxar
 * archives but no catalog (some third-party clients upload none) is listed from each archive
 * with `archive-name`, as PBS does.
 */
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, apiUrl, seg } from '../api.js';
import { ErrorBox, Loading, Modal } from '../components.js';
import { bytes, dateTime, snapshotName } from '../format.js';
import { useApi } from '../hooks.js';
import type { ArchiveEntry, Snapshot } from '../types.js';

/**
 * PBS `CATALOG_NAME` (src/api-types/archive-name.ts has it too, but importing that module brings
 * the server's whole error registry into the UI bundle).
 */
const CATALOG_ARCHIVE_NAME = 'catalog.pcat1.didx';

/** Archives that can be browsed: pxar, or the metadata half of a split pxar archive. */
const PXAR_ARCHIVE = /\.(pxar|mpxar)\.didx$/;

/** How a snapshot's tree is listed: from its catalog, or from each pxar archive itself. */
export type BrowseSource = { catalog: true } | { catalog: false; archives: string[] };

/**
 * Whether a snapshot can be browsed, and how; undefined when it has no pxar archive (a tar or
 * image backup). Encrypted archives are left out: the server cannot read them.
 */
export function browseSource(snapshot: Snapshot): BrowseSource | { refused: string } | undefined {
  const files = snapshot.files ?? [];
  const pxar = files.filter((f) => PXAR_ARCHIVE.test(f.filename));
  const readable = pxar.filter((f) => f['crypt-mode'] !== 'encrypt');
  if (pxar.length > 0 && readable.length === 0)
    return { refused: 'encrypted archives cannot be browsed on the server' };
  const catalog = files.find((f) => f.filename === CATALOG_ARCHIVE_NAME);
  if (catalog && catalog['crypt-mode'] !== 'encrypt') return { catalog: true };
  if (readable.length > 0) return { catalog: false, archives: readable.map((f) => f.filename) };
  return undefined;
}

/** One entry of the tree, with what it takes to list or download it again. */
interface TreeNode {
  /** Unique in the tree (the same path may stand in two archives listed without a catalog). */
  key: string;
  /** What the API takes back: base64 of the path, as the listing handed it out. */
  filepath: string;
  /** Set when the tree is listed from the archive itself (no catalog). */
  archive?: string;
  text: string;
  type: string;
  size?: number;
  mtime?: number;
  /** Shown to the user and used by the tests: `root.pxar.didx/etc/hosts`. */
  path: string;
  depth: number;
  parent?: TreeNode;
}

const TYPE_LABELS: Readonly<Record<string, string>> = {
  d: 'folder',
  f: 'file',
  l: 'symlink',
  h: 'hard link',
  b: 'block device',
  c: 'character device',
  p: 'FIFO',
  s: 'socket',
};

const DEVICE_ICON =
  'M15 9H9v6h6V9zm-2 4h-2v-2h2v2zm8-2V9h-2V7c0-1.1-.9-2-2-2h-2V3h-2v2h-2V3H9v2H7c-1.1 0-2 .9-2 2v2H3v2h2v2H3v2h2v2c0 1.1.9 2 2 2h2v2h2v-2h2v2h2v-2h2c1.1 0 2-.9 2-2v-2h2v-2h-2v-2h2zm-4 6H7V7h10v10z';

// 24×24 paths in the style of components.tsx's icons (Material Design shapes)
const TYPE_ICONS: Readonly<Record<string, string>> = {
  d: 'M10 4H4c-1.1 0-2 .9-2 2v12c0 1.1.9 2 2 2h16c1.1 0 2-.9 2-2V8c0-1.1-.9-2-2-2h-8l-2-2z',
  f: 'M6 2c-1.1 0-2 .9-2 2v16c0 1.1.9 2 2 2h12c1.1 0 2-.9 2-2V8l-6-6H6zm7 7V3.5L18.5 9H13z',
  l: 'M3.9 12c0-1.71 1.39-3.1 3.1-3.1h4V7H7c-2.76 0-5 2.24-5 5s2.24 5 5 5h4v-1.9H7c-1.71 0-3.1-1.39-3.1-3.1zM8 13h8v-2H8v2zm9-6h-4v1.9h4c1.71 0 3.1 1.39 3.1 3.1s-1.39 3.1-3.1 3.1h-4V17h4c2.76 0 5-2.24 5-5s-2.24-5-5-5z',
  h: 'M16 1H4c-1.1 0-2 .9-2 2v14h2V3h12V1zm-1 4 6 6v10c0 1.1-.9 2-2 2H7.99C6.89 23 6 22.1 6 21l.01-14c0-1.1.89-2 1.99-2h7zm-1 7h5.5L14 6.5V12z',
  b: DEVICE_ICON,
  c: DEVICE_ICON,
  p: 'M6.99 11 3 15l3.99 4v-3H14v-2H6.99v-3zM21 9l-3.99-4v3H10v2h7.01v3L21 9z',
  s: 'M16.01 7 16 3h-2v4h-4V3H8v4h-.01C7 6.99 6 7.99 6 8.99v5.49L9.5 18v3h5v-3l3.5-3.51v-5.5c0-1-1-2-1.99-1.99z',
};

function TypeIcon({ type }: { type: string }) {
  const label = TYPE_LABELS[type] ?? `type ${type}`;
  return (
    <svg class={`icon entry-icon entry-${type}`} viewBox="0 0 24 24" role="img" aria-label={label}>
      <title>{label}</title>
      <path fill="currentColor" d={TYPE_ICONS[type] ?? TYPE_ICONS.f!} />
    </svg>
  );
}

/** What `pxar-file-download` serves: files, hard links (their file) and folders (as zip). */
const downloadable = (n: TreeNode) => n.type === 'f' || n.type === 'h' || n.type === 'd';

/** The download's file name, after the entry as PBS's UI names it: a folder gets `.zip`. */
const downloadName = (n: TreeNode) => (n.type === 'd' ? `${n.text}.zip` : n.text);

/** Folders first, then by name, as file managers (and PBS's tree) show them. */
function byFolderThenName(a: TreeNode, b: TreeNode): number {
  if ((a.type === 'd') !== (b.type === 'd')) return a.type === 'd' ? -1 : 1;
  return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
}

function nodeOf(e: ArchiveEntry, parent: TreeNode | undefined, archive: string | undefined): TreeNode {
  return {
    key: `${archive ?? ''}:${e.filepath}`,
    filepath: e.filepath,
    archive,
    text: e.text,
    type: e.type,
    size: e.size,
    mtime: e.mtime,
    path: parent ? `${parent.path}/${e.text}` : e.text,
    depth: parent ? parent.depth + 1 : 0,
    parent,
  };
}

export function FileBrowser({
  store,
  snapshot,
  source,
  onClose,
}: {
  store: string;
  snapshot: Snapshot;
  source: BrowseSource;
  onClose: () => void;
}) {
  const base = `/admin/datastore/${seg(store)}`;
  const snapshotParams = {
    'backup-type': snapshot['backup-type'],
    'backup-id': snapshot['backup-id'],
    'backup-time': snapshot['backup-time'],
  };

  /** The members of `dir`; without `dir` the top: the snapshot's archives. */
  const list = async (dir: TreeNode | undefined, signal?: AbortSignal): Promise<TreeNode[]> => {
    let nodes: TreeNode[];
    if (!dir && !source.catalog) {
      // one top folder per archive, each listed from the archive itself from then on
      nodes = source.archives.map((name) =>
        nodeOf({ filepath: btoa('/'), text: name, type: 'd', leaf: false }, undefined, name),
      );
    } else {
      const entries = (
        await api.get<ArchiveEntry[]>(
          `${base}/catalog`,
          { ...snapshotParams, filepath: dir?.filepath ?? 'root', 'archive-name': dir?.archive },
          signal,
        )
      ).data;
      nodes = entries.map((e) => nodeOf(e, dir, dir?.archive));
    }
    return nodes.sort(byFolderThenName);
  };

  const top = useApi((signal) => list(undefined, signal), []);
  const [children, setChildren] = useState<ReadonlyMap<string, TreeNode[]>>(new Map());
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(new Set());
  const [loading, setLoading] = useState<string | undefined>(undefined);
  const [selected, setSelected] = useState<TreeNode | undefined>(undefined);
  const [failure, setFailure] = useState<{ what: string; error: Error } | undefined>(undefined);
  const [preparing, setPreparing] = useState(false);

  const toggle = async (node: TreeNode) => {
    setFailure(undefined);
    if (expanded.has(node.key)) {
      const next = new Set(expanded);
      next.delete(node.key);
      setExpanded(next);
      return;
    }
    if (!children.has(node.key)) {
      setLoading(node.key);
      try {
        const members = await list(node);
        setChildren((m) => new Map(m).set(node.key, members));
      } catch (err) {
        setFailure({ what: `Could not list ${node.path}`, error: err as Error });
        return;
      } finally {
        setLoading(undefined);
      }
    }
    setExpanded((s) => new Set(s).add(node.key));
  };

  const download = async (node: TreeNode) => {
    setFailure(undefined);
    setPreparing(true);
    try {
      // A refused download (offline datastore, missing privilege) would only show as a failed
      // item in the browser's download list: ask first for a listing, a cheap read under the same
      // admission and privileges, so the refusal shows here with the server's message.
      await list(node.type === 'd' ? node : node.parent);
    } catch (err) {
      setFailure({ what: `Could not download ${node.path}`, error: err as Error });
      return;
    } finally {
      setPreparing(false);
    }
    const link = document.createElement('a');
    link.href = apiUrl(`${base}/pxar-file-download`, {
      ...snapshotParams,
      filepath: node.filepath,
      'archive-name': node.archive,
    });
    link.download = downloadName(node);
    document.body.append(link);
    link.click();
    link.remove();
  };

  // the rows as shown, for the arrow keys
  const visible: TreeNode[] = [];
  const collect = (nodes: TreeNode[]) => {
    for (const n of nodes) {
      visible.push(n);
      const members = children.get(n.key);
      if (expanded.has(n.key) && members) collect(members);
    }
  };
  if (top.data) collect(top.data);

  /**
   * Keys on an entry's name, as in a file manager's tree: up and down move the selection, right
   * opens a folder, left closes it (or goes to the parent).
   */
  const onKey = (e: KeyboardEvent, n: TreeNode, index: number) => {
    const focusRow = (target: TreeNode | undefined) => {
      if (!target) return;
      setSelected(target);
      const buttons = (e.currentTarget as HTMLElement).closest('tbody')?.querySelectorAll('.entry-select');
      (buttons?.[visible.indexOf(target)] as HTMLElement | undefined)?.focus();
    };
    const open = expanded.has(n.key);
    if (e.key === 'ArrowDown') focusRow(visible[index + 1]);
    else if (e.key === 'ArrowUp') focusRow(visible[index - 1]);
    else if (e.key === 'ArrowRight' && n.type === 'd' && !open) void toggle(n);
    else if (e.key === 'ArrowLeft' && open) void toggle(n);
    else if (e.key === 'ArrowLeft') focusRow(n.parent);
    else return;
    e.preventDefault();
  };

  const rows: JSX.Element[] = visible.map((n, index) => {
    const isDir = n.type === 'd';
    const open = expanded.has(n.key);
    return (
      <tr
        key={n.key}
        data-path={n.path}
        class={selected?.key === n.key ? 'selected' : undefined}
        onClick={() => setSelected(n)}
        onDblClick={() => isDir && void toggle(n)}
      >
        <td class="entry-name" style={{ paddingLeft: `${0.6 + n.depth * 1.25}rem` }}>
          {isDir ? (
            <button
              type="button"
              class="link-button tree-toggle"
              aria-expanded={open}
              aria-label={`${open ? 'Collapse' : 'Expand'} ${n.text}`}
              aria-busy={loading === n.key}
              onClick={(e) => {
                e.stopPropagation();
                void toggle(n);
              }}
            >
              {open ? '▾' : '▸'}
            </button>
          ) : (
            <span class="tree-toggle" />
          )}
          <TypeIcon type={n.type} />
          <button
            type="button"
            class="link-button entry-select"
            aria-pressed={selected?.key === n.key}
            onClick={() => setSelected(n)}
            onKeyDown={(e) => onKey(e, n, index)}
          >
            {n.text}
          </button>
        </td>
        <td class="entry-size">{n.size !== undefined ? bytes(n.size) : ''}</td>
        <td class="entry-mtime">{n.mtime !== undefined ? dateTime(n.mtime) : ''}</td>
      </tr>
    );
  });

  const canDownload = selected !== undefined && downloadable(selected);
  return (
    <Modal
      title={`File browser: ${snapshotName(snapshot)}`}
      labelId="file-browser-title"
      wide
      onClose={onClose}
      footer={
        <>
          <span class="selection muted">{selected ? selected.path : 'Select a file or folder'}</span>
          <button type="button" class="secondary" onClick={onClose}>
            Close
          </button>
          <button
            type="button"
            disabled={!canDownload || preparing}
            aria-busy={preparing}
            title={
              selected && !downloadable(selected)
                ? `a ${TYPE_LABELS[selected.type] ?? selected.type} cannot be downloaded`
                : undefined
            }
            onClick={() => selected && void download(selected)}
          >
            {selected?.type === 'd' ? 'Download as zip' : 'Download'}
          </button>
        </>
      }
    >
      <ErrorBox error={top.error} title="Could not open the file catalog" />
      <ErrorBox error={failure?.error} title={failure?.what} />
      {!top.data && !top.error && <Loading what="file catalog" />}
      {top.data && (
        <div class="file-tree">
          <table class="striped" aria-label={`Files of ${snapshotName(snapshot)}`}>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col" class="entry-size">
                  Size
                </th>
                <th scope="col">Modified</th>
              </tr>
            </thead>
            <tbody>{rows}</tbody>
          </table>
        </div>
      )}
    </Modal>
  );
}
