import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiRoutes } from '../../src/api2/index.js';
import { checkRouteDeclaration } from '../../src/server/register-routes.js';

test('every registered API route declares a permission and a description', () => {
  assert.ok(apiRoutes.length > 10);
  for (const route of apiRoutes) {
    const where = `${route.method} ${route.path}`;
    assert.ok(route.permission, `${where} has no permission`);
    assert.ok(route.description.length > 10, `${where} has no description`);
    assert.doesNotThrow(() => checkRouteDeclaration(route), where);
  }
});

test('only the login routes can be called without authentication', () => {
  const open = apiRoutes.filter((r) => r.permission === 'anybody').map((r) => `${r.method} ${r.path}`);
  assert.deepEqual(open.sort(), ['GET /access/ticket', 'POST /access/ticket']);
});

test('no method and path is registered twice', () => {
  const keys = apiRoutes.map((r) => `${r.method} ${r.path}`);
  assert.equal(new Set(keys).size, keys.length);
});

test('a permission naming a URL parameter the path does not have is refused at registration', () => {
  assert.throws(
    () =>
      checkRouteDeclaration({
        method: 'GET',
        path: '/admin/datastore/:name/status',
        permission: { path: '/datastore/{store}', privs: ['Datastore.Audit'] },
        description: 'a route with a typo in its permission',
        handler: () => null,
      }),
    /unknown parameter 'store'/,
  );
});
