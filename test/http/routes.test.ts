import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apiRoutes } from '../../src/api2/index.js';
import { checkedPermission, checkRouteDeclaration } from '../../src/http/register-routes.js';
import type { AnyRoute, Permission, RoutePermission } from '../../src/http/route.js';

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

/** The ACL paths a permission checks, whatever its form. */
function aclPaths(p: RoutePermission): string[] {
  if (p === 'anybody' || 'filtered' in p || 'userParam' in p) return [];
  if ('checked' in p) return [p.checked.path];
  if ('anyOf' in p) return p.anyOf.flatMap((a) => ('path' in a ? [a.path] : []));
  if ('allOf' in p) return p.allOf.map((a) => a.path);
  return [(p as Permission).path];
}

test('a route open to every authenticated caller says how its handler filters', () => {
  for (const route of apiRoutes) {
    const where = `${route.method} ${route.path}`;
    const p = route.permission as unknown;
    assert.notEqual(p, 'authenticated', `${where}: say how it filters with filtered(...)`);
    if (typeof p === 'object' && p !== null && 'filtered' in p) {
      const how = (p as { filtered: unknown }).filtered;
      assert.ok(typeof how === 'string' && how.trim().length >= 10, `${where}: filtered(...) says nothing`);
    }
  }
  const bare = { ...apiRoutes[0]!, permission: 'authenticated' } as unknown as AnyRoute;
  assert.throws(() => checkRouteDeclaration(bare), /unknown permission/);
  const mute = { ...apiRoutes[0]!, permission: { filtered: '' } } as AnyRoute;
  assert.throws(() => checkRouteDeclaration(mute), /must say how it filters/);
});

test('every route below /admin/datastore/:store/ declares a privilege on /datastore/{store}', () => {
  const below = apiRoutes.filter((r) => r.path.startsWith('/admin/datastore/:store/'));
  assert.ok(below.length >= 20, `only ${below.length} datastore routes`);
  for (const route of below) {
    const where = `${route.method} ${route.path}`;
    const paths = aclPaths(route.permission);
    assert.ok(paths.length > 0, `${where} declares no privilege`);
    const onStore = (path: string) => /^\/datastore\/\{store\}(\/|$)/.test(path);
    if (typeof route.permission === 'object' && 'allOf' in route.permission) {
      // the store's privilege and more (mount: Sys.Modify on /system/disks too, as PBS)
      assert.ok(
        paths.some(onStore),
        `${where}: no privilege on /datastore/{store} among ${paths.join(', ')}`,
      );
    } else {
      for (const path of paths) assert.ok(onStore(path), `${where}: privilege on ${path}`);
    }
  }
});

/** Routes that count only owned groups without PBS's "A or B+owner" privilege rule. */
const OWNED_COUNTS_ONLY = new Set([
  // Audit|Backup, Read, or anything below; counts only owned groups without Audit (PBS `status`)
  'GET /admin/datastore/:store/status',
]);

test('a route that lets owners in declares the owner privilege, and its description names every privilege', () => {
  let ownerChecked = 0;
  for (const route of apiRoutes) {
    const where = `${route.method} ${route.path}`;
    const checked = checkedPermission(route.permission);
    const saysOwned = /(caller owns|owned groups|groups the caller owns|only the owner)/i.test(
      route.description,
    );
    if (!checked) {
      assert.ok(
        !saysOwned || OWNED_COUNTS_ONLY.has(where),
        `${where} speaks of owned groups but is not ownerChecked`,
      );
      continue;
    }
    if (checked.checked.owner.length > 0) {
      ownerChecked++;
      assert.ok(saysOwned, `${where}: ownerChecked, but the description does not say so`);
    }
    for (const priv of [...checked.checked.privs, ...checked.checked.owner]) {
      assert.ok(route.description.includes(priv), `${where}: the description does not name ${priv}`);
    }
  }
  assert.ok(ownerChecked >= 15, `only ${ownerChecked} ownerChecked routes`);
});

test('a checked permission naming a parameter neither the path nor the query or body has is refused', () => {
  const route = apiRoutes.find((r) => r.method === 'GET' && r.path === '/admin/datastore/:store/notes')!;
  assert.doesNotThrow(() => checkRouteDeclaration(route));
  const checked = checkedPermission(route.permission)!;
  const typo = {
    ...route,
    permission: { ...checked, checked: { ...checked.checked, path: '/datastore/{store}/{namespace}' } },
  } as AnyRoute;
  assert.throws(() => checkRouteDeclaration(typo), /unknown parameter 'namespace'/);
});
