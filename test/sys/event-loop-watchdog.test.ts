import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WATCHDOG = fileURLToPath(new URL('../../src/sys/event-loop-watchdog.ts', import.meta.url));

/** Run a node process that starts the watchdog and then runs `then` (JavaScript) on its main thread. */
function runWithWatchdog(
  opts: string,
  then: string,
): Promise<{ code: number | null; signal: string | null; stderr: string; ms: number }> {
  const script = `
    const { startEventLoopWatchdog } = await import(${JSON.stringify(WATCHDOG)});
    const dog = startEventLoopWatchdog(${opts});
    ${then}
  `;
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, stderr, ms: Date.now() - started })),
  );
}

test('a main thread that never yields is reported, then killed', { timeout: 60_000 }, async () => {
  const r = await runWithWatchdog('{ warnAfterMs: 1000, killAfterMs: 3000 }', 'for (;;) {}');
  assert.equal(r.signal, 'SIGKILL');
  assert.match(r.stderr, /stowage: warning: event loop blocked for \d+ s; requests and signals wait/);
  assert.match(r.stderr, /stowage: event loop blocked for \d+ s - killing the process/);
});

test(
  'a short block is reported but not killed, and a stopped watchdog lets the process exit',
  { timeout: 60_000 },
  async () => {
    const r = await runWithWatchdog(
      '{ warnAfterMs: 1000, killAfterMs: 30000 }',
      'const end = Date.now() + 2500; while (Date.now() < end) {} await new Promise((r) => setTimeout(r, 700)); await dog.stop();',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: event loop blocked for \d+ s/);
    assert.doesNotMatch(r.stderr, /killing/);
  },
);
