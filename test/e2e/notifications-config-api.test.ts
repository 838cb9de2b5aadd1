import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';

let t: TestServer;
let cfgPath: string;
let privPath: string;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-notify-cfg-' });
  cfgPath = join(t.paths.configDir, 'notifications.cfg');
  privPath = join(t.paths.configDir, 'notifications-priv.cfg');
});
after(() => t.close());

const WEBHOOK = '/config/notifications/endpoints/webhook';
const SMTP = '/config/notifications/endpoints/smtp';
const MATCHERS = '/config/notifications/matchers';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');
const files = (): [string, string] => [read(cfgPath), read(privPath)];

test('endpoints are created from a JSON body, a form body or the query; secrets go to a private file and are never returned', async () => {
  const byJson = await t.api('POST', WEBHOOK, {
    auth: t.root,
    body: {
      name: 'hook-json',
      url: 'http://127.0.0.1:9/hook',
      method: 'post',
      header: [`name=X-Team,value=${b64('ops')}`],
      secret: [`name=signing,value=${b64('top-secret-value')}`],
      comment: 'json',
    },
  });
  assert.equal(byJson.status, 200, JSON.stringify(byJson.body));
  const form = new URLSearchParams([
    ['name', 'hook-form'],
    ['url', 'https://hooks.example/x'],
    ['method', 'put'],
    ['header', `name=A,value=${b64('1')}`],
    ['header', `name=B,value=${b64('2')}`],
    ['body', b64('{"t":"{{ title }}"}')],
  ]);
  const byForm = await t.api('POST', WEBHOOK, { auth: t.root, form: form.toString() });
  assert.equal(byForm.status, 200, JSON.stringify(byForm.body));
  const query = new URLSearchParams({
    name: 'mail',
    server: 'mail.example',
    port: '2525',
    mode: 'starttls',
    username: 'stowage',
    password: 'smtp-password-1',
    'from-address': 'stowage@example.org',
    mailto: 'ops@example.org',
  });
  const byQuery = await t.api('POST', `${SMTP}?${query}`, { auth: t.root });
  assert.equal(byQuery.status, 200, JSON.stringify(byQuery.body));

  const hook = await t.api('GET', `${WEBHOOK}/hook-json`, { auth: t.root });
  assert.equal(hook.status, 200);
  assert.deepEqual(hook.body.data, {
    name: 'hook-json',
    url: 'http://127.0.0.1:9/hook',
    method: 'post',
    header: [`name=X-Team,value=${b64('ops')}`],
    comment: 'json',
    secret: ['name=signing'],
    origin: 'user-created',
  });
  assert.match(hook.body.digest as string, /^[0-9a-f]{64}$/);
  const formHook = await t.api('GET', `${WEBHOOK}/hook-form`, { auth: t.root });
  assert.deepEqual((formHook.body.data as { header: string[] }).header, [
    `name=A,value=${b64('1')}`,
    `name=B,value=${b64('2')}`,
  ]);
  const mail = await t.api('GET', `${SMTP}/mail`, { auth: t.root });
  assert.equal((mail.body.data as Record<string, unknown>).port, 2525);
  assert.equal((mail.body.data as Record<string, unknown>).password, undefined);
  const all = JSON.stringify([hook.body, (await t.api('GET', WEBHOOK, { auth: t.root })).body, mail.body]);
  assert.doesNotMatch(all, new RegExp(b64('top-secret-value')));
  assert.doesNotMatch(all, /smtp-password-1/);

  const [pub, priv] = files();
  assert.match(pub, /^webhook: hook-json\n\turl http:\/\/127\.0\.0\.1:9\/hook\n\tmethod post\n/);
  assert.match(pub, /\theader name=A,value=MQ==\n\theader name=B,value=Mg==\n/);
  assert.doesNotMatch(pub, /top-secret|smtp-password/);
  assert.match(
    priv,
    new RegExp(`webhook: hook-json\n\tsecret name=signing,value=${b64('top-secret-value')}\n`),
  );
  assert.match(priv, /smtp: mail\n\tpassword smtp-password-1\n/);
  assert.equal(statSync(privPath).mode & 0o077, 0, 'notifications-priv.cfg is readable by others');

  const targets = await t.api('GET', '/config/notifications/targets', { auth: t.root });
  assert.deepEqual(
    (targets.body.data as Array<{ name: string; type: string }>).map((x) => `${x.type}:${x.name}`),
    ['webhook:hook-json', 'webhook:hook-form', 'smtp:mail'],
  );
});

test('an update keeps a secret given without a value and replaces one given with a value', async () => {
  const keep = await t.api('PUT', `${WEBHOOK}/hook-json`, {
    auth: t.root,
    body: { secret: ['name=signing'], comment: 'changed' },
  });
  assert.equal(keep.status, 200, JSON.stringify(keep.body));
  assert.match(files()[1]!, new RegExp(`secret name=signing,value=${b64('top-secret-value')}`));
  const replace = await t.api('PUT', `${WEBHOOK}/hook-json`, {
    auth: t.root,
    form: `secret=${encodeURIComponent(`name=signing,value=${b64('new-value')}`)}&delete=comment`,
  });
  assert.equal(replace.status, 200, JSON.stringify(replace.body));
  assert.match(files()[1]!, new RegExp(`secret name=signing,value=${b64('new-value')}`));
  assert.doesNotMatch(files()[0]!, /comment/);
});

test('matchers name existing targets; removing an endpoint removes it from the matchers', async () => {
  const created = await t.api('POST', MATCHERS, {
    auth: t.root,
    body: {
      name: 'maint',
      target: ['hook-json', 'mail'],
      'match-severity': ['warning,error'],
      'match-field': ['exact:type=maintenance', 'regex:datastore=^store'],
      mode: 'any',
    },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  assert.match(
    files()[0]!,
    /matcher: maint\n\ttarget hook-json\n\ttarget mail\n\tmatch-severity warning,error\n/,
  );
  const removed = await t.api('DELETE', `${WEBHOOK}/hook-form`, { auth: t.root });
  assert.equal(removed.status, 200);
  const gone = await t.api('DELETE', `${SMTP}/mail`, { auth: t.root });
  assert.equal(gone.status, 200);
  const m = await t.api('GET', `${MATCHERS}/maint`, { auth: t.root });
  assert.deepEqual((m.body.data as { target: string[] }).target, ['hook-json']);
  assert.doesNotMatch(files()[1]!, /smtp: mail/);
});

test('bad input is refused with 400 and changes nothing', async () => {
  const before = files();
  const cases: Array<[string, string, unknown]> = [
    ['POST', WEBHOOK, { name: 'x', url: 'http://a/', method: 'post' }],
    ['POST', WEBHOOK, { name: '-bad', url: 'http://a/', method: 'post' }],
    ['POST', WEBHOOK, { name: 'bad name', url: 'http://a/', method: 'post' }],
    ['POST', WEBHOOK, { name: 'hook-ftp', url: 'ftp://a/', method: 'post' }],
    ['POST', WEBHOOK, { name: 'hook-m', url: 'http://a/', method: 'patch' }],
    [
      'POST',
      WEBHOOK,
      { name: 'hook-s', url: 'http://a/', method: 'post', secret: ['name=k,value=not base64!'] },
    ],
    ['POST', WEBHOOK, { name: 'hook-nv', url: 'http://a/', method: 'post', secret: ['name=k'] }],
    ['POST', WEBHOOK, { name: 'hook-json', url: 'http://a/', method: 'post' }],
    ['POST', SMTP, { name: 'mail2', server: 'm', 'from-address': 'a@b', mailto: ['not-an-address'] }],
    ['POST', SMTP, { name: 'mail3', server: 'm', 'from-address': 'a@b' }],
    ['POST', MATCHERS, { name: 'm2', target: ['no-such-target'] }],
    ['POST', MATCHERS, { name: 'm3', 'match-severity': ['urgent'] }],
    ['POST', MATCHERS, { name: 'm4', 'match-field': ['fuzzy:type=x'] }],
    ['POST', MATCHERS, { name: 'm5', 'match-field': ['regex:type=('] }],
    ['PUT', `${WEBHOOK}/hook-json`, { url: 'not a url' }],
  ];
  for (const [method, path, body] of cases) {
    const res = await t.api(method, path, { auth: t.root, body });
    const expected = path === WEBHOOK && (body as { name: string }).name === 'hook-json' ? 409 : 400;
    assert.ok(
      res.status === expected || (expected === 409 && res.status === 400),
      `${method} ${path} ${JSON.stringify(body)}: ${res.status} ${JSON.stringify(res.body)}`,
    );
    assert.equal(res.body.data, null);
    assert.equal(typeof res.body.message, 'string');
  }
  const missing = await t.api('GET', `${WEBHOOK}/no-such`, { auth: t.root });
  assert.equal(missing.status, 404);
  assert.deepEqual(files(), before);
});

test('reading needs Sys.Audit and changing Sys.Modify on /system/notifications', async () => {
  const nobody = await t.addUser('nobody@pbs');
  const auditor = await t.addUser('auditor@pbs', [{ path: '/system/notifications', role: 'Audit' }]);
  assert.equal((await t.api('GET', WEBHOOK, { auth: nobody })).status, 403);
  const list = await t.api('GET', WEBHOOK, { auth: auditor });
  assert.equal(list.status, 200);
  const create = await t.api('POST', WEBHOOK, {
    auth: auditor,
    body: { name: 'hook-x', url: 'http://a/', method: 'post' },
  });
  assert.equal(create.status, 403);
});
