/** Session handling (login, logout, expiry, ticket renewal) and hash routing. */
import { useEffect, useState } from 'preact/hooks';
import { api, loadSession, logout, onSessionExpired, renewTicket, type Session } from './api.js';
import { useApi } from './hooks.js';
import type { ClusterStatus } from './types.js';
import { Cluster } from './views/cluster.js';
import { DatastoreList } from './views/datastore-list.js';
import { DatastoreView } from './views/datastore.js';
import { Jobs } from './views/jobs.js';
import { Login } from './views/login.js';
import { TaskLog, Tasks } from './views/tasks.js';

/** Renew well inside the 2 h ticket lifetime (reference §8.1). */
const RENEW_MS = 15 * 60 * 1000;

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function route(hash: string) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second, third] = parts;
  if (first === 'datastore' && second)
    return {
      page: 'datastore',
      key: second,
      view: <DatastoreView store={second} tab={third ?? 'summary'} />,
    };
  if (first === 'tasks' && second) return { page: 'tasks', key: second, view: <TaskLog upid={second} /> };
  if (first === 'tasks') return { page: 'tasks', key: '', view: <Tasks /> };
  if (first === 'jobs') return { page: 'jobs', key: '', view: <Jobs /> };
  if (first === 'cluster') return { page: 'cluster', key: '', view: <Cluster /> };
  return { page: 'datastores', key: '', view: <DatastoreList /> };
}

export function App() {
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const hash = useHash();
  // the Cluster page is offered only on a server in cluster mode (and to users who may see it)
  const inCluster = useApi(
    async (signal) =>
      session ? (await api.get<ClusterStatus>('/cluster/status', undefined, signal)).data.enabled : false,
    [session],
  );

  useEffect(
    () =>
      onSessionExpired(() => {
        setNotice('Your session has expired or was revoked. Please log in again.');
        setSession(undefined);
      }),
    [],
  );

  useEffect(() => {
    if (!session) return;
    const t = setInterval(() => void renewTicket().catch(() => undefined), RENEW_MS);
    return () => clearInterval(t);
  }, [session]);

  if (!session) {
    return (
      <Login
        notice={notice}
        onLogin={(s) => {
          setNotice(undefined);
          setSession(s);
        }}
      />
    );
  }

  const r = route(hash);
  const clustered = inCluster.data === true;
  const link = (href: string, page: string, label: string) => (
    <li>
      <a href={href} aria-current={r.page === page ? 'page' : undefined}>
        {label}
      </a>
    </li>
  );
  return (
    <>
      <header class="topbar">
        <nav class="container-fluid" aria-label="Main">
          <ul>
            <li>
              <a href="#/" class="brand">
                <strong>Stowage</strong>
              </a>
            </li>
          </ul>
          <ul>
            {link('#/', 'datastores', 'Datastores')}
            {link('#/tasks', 'tasks', 'Tasks')}
            {link('#/jobs', 'jobs', 'Jobs')}
            {clustered && link('#/cluster', 'cluster', 'Cluster')}
            <li class="user">
              <span class="muted" data-testid="current-user">
                {session.username}
              </span>
            </li>
            <li>
              <button
                type="button"
                class="outline secondary small-button"
                onClick={() => {
                  logout();
                  setNotice('You have logged out.');
                  setSession(undefined);
                }}
              >
                Log out
              </button>
            </li>
          </ul>
        </nav>
      </header>
      <main class="container" key={`${r.page}/${r.key}`}>
        {r.view}
      </main>
    </>
  );
}
