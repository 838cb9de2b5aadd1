/**
 * What the hostile-input suite needs around a real server: a raw HTTPS request that sends the
 * path and body exactly as given (no URL normalisation of `..` or `%2e%2e`), and a fingerprint of everything on disk (datastores and
 * configuration) to show that a refused request wrote nothing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join, relative } from 'node:path';

export interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTPS/1.1 request with the path, headers and body exactly as given. */
export function rawRequest(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string | Buffer,
): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: hostname,
        port,
        method,
        path,
        headers: {
          ...headers,
          ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }),
        },
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, text: Buffer.concat(parts).toString() }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Every file and directory under `roots`, each with a hash of its content (`dir` for directories). */
export function diskState(
  roots: readonly string[],
  skip: (path: string) => boolean = () => false,
): Map<string, string> {
  const state = new Map<string, string>();
  const walk = (root: string, dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (skip(path)) continue;
      const key = `${root}:${relative(root, path)}`;
      if (lstatSync(path).isDirectory()) {
        state.set(key, 'dir');
        walk(root, path);
      } else state.set(key, createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  for (const root of roots) if (existsSync(root)) walk(root, root);
  return state;
}

/** Assert two disk states are the same, listing what was added, removed or changed. */
export function assertSameDisk(before: Map<string, string>, after: Map<string, string>, what: string): void {
  const changes: string[] = [];
  for (const [k, v] of after) {
    if (!before.has(k)) changes.push(`added ${k}`);
    else if (before.get(k) !== v) changes.push(`changed ${k}`);
  }
  for (const k of before.keys()) if (!after.has(k)) changes.push(`removed ${k}`);
  assert.deepEqual(changes, [], `${what} changed the disk`);
}
