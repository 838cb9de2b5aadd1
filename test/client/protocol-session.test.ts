import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { ProtocolSession } from '../../src/client/connection.js';

/** An HTTP/2 server whose every stream is handled by `onStream`, and a session on it. */
async function withSession(
  onStream: (stream: http2.ServerHttp2Stream, server: http2.Http2Server) => void,
  body: (s: ProtocolSession) => Promise<void>,
): Promise<void> {
  const server = http2.createServer();
  server.on('stream', (stream) => onStream(stream, server));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const h2 = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    await body(new ProtocolSession(h2));
  } finally {
    h2.destroy();
    server.close();
  }
}

const LOST = /^connection to the server was lost/;

test(
  'a request the server resets without an answer fails at once, naming it',
  { timeout: 10_000 },
  async () => {
    await withSession(
      (stream) => stream.close(http2.constants.NGHTTP2_NO_ERROR),
      async (s) => {
        await assert.rejects(s.request('POST', 'dynamic_chunk'), (err: Error) => {
          assert.doesNotMatch(err.message, /HTTP 0/);
          assert.equal(
            err.message,
            'request dynamic_chunk failed - the server closed the request without an answer',
          );
          return true;
        });
      },
    );
  },
);

test(
  'a connection dropped mid-request is a lost connection, and later requests say the same',
  { timeout: 10_000 },
  async () => {
    await withSession(
      (stream) => stream.session?.destroy(),
      async (s) => {
        await assert.rejects(s.request('GET', 'chunk'), (err: Error) => LOST.test(err.message));
        await assert.rejects(s.request('GET', 'chunk'), (err: Error) => LOST.test(err.message));
      },
    );
  },
);

test("an error answer still carries the server's message", async () => {
  await withSession(
    (stream) => {
      stream.respond({ ':status': 400, 'content-type': 'application/json' });
      stream.end('no such chunk');
    },
    async (s) => {
      await assert.rejects(s.request('GET', 'chunk'), /^Error: no such chunk$|no such chunk/);
    },
  );
});
