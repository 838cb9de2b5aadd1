/**
 * Where the time went in `node --cpu-prof` profiles (as `bench/backup.ts --profile DIR` writes
 * them): per profile file (one per thread), the busy time and the functions with the most self
 * time, and the same summed over all files given.
 *
 *   node --import tsx bench/profile-summary.ts [--top N] FILE_OR_DIR...
 *
 * Self time is the sampled time spent in a function's own code, not in what it calls; native
 * work that V8 cannot attribute (TLS, zlib, libuv callbacks) shows as "(program)", and a
 * thread waiting shows as "(idle)".
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

let top = 15;
const inputs: string[] = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--top') top = Number(process.argv[++i]);
  else inputs.push(process.argv[i]!);
}

function profileFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(path, f))
    .sort();
}

/** Self time in ms per "function file:line", from the samples and their time deltas. */
function selfTimes(profile: CpuProfile): Map<string, number> {
  const label = new Map<number, string>();
  for (const n of profile.nodes) {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url ? ` ${basename(url)}:${lineNumber + 1}` : '';
    label.set(n.id, `${functionName || '(anonymous)'}${where}`);
  }
  const times = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const l = label.get(id) ?? '?';
    times.set(l, (times.get(l) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return times;
}

function print(title: string, times: Map<string, number>, wallMs?: number): void {
  const busy = [...times].filter(([k]) => k !== '(idle)').reduce((a, [, v]) => a + v, 0);
  const wall = wallMs === undefined ? '' : ` of ${(wallMs / 1000).toFixed(2)} s`;
  console.log(`\n== ${title}: busy ${(busy / 1000).toFixed(2)} s${wall}`);
  for (const [k, v] of [...times].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${(v / 1000).toFixed(3).padStart(8)} s  ${k}`);
}

const total = new Map<string, number>();
for (const file of inputs.flatMap(profileFiles)) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const times = selfTimes(profile);
  print(file, times, (profile.endTime - profile.startTime) / 1000);
  for (const [k, v] of times) total.set(k, (total.get(k) ?? 0) + v);
}
print('all files', total);
