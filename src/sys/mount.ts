/**
 * Mounting and unmounting filesystems with the system's `mount`, `umount` and `blkid`, as PBS
 * does for removable datastores (`src/tools/disks/mod.rs`: `mount_by_uuid`, `bind_mount`,
 * `unmount_by_mountpoint`). Each runs the real command, so the kernel's answer (a busy target, an
 * unknown filesystem) reaches the operator in the command's own words.
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { ERR_DEVICE_NOT_FOUND, ERR_MOUNT_COMMAND_FAILED } from '../errors.js';

/** How long one mount command may take (a dying USB disk can hang it). */
const COMMAND_TIMEOUT_MS = 60_000;

/** Run a mount-related command; its stderr (first line) becomes the error. */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const why = (stderr.trim().split('\n')[0] ?? '') || err.message;
      reject(
        ERR_MOUNT_COMMAND_FAILED.withOptions(
          { cause: err, details: { why } },
          `${cmd} ${args.join(' ')}`,
          why,
        ),
      );
    });
  });
}

function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/**
 * The block device holding the filesystem with `uuid`: udev's `/dev/disk/by-uuid/UUID` where it
 * exists (PBS's way), otherwise what `blkid -U` finds by probing the devices the kernel lists.
 * ERR_DEVICE_NOT_FOUND when no attached device has it.
 */
export async function findDeviceByUuid(uuid: string): Promise<string> {
  const link = `/dev/disk/by-uuid/${uuid}`;
  if (!uuid.includes('/') && isBlockDevice(link)) return link;
  let device: string;
  try {
    device = (await run('blkid', ['-U', uuid])).trim();
  } catch {
    throw ERR_DEVICE_NOT_FOUND(uuid);
  }
  if (!device || !isBlockDevice(device)) throw ERR_DEVICE_NOT_FOUND(uuid);
  return device;
}

/** Mount the filesystem on `device` at `dir` (an existing directory). */
export async function mountDevice(device: string, dir: string): Promise<void> {
  await run('mount', [device, dir]);
}

/** Make `source` (a directory) visible at `dir` too (`mount --bind`). */
export async function bindMount(source: string, dir: string): Promise<void> {
  await run('mount', ['--bind', source, dir]);
}

/** Write the filesystem mounted at `dir` out to its device (`sync -f`: syncfs). */
export async function syncFilesystem(dir: string): Promise<void> {
  await run('sync', ['-f', dir]);
}

/** Unmount the filesystem at `dir`; fails (ERR_MOUNT_COMMAND_FAILED, "target is busy") while files are open there. */
export async function unmountDir(dir: string): Promise<void> {
  await run('umount', [dir]);
}
