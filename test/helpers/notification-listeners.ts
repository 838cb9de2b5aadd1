/**
 * Local receivers for notification tests: an HTTP listener that records every webhook delivery
 * (answering 200, or the status codes queued for a path), and an SMTP server (smtp-server) that
 * keeps every mail it is given as raw text.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface WebhookListener {
  /** `http://127.0.0.1:PORT` */
  url: string;
  received: ReceivedRequest[];
  /** Status codes to answer a path (URL with query) with, in order; 200 once used up. */
  answers: Map<string, number[]>;
  close(): Promise<void>;
}

export async function startWebhookListener(): Promise<WebhookListener> {
  const received: ReceivedRequest[] = [];
  const answers = new Map<string, number[]>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.statusCode = answers.get(req.url!)?.shift() ?? 200;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    answers,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export interface SmtpListener {
  port: number;
  /** Each mail as received (headers and body). */
  mails: string[];
  close(): Promise<void>;
}

export async function startSmtpListener(): Promise<SmtpListener> {
  const mails: string[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push(Buffer.concat(chunks).toString());
        cb();
      });
    },
  });
  await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
  return {
    port: (smtp.server.address() as AddressInfo).port,
    mails,
    close: () => new Promise<void>((r) => smtp.close(r)),
  };
}

/** Assert the webhook's `X-Stowage-Signature` is HMAC-SHA256 with `key` over `TIMESTAMP.BODY`, sent just now. */
export function assertSignedWith(key: string, r: ReceivedRequest): void {
  const ts = r.headers['x-stowage-timestamp'] as string;
  assert.match(ts, /^\d+$/);
  assert.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 60);
  const expected = `sha256=${createHmac('sha256', key).update(`${ts}.${r.body}`).digest('hex')}`;
  assert.equal(r.headers['x-stowage-signature'], expected);
}

/** Poll `f` until it returns something (every 50 ms, at most `ms`). */
export async function until<T>(what: string, f: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
