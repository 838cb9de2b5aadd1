#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node
/**
 * Entry point of `stowage`: the server and the admin CLI. Commands live in src/cli/admin/.
 * The `#!` line's glibc tunable: see src/cli/stowage-client.ts.
 */
import { runAdminCli } from './admin/main.js';
import { exitQuietlyWhenOutputCloses } from './pipe-closed.js';

exitQuietlyWhenOutputCloses();
await runAdminCli(process.argv);
