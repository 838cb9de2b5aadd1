/**
 * The two HTTP/2 protocols a PBS client upgrades to, as server and client both name them: the
 * `Upgrade:` token each one answers to and the URL it is requested on (PBS `src/api2/backup`,
 * `src/api2/reader`). Declared once so the two sides cannot drift apart.
 */

/** `Upgrade:` token of the backup protocol. */
export const BACKUP_PROTOCOL_ID = 'proxmox-backup-protocol-v1';
/** `Upgrade:` token of the reader (restore) protocol. */
export const READER_PROTOCOL_ID = 'proxmox-backup-reader-protocol-v1';
/** URL a client requests to start a backup session. */
export const BACKUP_PATH = '/api2/json/backup';
/** URL a client requests to start a reader session. */
export const READER_PATH = '/api2/json/reader';
