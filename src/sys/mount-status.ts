/**
 * Whether a filesystem is mounted at a directory, as PBS decides a removable datastore's
 * `mount-status` (`pbs-datastore/src/datastore.rs`, `is_datastore_mounted_at`): the device
 * `/dev/disk/by-uuid/UUID` must be a block device, and `/proc/self/mountinfo` must list a mount
 * at exactly that directory whose source is the same block device. Any failure to find out reads
 * as "not mounted", as in PBS. Looks at /dev and /proc only, never inside the mount point.
 */
import { readFileSync, statSync } from 'node:fs';

/** mountinfo escapes blanks, tabs, newlines and backslashes as `\NNN` (octal). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function blockDevice(path: string): number | undefined {
  try {
    const st = statSync(path);
    return st.isBlockDevice() ? st.rdev : undefined;
  } catch {
    return undefined;
  }
}

/** True when the filesystem with `uuid` is mounted at `mountPoint`. */
export function isMountedAt(mountPoint: string, uuid: string): boolean {
  if (uuid.includes('/')) return false;
  const device = blockDevice(`/dev/disk/by-uuid/${uuid}`);
  if (device === undefined) return false;
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  for (const line of info.split('\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || fields.length < dash + 3) continue;
    if (unescapeMountField(fields[4] ?? '') !== mountPoint) continue;
    const source = unescapeMountField(fields[dash + 2]!);
    if (source.startsWith('/') && blockDevice(source) === device) return true;
  }
  return false;
}
