/**
 * Destroying an HTTP/2 session from JavaScript that runs inside one of the session's own native
 * callbacks (a promise reaction to a stream's end or reset, drained before the native frame
 * returns) corrupts the native heap in Node 20: the session's memory is freed while nghttp2 is
 * still working on it. glibc then aborts the process later, somewhere unrelated ("corrupted size
 * vs. prev_size"). Found with a stress loop of backups aborted by the server: the client's
 * `abort()` in the failed upload's handler crashed the process within a few iterations; with the
 * destroy deferred, 180 iterations ran clean (docs/reliability.md).
 *
 * So every session is destroyed here, on the next turn of the event loop, outside any callback.
 */
import type { Http2Session } from 'node:http2';

export function destroyHttp2Session(session: Http2Session): void {
  if (session.destroyed) return;
  setImmediate(() => session.destroy());
}
