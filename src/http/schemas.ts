/**
 * Parameter schemas shared by the access and task routes, with PBS's names and limits
 * (pbs-api-types). Candidates for `src/api-types/` once the client and UI need them.
 */
import { Type } from 'typebox';
import { AUTHID_PATTERN, TOKEN_NAME_PATTERN, USERID_PATTERN } from '../config/user-config.js';
import { ACL_PATH_PATTERN, ROLE_NAMES } from '../config/acl-config.js';
import { UPID_PATTERN } from '../tasks/upid.js';

export const UseridSchema = Type.String({
  pattern: USERID_PATTERN,
  minLength: 3,
  maxLength: 64,
  description: 'User ID',
});
export const AuthidSchema = Type.String({
  pattern: AUTHID_PATTERN,
  minLength: 3,
  maxLength: 128,
  description: 'Authentication ID (user or API token)',
});
export const TokenNameSchema = Type.String({ pattern: TOKEN_NAME_PATTERN, minLength: 1, maxLength: 64 });
/** PBS SINGLE_LINE_COMMENT_SCHEMA */
export const CommentSchema = Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', maxLength: 128 });
export const EnableSchema = Type.Boolean({
  description: 'Enable the account (default). You can set this to 0 to disable it.',
});
export const ExpireSchema = Type.Integer({
  minimum: 0,
  description: 'Account expiration date (seconds since epoch). 0 means no expiration date.',
});
export const NameSchema = Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', minLength: 1, maxLength: 64 });
export const EmailSchema = Type.String({ pattern: '^[^\\s@]+@[^\\s@]+$', maxLength: 64 });
/** PBS 4 `PBS_PASSWORD_SCHEMA`: 8 to 64 characters, no control characters (PASSWORD_FORMAT). */
export const PasswordSchema = Type.String({ pattern: '^[^\\x00-\\x1f\\x7f]*$', minLength: 8, maxLength: 64 });
export const DigestSchema = Type.String({
  pattern: '^[a-f0-9]{64}$',
  description: 'Prevent changes if current configuration file has different SHA256 digest.',
});
export const AclPathSchema = Type.String({ pattern: ACL_PATH_PATTERN, minLength: 1, maxLength: 128 });
export const RoleSchema = Type.Union(ROLE_NAMES.map((r) => Type.Literal(r)));
export const UpidSchema = Type.String({
  pattern: UPID_PATTERN,
  minLength: 'UPID:N:12345678:12345678:12345678:::'.length,
});
export const NodeSchema = Type.String({ pattern: '^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$', maxLength: 63 });
