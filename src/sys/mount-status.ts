/**
 * Whether a filesystem is mounted at a directory, as PBS decides a removable datastore's
 * `mount-status` (`pbs-datastore/src/datastore.rs`, `is_datastore_mounted_at`): `/proc/self/mountinfo`
 * must list a mount at exactly that directory whose source is a block device holding the
 * filesystem with the datastore's UUID. Any failure to find out reads as "not mounted", as in PBS.
 * Looks at /dev, /proc and the device's superblock only, never inside the mount point.
 *
 * PBS finds the device through `/dev/disk/by-uuid/UUID` (udev). Hosts without udev (containers,
 * minimal systems) have no such links, so without one the mounted device's UUID is asked of
 * `blkid`, only when something is mounted at the directory, and remembered for a moment: the
 * admission of every operation on a removable datastore asks this.
 */
import { execFileSync } from 'node:child_process';
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

/** One mount of `/proc/self/mountinfo`. */
export interface MountEntry {
  /** The mount's id (field 1); ids are reused after an unmount. */
  id: string;
  /** The directory inside the filesystem that is mounted (a bind mount's subdirectory). */
  root: string;
  mountPoint: string;
  fsType: string;
  source: string;
  /** The filesystem's options (the last field): ext4 adds `shutdown` and `emergency_ro` here. */
  superOptions: string[];
}

/** The mounts of this process's namespace, in mount order (a later one hides an earlier one). */
export function readMounts(): MountEntry[] {
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: MountEntry[] = [];
  for (const line of info.split('\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || fields.length < dash + 3) continue;
    out.push({
      id: fields[0]!,
      root: unescapeMountField(fields[3] ?? ''),
      mountPoint: unescapeMountField(fields[4] ?? ''),
      fsType: fields[dash + 1]!,
      source: unescapeMountField(fields[dash + 2]!),
      superOptions: (fields[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

/** The mounts at exactly `mountPoint` (several when stacked; the last one is visible). */
export function mountsAt(mountPoint: string): MountEntry[] {
  return readMounts().filter((m) => m.mountPoint === mountPoint);
}

/** How long a UUID read by blkid is trusted for one mount (same mount id, device and source). */
const UUID_CACHE_MS = 2000;
const uuidCache = new Map<string, { uuid: string | undefined; at: number }>();

/** The filesystem UUID of block device `path`, read from its superblock (`blkid -p`), or undefined. */
export function filesystemUuid(path: string): string | undefined {
  try {
    const out = execFileSync('blkid', ['-p', '-s', 'UUID', '-o', 'value', path], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    return out.trim() || undefined;
  } catch {
    return undefined;
  }
}

function mountedUuid(entry: MountEntry, device: number): string | undefined {
  const key = `${entry.id}:${device}:${entry.source}`;
  const hit = uuidCache.get(key);
  if (hit && Date.now() - hit.at < UUID_CACHE_MS) return hit.uuid;
  const uuid = filesystemUuid(entry.source);
  uuidCache.set(key, { uuid, at: Date.now() });
  return uuid;
}

/** True when the filesystem with `uuid` is mounted at `mountPoint`. */
export function isMountedAt(mountPoint: string, uuid: string): boolean {
  if (uuid.includes('/')) return false;
  const byUuid = blockDevice(`/dev/disk/by-uuid/${uuid}`);
  for (const entry of mountsAt(mountPoint)) {
    if (!entry.source.startsWith('/')) continue;
    const device = blockDevice(entry.source);
    if (device === undefined) continue;
    if (
      byUuid !== undefined
        ? device === byUuid
        : mountedUuid(entry, device)?.toLowerCase() === uuid.toLowerCase()
    ) {
      return true;
    }
  }
  return false;
}

/**
 * Why the filesystem visible at `mountPoint` can no longer be used though it is still mounted,
 * or undefined when it can (or nothing is mounted there). Read from /proc/self/mountinfo and /dev
 * only, never under the mount point (a failed disk can hang or fail any access there):
 * - ext4 lists `shutdown` once it was shut down (a pulled disk under I/O: the shutdown ioctl or
 *   the kernel after a failed journal write) and `emergency_ro` after an error made it read-only;
 * - the mount's device node is gone (a USB disk unplugged: the kernel removed `/dev/sdX`).
 * PBS has no such check: its `mount-status` says `mounted` and every access fails with EIO.
 */
export function mountFailure(mountPoint: string): string | undefined {
  const visible = mountsAt(mountPoint).at(-1);
  if (!visible || !visible.source.startsWith('/dev/')) return undefined;
  if (visible.superOptions.includes('shutdown')) {
    return `the filesystem on ${visible.source} was shut down after a device failure`;
  }
  if (visible.superOptions.includes('emergency_ro')) {
    return `the filesystem on ${visible.source} went read-only after I/O errors`;
  }
  if (blockDevice(visible.source) === undefined) return `its device ${visible.source} is gone`;
  return undefined;
}
