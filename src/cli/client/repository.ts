/**
 * The repository spec, as PBS's client spells it: `[[user@realm[!token]@]host[:port]:]datastore`
 * (e.g. `backup@pbs!nightly@10.0.0.5:8007:local`, `[fd00::1]:store1`, or just `local` for
 * root@pam on localhost:8007), from `--repository` or `STOWAGE_REPOSITORY` / `PBS_REPOSITORY`.
 */
import { BadRequestError } from '../../errors.js';
import { validateDatastoreName } from '../../api-types/names.js';

export const DEFAULT_PORT = 8007;
export const DEFAULT_AUTH_ID = 'root@pam';

export interface Repository {
  /** `user@realm` or `user@realm!token`. */
  authId: string;
  host: string;
  port: number;
  store: string;
}

const AUTH_ID = /^[^\s:/@!]+@[A-Za-z0-9_][A-Za-z0-9._-]*(?:![A-Za-z0-9_][A-Za-z0-9._-]*)?$/;

/** Parse a repository spec; BadRequestError naming `repository` when it is malformed. */
export function parseRepository(spec: string): Repository {
  const bad = (why: string) =>
    new BadRequestError(
      `repository '${spec}': ${why} (expected [[user@realm[!token]@]host[:port]:]datastore)`,
    );
  let rest = spec.trim();
  if (rest === '') throw bad('empty');
  let authId = DEFAULT_AUTH_ID;
  // The auth id ends at the last '@' before the host (user names contain one '@' themselves).
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    authId = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!AUTH_ID.test(authId)) throw bad(`invalid user or token '${authId}'`);
  }
  let host = 'localhost';
  let port = DEFAULT_PORT;
  let store: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw bad('unterminated IPv6 address');
    host = rest.slice(1, close);
    rest = rest.slice(close + 1);
    if (!rest.startsWith(':')) throw bad('missing datastore');
    rest = rest.slice(1);
    const parts = rest.split(':');
    if (parts.length === 2) {
      port = parsePort(parts[0]!, bad);
      store = parts[1]!;
    } else if (parts.length === 1) store = parts[0]!;
    else throw bad('too many ":"');
  } else {
    const parts = rest.split(':');
    if (parts.length === 1) store = parts[0]!;
    else if (parts.length === 2) {
      host = parts[0]!;
      store = parts[1]!;
    } else if (parts.length === 3) {
      host = parts[0]!;
      port = parsePort(parts[1]!, bad);
      store = parts[2]!;
    } else throw bad('too many ":" (write IPv6 addresses in brackets)');
  }
  if (host === '') throw bad('empty host');
  try {
    validateDatastoreName(store, 'repository');
  } catch {
    throw bad(`invalid datastore name '${store}'`);
  }
  return { authId, host, port, store };
}

function parsePort(text: string, bad: (why: string) => Error): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < 1 || n > 65535) throw bad(`invalid port '${text}'`);
  return n;
}

/** The repository from the option, else STOWAGE_REPOSITORY, else PBS_REPOSITORY. */
export function repositoryFromEnv(
  option: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Repository {
  const spec = option ?? env.STOWAGE_REPOSITORY ?? env.PBS_REPOSITORY;
  if (!spec) {
    throw new BadRequestError(
      'no repository given - use --repository or set STOWAGE_REPOSITORY (or PBS_REPOSITORY)',
    );
  }
  return parseRepository(spec);
}

export function formatRepository(r: Repository): string {
  const host = r.host.includes(':') ? `[${r.host}]` : r.host;
  return `${r.authId}@${host}:${r.port}:${r.store}`;
}
