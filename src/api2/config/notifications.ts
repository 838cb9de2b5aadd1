/**
 * `/config/notifications/...`: notification endpoints and matchers, PBS's paths and shapes
 * (`src/api2/config/notifications/` over proxmox-notify):
 *
 *   endpoints/webhook[/{name}]   name, url, method, header[], body (base64), secret[], comment, disable
 *   endpoints/smtp[/{name}]      name, server, port, mode, username, password, from-address, mailto[], author, …
 *   matchers[/{name}]            name, target[], match-severity[], match-field[], mode, invert-match, …
 *   targets                      every endpoint; targets/{name}/test sends a test notification
 *
 * Secrets (webhook secret values, the SMTP password) are written to notifications-priv.cfg and
 * never returned: GET shows a webhook's secrets as `name=NAME` only, as PBS does, and no password.
 * Reading needs Sys.Audit on /system/notifications, changing Sys.Modify (PBS's privileges).
 */
import { Type, type TProperties } from 'typebox';
import { ERR_JOB_EXISTS, NotFoundError } from '../../errors.js';
import { defineRoute, type AnyRoute } from '../../http/route.js';
import type { ServerContext } from '../../http/context.js';
import { CommentSchema, DigestSchema } from '../../http/schemas.js';
import {
  ENTITY_PROPS,
  MATCHER_MODES,
  PRIVATE_PROPS,
  SMTP_MODES,
  WEBHOOK_METHODS,
  notificationConfig,
  parseKeyValue,
  type EntityType,
  type EntityValue,
  type NotificationEntity,
} from '../../notifications/notification-config.js';
import { sendTestNotification } from '../../notifications/notifier.js';

const ACL_PATH = '/system/notifications';
const READ = { path: ACL_PATH, privs: ['Sys.Audit'] } as const;
const MODIFY = { path: ACL_PATH, privs: ['Sys.Modify'] } as const;

const NameSchema = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
  minLength: 2,
  maxLength: 32,
  description: 'Name of the endpoint or matcher.',
});
const List = (description: string) => Type.Array(Type.String({ maxLength: 4096 }), { description });
const Enum = (values: readonly string[], description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

const FIELDS: Record<EntityType, TProperties> = {
  webhook: {
    url: Type.String({ maxLength: 2048, description: 'Target URL (http or https).' }),
    method: Enum(WEBHOOK_METHODS, 'HTTP method.'),
    header: List('HTTP headers, each `name=NAME,value=BASE64` (the value may use templates).'),
    body: Type.String({
      maxLength: 65536,
      description: 'Body template, base64. Without one, a JSON document of the event is sent.',
    }),
    secret: List('Secrets, each `name=NAME,value=BASE64`; the first signs every request. Never returned.'),
    comment: CommentSchema,
    disable: Type.Boolean({ description: 'Disable this endpoint.' }),
  },
  smtp: {
    server: Type.String({ maxLength: 256, description: 'SMTP relay host.' }),
    port: Type.Integer({
      minimum: 1,
      maximum: 65535,
      description: 'Port (default by mode: 25, 587 or 465).',
    }),
    mode: Enum(SMTP_MODES, 'Connection security (default tls).'),
    username: Type.String({ maxLength: 256, description: 'User name for authentication.' }),
    password: Type.String({ maxLength: 256, description: 'Password for authentication. Never returned.' }),
    'from-address': Type.String({ maxLength: 256, description: 'Sender address.' }),
    mailto: List('Recipient addresses.'),
    author: Type.String({ maxLength: 256, description: 'Sender display name (default Stowage).' }),
    comment: CommentSchema,
    disable: Type.Boolean({ description: 'Disable this endpoint.' }),
  },
  matcher: {
    target: List('Endpoints to notify.'),
    'match-severity': List(
      'Severities to match, each a comma-separated list (info, notice, warning, error).',
    ),
    'match-field': List('Field rules: exact:FIELD=VALUE[,VALUE] or regex:FIELD=REGEX.'),
    mode: Enum(MATCHER_MODES, 'Whether all (default) or any of the rules must match.'),
    'invert-match': Type.Boolean({ description: 'Invert the result of the rules.' }),
    comment: CommentSchema,
    disable: Type.Boolean({ description: 'Disable this matcher.' }),
  },
};

const optional = (props: TProperties): TProperties =>
  Object.fromEntries(Object.entries(props).map(([k, s]) => [k, Type.Optional(s)]));

/** What GET shows: public properties, secret names without values, no password. */
export function entityView(e: NotificationEntity): Record<string, unknown> {
  const view: Record<string, unknown> = { name: e.name, ...e.props, origin: 'user-created' };
  if (e.type === 'webhook' && Array.isArray(e.priv.secret)) {
    view.secret = e.priv.secret.map((s) => `name=${parseKeyValue(s, 'secret').name}`);
  }
  return view;
}

/** Split API parameters into public and private properties. */
function split(type: EntityType, params: Record<string, unknown>) {
  const privKeys = new Set(PRIVATE_PROPS[type].map(([k]) => k));
  const props: Record<string, EntityValue> = {};
  const priv: Record<string, EntityValue> = {};
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue;
    (privKeys.has(k) ? priv : props)[k] = v as EntityValue;
  }
  return { props, priv };
}

/** An updated secret list: an entry without a value keeps the value stored under its name (PBS). */
function mergeSecrets(old: EntityValue | undefined, next: string[]): string[] {
  const stored = new Map(
    ((old as string[] | undefined) ?? []).map((s) => [parseKeyValue(s, 'secret').name, s]),
  );
  return next.map((s) => {
    const kv = parseKeyValue(s, 'secret');
    return kv.value === undefined ? (stored.get(kv.name) ?? s) : s;
  });
}

function entityRoutes(type: EntityType, base: string, noun: string): AnyRoute[] {
  const file = (server: ServerContext) => notificationConfig(server.paths.configDir);
  const fields = optional(FIELDS[type]);
  const deletable = [...ENTITY_PROPS[type], ...PRIVATE_PROPS[type]].map(([k]) => k);
  const find = (entities: Map<string, NotificationEntity>, name: string) => {
    const e = entities.get(name);
    if (!e || e.type !== type) throw new NotFoundError(`${noun} '${name}' does not exist.`);
    return e;
  };
  return [
    defineRoute({
      method: 'GET',
      path: base,
      permission: READ,
      description: `List ${noun}s, with the \`digest\` attribute.`,
      handler: ({ server, setAttribute }) => {
        const { entities, digest } = file(server).read();
        setAttribute('digest', digest);
        return [...entities.values()].filter((e) => e.type === type).map(entityView);
      },
    }),
    defineRoute({
      method: 'POST',
      path: base,
      body: Type.Object({ name: NameSchema, ...fields }),
      permission: MODIFY,
      protected: true,
      description: `Create a ${noun}.`,
      handler: async ({ body, server }) => {
        const { name, ...rest } = body as Record<string, unknown> & { name: string };
        await file(server).update((entities) => {
          if (entities.has(name)) throw ERR_JOB_EXISTS(noun, name);
          entities.set(name, { type, name, ...split(type, rest) });
        });
        return null;
      },
    }),
    defineRoute({
      method: 'GET',
      path: `${base}/:name`,
      params: Type.Object({ name: NameSchema }),
      permission: READ,
      description: `Read a ${noun}, with the \`digest\` attribute.`,
      handler: ({ params, server, setAttribute }) => {
        const { entities, digest } = file(server).read();
        setAttribute('digest', digest);
        return entityView(find(entities, params.name));
      },
    }),
    defineRoute({
      method: 'PUT',
      path: `${base}/:name`,
      params: Type.Object({ name: NameSchema }),
      body: Type.Object({
        ...fields,
        delete: Type.Optional(Type.Array(Type.Union(deletable.map((k) => Type.Literal(k))))),
        digest: Type.Optional(DigestSchema),
      }),
      permission: MODIFY,
      protected: true,
      description: `Update a ${noun}: set properties, \`delete\` others.`,
      handler: async ({ params, body, server }) => {
        const {
          delete: del,
          digest,
          ...rest
        } = body as Record<string, unknown> & {
          delete?: string[];
          digest?: string;
        };
        await file(server).update(
          (entities) => {
            const e = find(entities, params.name);
            for (const key of del ?? []) {
              delete e.props[key];
              delete e.priv[key];
            }
            const { props, priv } = split(type, rest);
            if (Array.isArray(priv.secret)) priv.secret = mergeSecrets(e.priv.secret, priv.secret);
            Object.assign(e.props, props);
            Object.assign(e.priv, priv);
          },
          { digest },
        );
        return null;
      },
    }),
    defineRoute({
      method: 'DELETE',
      path: `${base}/:name`,
      params: Type.Object({ name: NameSchema }),
      query: Type.Object({ digest: Type.Optional(DigestSchema) }),
      permission: MODIFY,
      protected: true,
      description: `Remove a ${noun} (an endpoint is also removed from every matcher's targets).`,
      handler: async ({ params, query, server }) => {
        await file(server).update(
          (entities) => {
            find(entities, params.name);
            entities.delete(params.name);
            for (const e of entities.values()) {
              if (e.type === 'matcher' && Array.isArray(e.props.target)) {
                e.props.target = e.props.target.filter((t) => t !== params.name);
              }
            }
          },
          { digest: query.digest },
        );
        return null;
      },
    }),
  ];
}

export const routes: AnyRoute[] = [
  ...entityRoutes('webhook', '/config/notifications/endpoints/webhook', 'webhook endpoint'),
  ...entityRoutes('smtp', '/config/notifications/endpoints/smtp', 'smtp endpoint'),
  ...entityRoutes('matcher', '/config/notifications/matchers', 'matcher'),
  defineRoute({
    method: 'GET',
    path: '/config/notifications/targets',
    permission: READ,
    description: 'List every notification target (endpoint): name, type, comment, disable, origin.',
    handler: ({ server }) =>
      [...notificationConfig(server.paths.configDir).read().entities.values()]
        .filter((e) => e.type !== 'matcher')
        .map((e) => ({
          name: e.name,
          type: e.type,
          ...(e.props.comment !== undefined && { comment: e.props.comment }),
          ...(e.props.disable !== undefined && { disable: e.props.disable }),
          origin: 'user-created',
        })),
  }),
  defineRoute({
    method: 'POST',
    path: '/config/notifications/targets/:name/test',
    params: Type.Object({ name: NameSchema }),
    permission: MODIFY,
    protected: true,
    description: 'Send a test notification to a target now (no retry); an error says why it failed.',
    handler: async ({ params, server }) => {
      const e = notificationConfig(server.paths.configDir).read().entities.get(params.name);
      if (!e || e.type === 'matcher') throw new NotFoundError(`target '${params.name}' does not exist.`);
      await sendTestNotification(e);
      return null;
    },
  }),
];
