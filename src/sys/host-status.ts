/**
 * Host figures for `GET /nodes/{node}/status`, read as PBS reads them (proxmox-sys `procfs`,
 * `boot_mode`, `fs_info`): memory and swap from /proc/meminfo, CPU usage and IO wait from
 * /proc/stat, the CPU model from /proc/cpuinfo, the root filesystem from statfs. The parsers are
 * pure (text in, numbers out); the readers around them do the IO.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { machine, release, type, version } from 'node:os';
import { ERR_PROC_STAT_NO_CPU } from '../errors.js';

export interface MemoryCounters {
  total: number;
  used: number;
  free: number;
}

/**
 * /proc/meminfo: `used` is MemTotal − MemAvailable (what the kernel says a new workload could not
 * get), `free` is MemFree, as proxmox-sys computes them. Values are bytes.
 */
export function parseMeminfo(text: string): { memory: MemoryCounters; swap: MemoryCounters } {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m) kb.set(m[1]!, Number(m[2]) * 1024);
  }
  const get = (k: string) => kb.get(k) ?? 0;
  const memTotal = get('MemTotal');
  const swapTotal = get('SwapTotal');
  return {
    memory: { total: memTotal, used: memTotal - get('MemAvailable'), free: get('MemFree') },
    swap: { total: swapTotal, used: swapTotal - get('SwapFree'), free: get('SwapFree') },
  };
}

export interface CpuTimes {
  idle: number;
  iowait: number;
  /** user + nice + system + idle + iowait + irq + softirq + steal (guest time is inside user). */
  total: number;
  /** Number of `cpuN` lines. */
  cpuCount: number;
}

/** The aggregate `cpu` line of /proc/stat, in clock ticks. */
export function parseProcStat(text: string): CpuTimes {
  let times: CpuTimes | undefined;
  let cpuCount = 0;
  for (const line of text.split('\n')) {
    const [key, ...fields] = line.trim().split(/\s+/);
    if (key === 'cpu') {
      const [user, nice, system, idle, iowait, irq, softirq, steal] = fields.map(Number);
      const n = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v : 0);
      times = {
        idle: n(idle),
        iowait: n(iowait),
        total: [user, nice, system, idle, iowait, irq, softirq, steal].reduce<number>((a, v) => a + n(v), 0),
        cpuCount: 0,
      };
    } else if (key?.startsWith('cpu')) cpuCount++;
  }
  if (!times) throw ERR_PROC_STAT_NO_CPU();
  return { ...times, cpuCount };
}

/** /proc/cpuinfo: the model name, the number of logical CPUs and of distinct `physical id`s. */
export function parseCpuinfo(text: string): { model: string; sockets: number; cpus: number } {
  let model = '';
  let cpus = 0;
  const sockets = new Set<string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const key = line.slice(0, colon).trimEnd();
    const value = line.slice(colon + 1).trim();
    if (key === 'processor') cpus++;
    else if (key === 'model name') model = value;
    else if (key === 'physical id') sockets.add(value);
  }
  return { model, sockets: sockets.size, cpus };
}

/**
 * CPU usage and IO wait as fractions (0..1) since the previous sample, as proxmox-sys
 * `read_proc_stat`: the first sample reports the average since boot for `cpu` and 0 for `wait`;
 * samples less than a second apart repeat the previous figures.
 */
export class CpuSampler {
  private last?: { times: CpuTimes; at: number; cpu: number; wait: number };

  constructor(private readonly clockTicks = 100) {}

  sample(times: CpuTimes, now = Date.now()): { cpu: number; wait: number } {
    const last = this.last;
    if (last && now - last.at < 1000) return { cpu: last.cpu, wait: last.wait };
    let cpu: number;
    let wait = 0;
    if (!last) {
      cpu = times.total > 0 ? 1 - times.idle / times.total : 0;
    } else {
      const dTotal = times.total - last.times.total;
      cpu = dTotal > 0 ? 1 - (times.idle - last.times.idle) / dTotal : 0;
      const available = ((now - last.at) / 1000) * this.clockTicks * Math.max(times.cpuCount, 1);
      wait = Math.min(times.iowait - last.times.iowait, available) / available;
    }
    this.last = { times, at: now, cpu, wait };
    return { cpu, wait };
  }
}

const sampler = new CpuSampler();

/** PBS `StorageStatus` of the filesystem holding `path`, in bytes. */
export function fsStatus(path: string): { total: number; used: number; avail: number } {
  const st = statfsSync(path);
  return {
    total: st.blocks * st.bsize,
    used: (st.blocks - st.bfree) * st.bsize,
    avail: st.bavail * st.bsize,
  };
}

const SECURE_BOOT_VAR = '/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c';

/** PBS `BootModeInformation`: EFI when /sys/firmware/efi exists; Secure Boot from its EFI variable. */
export function bootInfo(): { mode: 'efi' | 'legacy-bios'; secureboot: boolean } {
  if (!existsSync('/sys/firmware/efi')) return { mode: 'legacy-bios', secureboot: false };
  let secureboot = false;
  try {
    // 4 bytes of attributes, then the value
    secureboot = readFileSync(SECURE_BOOT_VAR)[4] === 1;
  } catch {
    // variable missing or unreadable: Secure Boot is not enabled
  }
  return { mode: 'efi', secureboot };
}

/** Everything of PBS's `NodeStatus` that describes the host (the caller adds `info`). */
export function readHostStatus() {
  const { memory, swap } = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
  const { cpu, wait } = sampler.sample(parseProcStat(readFileSync('/proc/stat', 'utf8')));
  const loadavg = readFileSync('/proc/loadavg', 'utf8').trim().split(/\s+/).slice(0, 3).map(Number) as [
    number,
    number,
    number,
  ];
  const kernel = { sysname: type(), release: release(), version: version(), machine: machine() };
  return {
    memory,
    swap,
    root: fsStatus('/'),
    uptime: Math.trunc(Number(readFileSync('/proc/uptime', 'utf8').split(/\s+/)[0])),
    loadavg,
    kversion: `${kernel.sysname} ${kernel.release} ${kernel.version}`,
    'current-kernel': kernel,
    cpuinfo: parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8')),
    cpu,
    wait,
    'boot-info': bootInfo(),
  };
}
