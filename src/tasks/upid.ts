/**
 * PBS UPIDs (proxmox-schema `upid.rs`):
 * `UPID:<node>:<pid 8 hex>:<pstart 8-9 hex>:<task id 8 hex>:<starttime 8 hex>:<worker_type>:<worker_id>:<authid>:`
 * with hex in upper case and the worker id escaped systemd-style (`/` → `-`, other unsafe bytes
 * → `\xNN`). Pure codec.
 */
import { BadRequestError } from '../errors.js';

export interface Upid {
  node: string;
  pid: number;
  /** Process start time in clock ticks (`/proc/PID/stat` field 22), to tell a reused pid apart. */
  pstart: number;
  /** Counter inside the process. */
  taskId: number;
  /** Task start, epoch seconds. */
  starttime: number;
  workerType: string;
  workerId?: string;
  authId: string;
}

export const UPID_PATTERN =
  '^UPID:[a-zA-Z0-9](?:[a-zA-Z0-9\\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8,16}:' +
  '[0-9A-Fa-f]{8}:[^:\\s]+:[^:\\s]*:[^:\\s]+:$';
const UPID_RE =
  /^UPID:(?<node>[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?):(?<pid>[0-9A-Fa-f]{8}):(?<pstart>[0-9A-Fa-f]{8,9}):(?<taskId>[0-9A-Fa-f]{8,16}):(?<starttime>[0-9A-Fa-f]{8}):(?<wtype>[^:\s]+):(?<wid>[^:\s]*):(?<authid>[^:\s]+):$/;

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** systemd-unit escaping as PBS applies it to worker ids. */
export function escapeWorkerId(id: string): string {
  let out = '';
  const bytes = Buffer.from(id, 'utf8');
  bytes.forEach((c, i) => {
    const ch = String.fromCharCode(c);
    if (ch === '/') out += '-';
    else if ((i === 0 && ch === '.') || !/[_.0-9a-zA-Z]/.test(ch))
      out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  });
  return out;
}

export function unescapeWorkerId(text: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length;) {
    const ch = text[i]!;
    if (ch === '\\') {
      const hex = text.slice(i + 2, i + 4);
      if (text[i + 1] !== 'x' || !/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new BadRequestError(`unable to parse UPID worker id '${text}': error in escape sequence`);
      }
      bytes.push(parseInt(hex, 16));
      i += 4;
    } else if (ch === '-') {
      bytes.push(0x2f);
      i++;
    } else {
      bytes.push(...Buffer.from(ch, 'utf8'));
      i++;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Format a UPID string. */
export function formatUpid(u: Upid): string {
  const wid = u.workerId === undefined ? '' : escapeWorkerId(u.workerId);
  return `UPID:${u.node}:${hex8(u.pid)}:${hex8(u.pstart)}:${hex8(u.taskId)}:${hex8(u.starttime)}:${u.workerType}:${wid}:${u.authId}:`;
}

/** Parse a UPID string; BadRequestError when it is not one. */
export function parseUpid(text: string): Upid {
  const m = UPID_RE.exec(text);
  if (!m?.groups) throw new BadRequestError(`unable to parse UPID '${text}'`);
  const g = m.groups as Record<
    'node' | 'pid' | 'pstart' | 'taskId' | 'starttime' | 'wtype' | 'wid' | 'authid',
    string
  >;
  return {
    node: g.node,
    pid: parseInt(g.pid, 16),
    pstart: parseInt(g.pstart, 16),
    taskId: parseInt(g.taskId, 16),
    starttime: parseInt(g.starttime, 16),
    workerType: g.wtype,
    workerId: g.wid === '' ? undefined : unescapeWorkerId(g.wid),
    authId: g.authid,
  };
}

/** Whether a worker type or auth id can be placed in a UPID (PBS refuses `/`, `:` and spaces). */
export function isUpidSafe(text: string): boolean {
  return text.length > 0 && !/[/:\s]/.test(text);
}
