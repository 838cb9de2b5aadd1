/** Follow a worker task from the CLI: stream its log lines and end with its exit status. */
import type { AdminApi } from './admin-connection.js';
import { taskFailed } from '../../errors.js';

interface LogLine {
  n: number;
  t: string;
}

/**
 * Print the task's log as it grows until the task stops; throw with the task's own error when it
 * did not end OK (so the CLI exits non-zero with that message).
 */
export async function followTask(
  client: AdminApi,
  upid: string,
  opts: { quiet?: boolean } = {},
): Promise<string> {
  const base = `/nodes/localhost/tasks/${encodeURIComponent(upid)}`;
  let next = 0;
  for (;;) {
    const status = await client.call<{ status: string; exitstatus?: string; 'error-code'?: string }>(
      'GET',
      `${base}/status`,
    );
    for (;;) {
      const lines = await client.call<LogLine[]>('GET', `${base}/log`, { start: next, limit: 500 });
      for (const l of lines) if (!opts.quiet) process.stdout.write(l.t + '\n');
      next += lines.length;
      if (lines.length < 500) break;
    }
    if (status.status === 'stopped') {
      const exit = status.exitstatus ?? 'unknown';
      if (exit === 'OK' || exit.startsWith('WARNINGS')) return exit;
      if (exit.startsWith('skipped')) return exit;
      throw taskFailed(exit, status['error-code']);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
