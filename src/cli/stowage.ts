#!/usr/bin/env node
/** Entry point of `stowage`: the server and the admin CLI. Commands live in src/cli/admin/. */
import { runAdminCli } from './admin/main.js';

await runAdminCli(process.argv);
