/**
 * The UI's only way to the server: the public PBS-compatible API under /api2/json. The ticket
 * lives in the `PBSAuthCookie` cookie (set here, as PBS's own UI does, so API clients and the UI
 * share one mechanism); the CSRF token is kept in sessionStorage and sent on every non-GET.
 */

export const API = '/api2/json';
const COOKIE = 'PBSAuthCookie';
const SESSION_KEY = 'stowage-session';

export interface Session {
  username: string;
  csrf: string;
}

/** An error the server answered with: HTTP status plus the envelope's `message`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The full success envelope: `data` plus attributes such as `digest` or `total`. */
export interface Envelope<T> {
  data: T;
  [attribute: string]: unknown;
}

type Listener = () => void;
const expiryListeners = new Set<Listener>();

/** Called when the server answers 401 to an authenticated request: the session is over. */
export function onSessionExpired(fn: Listener): () => void {
  expiryListeners.add(fn);
  return () => expiryListeners.delete(fn);
}

export function loadSession(): Session | undefined {
  try {
    const raw = sessionStorage.getItem(SESSION_KEY);
    if (!raw || !readTicket()) return undefined;
    const s = JSON.parse(raw) as Session;
    return typeof s.username === 'string' && typeof s.csrf === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

function readTicket(): string | undefined {
  const m = document.cookie.split('; ').find((c) => c.startsWith(`${COOKIE}=`));
  return m ? decodeURIComponent(m.slice(COOKIE.length + 1)) : undefined;
}

function storeSession(ticket: string, session: Session): void {
  // `secure` because the server only speaks HTTPS; SameSite=Strict keeps the ticket off
  // cross-site requests (the CSRF token guards writes anyway).
  document.cookie = `${COOKIE}=${encodeURIComponent(ticket)}; path=/; secure; SameSite=Strict`;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession(): void {
  document.cookie = `${COOKIE}=; path=/; secure; SameSite=Strict; max-age=0`;
  sessionStorage.removeItem(SESSION_KEY);
}

let current: Session | undefined = loadSession();

interface TicketReply {
  ticket: string;
  CSRFPreventionToken: string;
  username: string;
}

/** Log in with user name (without realm), realm and password. */
export async function login(user: string, realm: string, password: string): Promise<Session> {
  const username = user.includes('@') ? user : `${user}@${realm}`;
  const res = await request<TicketReply>('POST', '/access/ticket', { username, password }, false);
  const session = { username: res.data.username, csrf: res.data.CSRFPreventionToken };
  storeSession(res.data.ticket, session);
  current = session;
  return session;
}

/**
 * Renew the ticket before its 2 h lifetime ends (PBS: the old ticket is accepted as the
 * password, reference §8.1).
 */
export async function renewTicket(): Promise<void> {
  const ticket = readTicket();
  if (!current || !ticket) return;
  const res = await request<TicketReply>('POST', '/access/ticket', {
    username: current.username,
    password: ticket,
  });
  const session = { username: res.data.username, csrf: res.data.CSRFPreventionToken };
  storeSession(res.data.ticket, session);
  current = session;
}

export function logout(): void {
  clearSession();
  current = undefined;
}

function query(params?: Record<string, string | number | boolean | undefined>): string {
  if (!params) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  authenticated = true,
  signal?: AbortSignal,
): Promise<Envelope<T>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && current) headers.CSRFPreventionToken = current.csrf;
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { message: text };
  }
  if (!res.ok) {
    const p = parsed as { message?: string; errors?: Record<string, string> };
    const err = new ApiError(res.status, p.message || `${res.status} ${res.statusText}`, p.errors);
    if (res.status === 401 && authenticated && current) {
      logout();
      for (const fn of expiryListeners) fn();
    }
    throw err;
  }
  return parsed as Envelope<T>;
}

type Params = Record<string, string | number | boolean | undefined>;

export const api = {
  get: <T>(path: string, params?: Params, signal?: AbortSignal) =>
    request<T>('GET', path + query(params), undefined, true, signal),
  post: <T>(path: string, body: unknown = {}, signal?: AbortSignal) =>
    request<T>('POST', path, body, true, signal),
  put: <T>(path: string, body: unknown = {}) => request<T>('PUT', path, body),
  delete: <T>(path: string, params?: Params) => request<T>('DELETE', path + query(params)),
};

/**
 * The URL of a GET for the browser itself to load, such as a download: the ticket cookie goes
 * with it (same origin), and a GET needs no CSRF token.
 */
export function apiUrl(path: string, params?: Params): string {
  return API + path + query(params);
}

/** Path segment for a datastore (or other) name. */
export const seg = (s: string) => encodeURIComponent(s);
