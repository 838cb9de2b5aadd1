/**
 * One request on a backup or reader session's raw HTTP/2 connection, built by hand so that a test
 * pins the wire rather than our client's habits.
 */
import type { ProtocolSession } from '../../src/client/connection.js';

export interface H2Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request on a protocol session's raw HTTP/2 connection. */
export function h2Call(
  s: ProtocolSession,
  method: string,
  path: string,
  opts: { contentType?: string; body?: Buffer | string } = {},
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const stream = s.h2.request({
      ':method': method,
      ':path': path,
      ...(opts.contentType !== undefined && { 'content-type': opts.contentType }),
    });
    let status = 0;
    let headers: H2Reply['headers'] = {};
    const parts: Buffer[] = [];
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h;
    });
    stream.on('data', (d: Buffer) => parts.push(d));
    stream.on('end', () => resolve({ status, headers, body: Buffer.concat(parts) }));
    stream.on('error', reject);
    stream.end(opts.body);
  });
}
