/** The login form: user, realm (pbs or pam), password; shows why the previous session ended. */
import { useState } from 'preact/hooks';
import { ApiError, login, type Session } from '../api.js';

export function Login({ notice, onLogin }: { notice?: string; onLogin: (s: Session) => void }) {
  const [user, setUser] = useState('');
  const [realm, setRealm] = useState('pam');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      onLogin(await login(user.trim(), realm, password));
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? 'Login failed: wrong user name or password.'
          : `Login failed: ${(err as Error).message}`,
      );
      setBusy(false);
    }
  };

  return (
    <main class="container login">
      <article>
        <header>
          <h1>Stowage</h1>
          <p class="muted">Backup server</p>
        </header>
        {notice && (
          <p class="notice" role="status" data-testid="login-notice">
            {notice}
          </p>
        )}
        <form onSubmit={submit} aria-label="Log in">
          <label for="login-user">
            User name
            <input
              id="login-user"
              name="username"
              autocomplete="username"
              required
              value={user}
              onInput={(e) => setUser(e.currentTarget.value)}
            />
          </label>
          <label for="login-realm">
            Realm
            <select
              id="login-realm"
              name="realm"
              value={realm}
              onChange={(e) => setRealm(e.currentTarget.value)}
            >
              <option value="pam">Linux PAM standard authentication (pam)</option>
              <option value="pbs">Stowage authentication server (pbs)</option>
            </select>
          </label>
          <label for="login-password">
            Password
            <input
              id="login-password"
              name="password"
              type="password"
              autocomplete="current-password"
              required
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          </label>
          {error && (
            <p class="error-box" role="alert">
              {error}
            </p>
          )}
          <button type="submit" aria-busy={busy} disabled={busy}>
            Log in
          </button>
        </form>
      </article>
    </main>
  );
}
