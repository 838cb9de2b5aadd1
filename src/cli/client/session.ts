/**
 * What every client command needs: the repository, the certificate policy and credentials, with
 * one retry through a fresh login when a cached ticket has expired on the server.
 */
import { StowageError } from '../../errors.js';
import {
  CertificateError,
  type Credentials,
  type ServerTarget,
  type TlsPolicy,
} from '../../client/connection.js';
import { credentials, forgetTicket, login, tlsPolicy } from './credentials.js';
import { repositoryFromEnv, type Repository } from './repository.js';

export interface ClientSession {
  repo: Repository;
  target: ServerTarget;
  policy: TlsPolicy;
  /** Run `fn` with credentials; a refused cached ticket is dropped and the login repeated once. */
  withAuth<T>(fn: (creds: Credentials) => Promise<T>): Promise<T>;
}

export function openClientSession(repository: string | undefined): ClientSession {
  const repo = repositoryFromEnv(repository);
  const policy = tlsPolicy(repo);
  const target = { host: repo.host, port: repo.port };
  return {
    repo,
    target,
    policy,
    async withAuth(fn) {
      const creds = await credentials(repo, policy);
      try {
        return await fn(creds);
      } catch (err) {
        if (creds.kind !== 'ticket' || !(err instanceof StowageError) || err.code !== 'UNAUTHORIZED')
          throw err;
        if (err instanceof CertificateError) throw err;
        forgetTicket(repo);
        return fn(await login(repo, policy));
      }
    },
  };
}
