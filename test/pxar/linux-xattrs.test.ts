import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERR_LINUX_ACL_INVALID } from '../../src/errors.js';
import { ACL_NO_MASK, emptyAcl, metadataOf, MODE } from '../../src/pxar/format.js';
import {
  ACL_TAG,
  decodeLinuxAcl,
  encodeLinuxAcl,
  linuxAclFromPxar,
  pxarAclFromLinux,
  xattrMetadataOf,
  xattrsToRestore,
} from '../../src/pxar/linux-xattrs.js';
import { parseXattrDump } from '../../src/sys/xattr-dump.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** What `setfacl` makes of `spec` on a fresh directory of mode 0750: its two ACL attributes. */
function kernelAcls(spec: string[]): { access?: Buffer; default?: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-acl-'));
  try {
    const d = join(dir, 'd');
    mkdirSync(d, { mode: 0o750 });
    execFileSync('chmod', ['0750', d]);
    for (const s of spec) execFileSync('setfacl', ['-m', s, d]);
    const dump = parseXattrDump(
      execFileSync('getfattr', ['-d', '-e', 'hex', '-m', '^system\\.posix_acl', d], {
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    );
    const attrs = dump[0]?.attrs ?? [];
    const get = (n: string) => attrs.find((a) => a.name.equals(b(n)))?.value;
    return { access: get('system.posix_acl_access'), default: get('system.posix_acl_default') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('an access and a default ACL from setfacl become PBS ACL items, and the same kernel bytes come back', () => {
  const kernel = kernelAcls(['u:1234:rx', 'g:55:rw', 'u:12:r', 'd:u::rwx', 'd:g:77:rwx', 'd:o::-']);
  const acl = pxarAclFromLinux(kernel.access, kernel.default);
  assert.deepEqual(acl, {
    users: [
      { uid: 12, permissions: 4n },
      { uid: 1234, permissions: 5n },
    ],
    groups: [{ gid: 55, permissions: 6n }],
    groupObj: { permissions: 5n },
    // setfacl completes a default ACL from the access ACL and computes its mask
    default: { userObj: 7n, groupObj: 5n, other: 0n, mask: 7n },
    defaultUsers: [],
    defaultGroups: [{ gid: 77, permissions: 7n }],
  });
  // the mode's group bits hold the mask (setfacl recomputed it: r|w|x of the named entries)
  const back = linuxAclFromPxar(acl, MODE.IFDIR | 0o770);
  assert.deepEqual(back.access, kernel.access);
  assert.deepEqual(back.default, kernel.default);
});

test('an access ACL without a mask stores no group entry, and a minimal default ACL keeps NO_MASK', () => {
  const access = encodeLinuxAcl([
    { tag: ACL_TAG.USER_OBJ, perm: 7 },
    { tag: ACL_TAG.GROUP_OBJ, perm: 5 },
    { tag: ACL_TAG.OTHER, perm: 0 },
  ]);
  const dflt = encodeLinuxAcl([
    { tag: ACL_TAG.OTHER, perm: 1 },
    { tag: ACL_TAG.USER_OBJ, perm: 6 },
    { tag: ACL_TAG.GROUP_OBJ, perm: 4 },
  ]);
  const acl = pxarAclFromLinux(access, dflt);
  assert.equal(acl.groupObj, undefined);
  assert.deepEqual(acl.default, { userObj: 6n, groupObj: 4n, other: 1n, mask: ACL_NO_MASK });
  const back = linuxAclFromPxar(acl, MODE.IFDIR | 0o750);
  assert.equal(back.access, undefined, 'nothing the mode does not say: no access ACL is written');
  assert.deepEqual(back.default, encodeLinuxAcl(decodeLinuxAcl(dflt)), 'sorted into the kernel order');
});

test('named entries without a stored group entry get the mode group bits as group and mask, with a warning', () => {
  const acl = { ...emptyAcl(), users: [{ uid: 5, permissions: 7n }] };
  const warnings: string[] = [];
  const back = linuxAclFromPxar(acl, MODE.IFREG | 0o640, (w) => warnings.push(w));
  assert.deepEqual(decodeLinuxAcl(back.access!), [
    { tag: ACL_TAG.USER_OBJ, perm: 6 },
    { tag: ACL_TAG.USER, perm: 7, id: 5 },
    { tag: ACL_TAG.GROUP_OBJ, perm: 4 },
    { tag: ACL_TAG.MASK, perm: 4 },
    { tag: ACL_TAG.OTHER, perm: 0 },
  ]);
  assert.equal(warnings.length, 1);
});

test('ACL attributes of the wrong size, version or tag are refused', () => {
  assert.throws(
    () => decodeLinuxAcl(Buffer.from([2, 0, 0])),
    (e) => ERR_LINUX_ACL_INVALID.is(e),
  );
  assert.throws(
    () => decodeLinuxAcl(Buffer.from([1, 0, 0, 0])),
    (e) => ERR_LINUX_ACL_INVALID.is(e),
  );
  assert.throws(
    () => decodeLinuxAcl(Buffer.from([2, 0, 0, 0, 0x40, 0, 7, 0, 0, 0, 0, 0])),
    (e) => ERR_LINUX_ACL_INVALID.is(e),
  );
});

test('attributes map as PBS archives them: user, trusted and NTACL kept, selinux dropped, caps as FCAPS', () => {
  const caps = Buffer.alloc(20, 1);
  const attrs = [
    { name: b('user.z'), value: b('1') },
    { name: b('security.selinux'), value: b('ctx') },
    { name: b('trusted.t'), value: b('2') },
    { name: b('security.capability'), value: caps },
    { name: b('security.NTACL'), value: b('3') },
    { name: b('user.a'), value: Buffer.alloc(0) },
    { name: b('system.posix_acl_default'), value: encodeLinuxAcl([{ tag: ACL_TAG.USER_OBJ, perm: 7 }]) },
  ];
  const file = xattrMetadataOf(attrs, 'file');
  assert.deepEqual(
    file.xattrs.map((x) => x.name.toString()),
    ['security.NTACL', 'trusted.t', 'user.a', 'user.z'],
  );
  assert.deepEqual(file.fcaps, caps);
  assert.equal(file.acl.default, undefined, 'a default ACL belongs to directories only');
  const dir = xattrMetadataOf(attrs, 'directory');
  assert.equal(dir.fcaps, undefined, 'capabilities belong to regular files only');
  assert.equal(dir.acl.default?.userObj, 7n);
  assert.deepEqual(xattrMetadataOf(attrs, 'symlink'), { xattrs: [], acl: emptyAcl() });

  const restored = xattrsToRestore(
    metadataOf(
      { mode: MODE.IFDIR | 0o755, flags: 0n, uid: 0, gid: 0, mtimeSecs: 0, mtimeNanos: 0 },
      { ...dir, xattrs: [...dir.xattrs, { name: b('system.other'), value: b('x') }] },
    ),
  );
  assert.deepEqual(
    restored.map((x) => x.name.toString()),
    ['security.NTACL', 'trusted.t', 'user.a', 'user.z', 'system.posix_acl_default'],
  );
});
