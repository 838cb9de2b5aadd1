/**
 * First-start bootstrap: make sure `root@pam` exists in user.cfg and has a password in
 * shadow.json. Stowage has no PAM, so root@pam is a local admin authenticated against
 * shadow.json like a `pbs` user (PBS checks it against the system's PAM instead).
 */
import { randomBytes } from 'node:crypto';
import { SUPERUSER, updateUserConfig, readUserConfig } from '../config/user-config.js';
import { hasPassword, setPassword } from '../http/auth/password.js';

export interface BootstrapResult {
  /** The generated password, when one was generated (to be printed once). */
  generatedPassword?: string;
  /** Whether a password was set at all during this call. */
  passwordSet: boolean;
}

/**
 * Create root@pam if missing, and give it `password` (or a generated one) if it has none.
 * An existing password is never changed.
 */
export async function bootstrapRootUser(configDir: string, password?: string): Promise<BootstrapResult> {
  if (!readUserConfig(configDir).config.users.has(SUPERUSER)) {
    await updateUserConfig(configDir, (cfg) => {
      if (!cfg.users.has(SUPERUSER)) {
        cfg.users.set(SUPERUSER, { userid: SUPERUSER, comment: 'Superuser', enable: true, expire: 0 });
      }
    });
  }
  if (hasPassword(configDir, SUPERUSER)) return { passwordSet: false };
  const generated =
    password === undefined || password === '' ? randomBytes(12).toString('base64url') : undefined;
  await setPassword(configDir, SUPERUSER, generated ?? password!);
  return { passwordSet: true, generatedPassword: generated };
}
