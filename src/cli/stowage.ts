#!/usr/bin/env node
/** Entry point of `stowage`: the server and the admin CLI. Commands live in src/cli/admin/. */
import { runAdminCli } from './admin/main.js';
import { exitQuietlyWhenOutputCloses } from './pipe-closed.js';

exitQuietlyWhenOutputCloses();
await runAdminCli(process.argv);
