/**
 * How the client authenticates and which server certificates it trusts, as PBS's client:
 *
 * - A token (`user@realm!name`): the secret from `STOWAGE_PASSWORD` / `PBS_PASSWORD`, or a prompt.
 * - A user: a ticket from `stowage-client login` cached in `~/.config/stowage/tickets.json`
 *   (0600) while it is valid, else the password from `STOWAGE_PASSWORD` / `PBS_PASSWORD` or a
 *   prompt, and the new ticket is cached.
 * - Certificates: trusted by the system, or pinned by `STOWAGE_FINGERPRINT` / `PBS_FINGERPRINT`,
 *   or remembered in `~/.config/stowage/fingerprints.json` after the user confirmed it on a
 *   terminal. Without a terminal an unknown fingerprint is an error that says what to set.
 */
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { ERR_NO_CREDENTIALS_GIVEN } from '../../errors.js';
import { replaceFile } from '../../sys/atomic-file.js';
import {
  ApiClient,
  normalizeFingerprint,
  type Credentials,
  type TlsPolicy,
} from '../../client/connection.js';
import type { Repository } from './repository.js';

/** PBS tickets live 2 h; refresh a cached one when less than 10 minutes are left. */
const TICKET_LIFETIME_S = 7200;
const TICKET_MARGIN_S = 600;

export function clientConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'stowage');
}

function readJson(path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function writeJson(path: string, value: unknown): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  replaceFile(path, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
}

function serverKey(r: Repository): string {
  return `${r.host}:${r.port}`;
}

function isTty(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

/** Ask a question on the terminal; `hidden` does not echo the answer (passwords). */
export async function prompt(question: string, opts: { hidden?: boolean } = {}): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk as Buffer);
      cb();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  try {
    return await new Promise<string>((resolve) => {
      rl.question(question, (answer) => resolve(answer));
      muted = opts.hidden === true;
    });
  } finally {
    rl.close();
    if (opts.hidden) process.stderr.write('\n');
  }
}

/** The certificate policy for `repo`: env pin, then remembered pin, then (on a TTY) ask. */
export function tlsPolicy(repo: Repository, env: NodeJS.ProcessEnv = process.env): TlsPolicy {
  const pinned = env.STOWAGE_FINGERPRINT ?? env.PBS_FINGERPRINT;
  if (pinned) return { fingerprint: pinned };
  const file = join(clientConfigDir(env), 'fingerprints.json');
  const known = readJson(file)[serverKey(repo)];
  if (typeof known === 'string') return { fingerprint: known };
  return {
    onUnknown: async (fp) => {
      if (!isTty()) return false;
      process.stderr.write(`fingerprint: ${fp}\n`);
      const answer = (await prompt('Are you sure you want to continue connecting? (y/n): '))
        .trim()
        .toLowerCase();
      if (answer !== 'y' && answer !== 'yes') return false;
      const all = readJson(file);
      all[serverKey(repo)] = normalizeFingerprint(fp);
      writeJson(file, all);
      return true;
    },
  };
}

interface CachedTicket {
  ticket: string;
  csrf: string;
  /** Epoch seconds when the ticket was issued. */
  time: number;
}

function ticketFile(env: NodeJS.ProcessEnv): string {
  return join(clientConfigDir(env), 'tickets.json');
}

function cacheKey(repo: Repository): string {
  return `${repo.authId}@${serverKey(repo)}`;
}

async function secret(what: string, env: NodeJS.ProcessEnv): Promise<string> {
  const fromEnv = env.STOWAGE_PASSWORD ?? env.PBS_PASSWORD;
  if (fromEnv !== undefined) return fromEnv;
  if (!isTty()) {
    throw ERR_NO_CREDENTIALS_GIVEN(what);
  }
  return prompt(`${what}: `, { hidden: true });
}

/** Log in with the password and cache the ticket; returns the credentials. */
export async function login(
  repo: Repository,
  policy: TlsPolicy,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials> {
  if (repo.authId.includes('!')) {
    return {
      kind: 'token',
      tokenId: repo.authId,
      secret: await secret(`API token secret for ${repo.authId}`, env),
    };
  }
  const password = await secret(`Password for "${repo.authId}"`, env);
  const api = new ApiClient({ host: repo.host, port: repo.port }, policy);
  const res = await api.call<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
    username: repo.authId,
    password,
  });
  const creds: Credentials = { kind: 'ticket', ticket: res.ticket, csrf: res.CSRFPreventionToken };
  const file = ticketFile(env);
  const all = readJson(file);
  all[cacheKey(repo)] = {
    ticket: res.ticket,
    csrf: res.CSRFPreventionToken,
    time: Math.floor(Date.now() / 1000),
  } satisfies CachedTicket;
  writeJson(file, all);
  return creds;
}

/** Credentials for a command: a token, a cached valid ticket, or a fresh login. */
export async function credentials(
  repo: Repository,
  policy: TlsPolicy,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials> {
  if (repo.authId.includes('!')) return login(repo, policy, env);
  const cached = readJson(ticketFile(env))[cacheKey(repo)] as CachedTicket | undefined;
  const now = Math.floor(Date.now() / 1000);
  if (
    cached &&
    typeof cached.ticket === 'string' &&
    now - cached.time < TICKET_LIFETIME_S - TICKET_MARGIN_S
  ) {
    return { kind: 'ticket', ticket: cached.ticket, csrf: cached.csrf };
  }
  return login(repo, policy, env);
}

/** Forget the cached ticket of `repo` (after the server refused it). */
export function forgetTicket(repo: Repository, env: NodeJS.ProcessEnv = process.env): void {
  const file = ticketFile(env);
  const all = readJson(file);
  if (!(cacheKey(repo) in all)) return;
  delete all[cacheKey(repo)];
  writeJson(file, all);
}
