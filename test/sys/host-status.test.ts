import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuSampler, parseCpuinfo, parseMeminfo, parseProcStat } from '../../src/sys/host-status.js';

test('memory used is MemTotal minus MemAvailable and free is MemFree, in bytes, as proxmox-sys reports them', () => {
  // the sample of proxmox-sys's own parser test, with its expected results
  const { memory, swap } = parseMeminfo(
    'MemTotal:       32752584 kB\nMemFree:         2106048 kB\nMemAvailable:   13301592 kB\nBuffers:               0 kB\nCached:           490072 kB\nSwapTotal:             3 kB\nSwapFree:              2 kB\nHugePages_Total:       0\n',
  );
  assert.deepEqual(memory, { total: 33538646016, used: 19917815808, free: 2156593152 });
  assert.deepEqual(swap, { total: 3072, used: 1024, free: 2048 });
});

test('the cpu line of /proc/stat gives idle, iowait, the total and the number of cpus', () => {
  const times = parseProcStat(
    'cpu  2845612 241 173179 264715515 93366 0 7925 141017 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\nintr 1 2 3\nbtime 1576502436\n',
  );
  assert.deepEqual(times, { idle: 264715515, iowait: 93366, total: 267976855, cpuCount: 2 });
});

test('the first CPU sample is the average since boot; later ones are the share since the previous one', () => {
  const s = new CpuSampler(100);
  const first = s.sample({ idle: 75, iowait: 0, total: 100, cpuCount: 2 }, 10_000);
  assert.deepEqual(first, { cpu: 0.25, wait: 0 });
  // under a second later: the same figures again
  assert.deepEqual(s.sample({ idle: 75, iowait: 50, total: 300, cpuCount: 2 }, 10_500), first);
  // 2 s later on 2 cpus at 100 ticks/s: 400 ticks, 100 of them idle, 40 waiting for IO
  const next = s.sample({ idle: 175, iowait: 40, total: 500, cpuCount: 2 }, 12_000);
  assert.deepEqual(next, { cpu: 0.75, wait: 0.1 });
});

test('cpuinfo counts logical cpus and distinct physical ids and takes the model name', () => {
  const text = [0, 1, 2, 3]
    .map(
      (i) =>
        `processor\t: ${i}\nmodel name\t: AMD EPYC 7302\nphysical id\t: ${i < 2 ? 0 : 1}\nflags\t\t: fpu vme\n`,
    )
    .join('\n');
  assert.deepEqual(parseCpuinfo(text), { model: 'AMD EPYC 7302', sockets: 2, cpus: 4 });
  assert.deepEqual(parseCpuinfo('processor\t: 0\nBogoMIPS\t: 50.00\n'), { model: '', sockets: 0, cpus: 1 });
});
