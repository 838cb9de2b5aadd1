#!/usr/bin/env node
/**
 * Entry point of `stowage`: the server and the admin CLI. Commands live in src/cli/admin/.
 * Unlike the client, the server starts without glibc's huge-page tunable: its chunk memory is
 * all pooled (reused, so faulted in once), and with huge pages its resident memory under 16
 * backup sessions grew from 384 to 528 MiB for no measurable gain (docs/performance.md).
 */
import { runAdminCli } from './admin/main.js';
import { exitQuietlyWhenOutputCloses } from './pipe-closed.js';

exitQuietlyWhenOutputCloses();
await runAdminCli(process.argv);
