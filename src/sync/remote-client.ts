/**
 * How Stowage connects to a remote (remote.cfg) — the one place for it, used by sync and by the
 * remote scan calls: TLS pinned to the remote's fingerprint when one is configured (a self-signed
 * PBS or Stowage), the system's CAs otherwise; an auth id with a token name (`user@realm!name`)
 * sends the secret as an API token, a user logs in with the password for a ticket, as PBS's
 * `remote_client` does. A remote that cannot be reached or refuses the login is a 400 in PBS's
 * words: `remote connection to 'HOST' failed - REASON`.
 */
import { ApiClient, type Credentials, type TlsPolicy } from '../client/connection.js';
import { ERR_REMOTE_CONNECTION } from '../errors.js';
import { REMOTE_DEFAULT_PORT, type RemoteConfig } from '../config/remote-config.js';

/** An API client for `remote`, logged in (a token is checked with one call). */
export async function connectRemote(remote: RemoteConfig): Promise<ApiClient> {
  const target = { host: remote.host.replace(/^\[(.*)\]$/, '$1'), port: remote.port ?? REMOTE_DEFAULT_PORT };
  const policy: TlsPolicy = remote.fingerprint ? { fingerprint: remote.fingerprint } : {};
  const authId = remote['auth-id'];
  const api = new ApiClient(target, policy);
  try {
    if (authId.includes('!')) {
      const creds: Credentials = { kind: 'token', tokenId: authId, secret: remote.password };
      api.credentials = creds;
      await api.call('GET', '/version'); // a token needs no login: check it and the connection now
    } else {
      const res = await api.call<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
        username: authId,
        password: remote.password,
      });
      api.credentials = { kind: 'ticket', ticket: res.ticket, csrf: res.CSRFPreventionToken };
    }
  } catch (err) {
    throw ERR_REMOTE_CONNECTION(remote.host, (err as Error).message);
  }
  return api;
}
