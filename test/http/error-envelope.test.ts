import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { reasonPhrase } from '../../src/http/error-envelope.js';

/** The raw status line a node HTTP server sends with `statusMessage` set to `reason`. */
async function statusLineFor(reason: string): Promise<Buffer> {
  const server = createServer((_req, res) => {
    res.statusMessage = reason;
    res.writeHead(403, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sock = connect(port, '127.0.0.1', () => sock.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('end', () => resolve(Buffer.concat(chunks)));
      sock.on('error', reject);
    });
    return raw.subarray(0, raw.indexOf('\r\n'));
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

test('the reason phrase is the message on one line', () => {
  assert.equal(
    reasonPhrase('permission check failed - missing Datastore.Audit on /datastore/a'),
    'permission check failed - missing Datastore.Audit on /datastore/a',
  );
  assert.equal(reasonPhrase('line one\r\nline two\ttab\x00'), 'line one line two tab');
});

test('a non-ASCII message reaches the wire as its UTF-8 bytes, and node accepts it as a status message', async () => {
  const message = "datastore 'x' is unavailable: offline maintenance mode: Plattentausch für 2 h ✓";
  const line = await statusLineFor(reasonPhrase(message));
  assert.equal(line.toString('utf8'), `HTTP/1.1 403 ${message}`);
});

test('a very long message is cut to 1 KiB plus an ellipsis', () => {
  const phrase = reasonPhrase('x'.repeat(5000));
  assert.equal(phrase.length, 1024 + 3);
  assert.ok(phrase.endsWith('x...'));
});
