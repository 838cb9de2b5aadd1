/**
 * Real disks for the removable-datastore tests: an ext4 filesystem in a small image file, attached
 * as a loop device (`truncate`, `mkfs.ext4 -q`, `losetup -f --show`). These tests run as root on
 * this machine kind. `cleanupUnder` undoes everything a test did below its directory — every mount
 * (also the server's bind mounts) and every loop device whose image is there — and is safe to call
 * in `after` whatever state a failed test left.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readMounts } from '../../src/sys/mount-status.js';

export interface LoopDisk {
  image: string;
  /** `/dev/loopN` */
  device: string;
  /** The ext4 filesystem's UUID (what `backing-device` names). */
  uuid: string;
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** A fresh ext4 filesystem of `sizeMiB` on a new loop device, its image at `<dir>/<name>.img`. */
export function makeLoopDisk(dir: string, name: string, sizeMiB = 64): LoopDisk {
  const image = join(dir, `${name}.img`);
  sh('truncate', ['-s', `${sizeMiB}M`, image]);
  // A chunk store has 65 536 directories: enough inodes for them, and inline_data so an empty
  // directory takes no block (64 MiB would otherwise not hold them). No lazy init: the kernel
  // thread zeroing inode tables would keep the disk busy after mount.
  sh('mkfs.ext4', [
    '-q',
    '-N',
    '70000',
    '-O',
    'inline_data',
    '-E',
    'lazy_itable_init=0,lazy_journal_init=0',
    image,
  ]);
  const device = sh('losetup', ['-f', '--show', image]);
  const uuid = sh('blkid', ['-p', '-s', 'UUID', '-o', 'value', device]);
  return { image, device, uuid };
}

/** Mount `disk` at `dir` (for a test's own look at the device). */
export function mountDisk(disk: LoopDisk, dir: string): void {
  sh('mount', [disk.device, dir]);
}

export function unmount(dir: string): void {
  sh('umount', [dir]);
}

/** The mount points at or below `dir`, deepest (latest) first. */
export function mountsUnder(dir: string): string[] {
  return readMounts()
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .reverse();
}

/** Detach `device` from its image, ignoring a device already gone. */
export function detach(device: string): void {
  try {
    sh('losetup', ['-d', device]);
  } catch {
    // already detached
  }
}

/**
 * Unmount everything mounted below `dir` (lazily when busy, so a stuck test cannot keep it) and
 * detach every loop device whose image lies below `dir`. Never throws.
 */
export function cleanupUnder(dir: string): void {
  for (const point of mountsUnder(dir)) {
    try {
      sh('umount', [point]);
    } catch {
      try {
        sh('umount', ['-l', point]);
      } catch {
        // gone meanwhile
      }
    }
  }
  let list = '';
  try {
    list = sh('losetup', ['--list', '-O', 'NAME,BACK-FILE', '-n', '--raw']);
  } catch {
    return;
  }
  for (const line of list.split('\n')) {
    const [device, file] = line.split(' ');
    if (device && file && (file === dir || file.startsWith(`${dir}/`))) detach(device);
  }
}

/**
 * Make the filesystem mounted at `dir` fail as if its disk were pulled: ext4's shutdown ioctl
 * (`EXT4_IOC_SHUTDOWN` with NOLOGFLUSH: nothing more reaches the disk, every read and write
 * fails with EIO from now on). Unmounting and mounting it again replays its journal, as after a
 * real pulled cable. Done from a tiny Python helper: Node has no ioctl.
 */
export function pullDisk(dir: string): void {
  const script =
    'import fcntl, os, struct, sys\n' +
    'fd = os.open(sys.argv[1], os.O_RDONLY)\n' +
    'fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2))\n';
  sh('python3', ['-c', script, dir]);
}
