/**
 * `stowage … | head -1`: once the reader of our output is gone, further writes fail with EPIPE,
 * which node raises as an unhandled 'error' event (a stack trace and exit 1). A command whose
 * reader left has nothing more to say: it exits quietly, as other Unix tools do (their SIGPIPE
 * default). The server is the exception: losing its log reader (a restarted journald) must not
 * stop the backups it serves, so it goes on without printing.
 */
let keepRunning = false;

export function exitQuietlyWhenOutputCloses(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      if (!keepRunning) process.exit(0);
    });
  }
}

/** For `stowage server`: a closed output is ignored instead of ending the process. */
export function keepRunningWhenOutputCloses(): void {
  keepRunning = true;
}
