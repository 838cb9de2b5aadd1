/** Display helpers: sizes, times, durations. */

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** Seconds, milliseconds or an ISO string to a Date. */
export function toDate(t: number | string | undefined): Date | undefined {
  if (t === undefined || t === null || t === '') return undefined;
  if (typeof t === 'string') {
    const d = new Date(/^\d+$/.test(t) ? Number(t) * 1000 : t);
    return Number.isNaN(d.getTime()) ? undefined : d;
  }
  return new Date(t < 1e12 ? t * 1000 : t);
}

/** "10:02" for today, "2024-05-01 10:02" otherwise. */
export function clock(t: number | string | undefined): string {
  const d = toDate(t);
  if (!d) return '–';
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return hm;
  const ymd = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  return `${ymd} ${hm}`;
}

export function dateTime(t: number | string | undefined): string {
  const d = toDate(t);
  return d ? d.toLocaleString() : '–';
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function percent(used: number | undefined, total: number | undefined): number | undefined {
  if (!used || !total) return used === 0 && total ? 0 : undefined;
  return Math.min(100, (used / total) * 100);
}

/** A snapshot as PBS names it: `host/web01/2024-05-01T08:00:00Z`. */
export function snapshotName(s: {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
}): string {
  return `${s['backup-type']}/${s['backup-id']}/${new Date(s['backup-time'] * 1000).toISOString().replace('.000', '')}`;
}
