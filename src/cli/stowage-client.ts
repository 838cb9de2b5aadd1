#!/usr/bin/env node
/** Entry point of `stowage-client`: backup, restore, list. Commands live in src/cli/client/. */
import { runClientCli } from './client/main.js';
import { exitQuietlyWhenOutputCloses } from './pipe-closed.js';

exitQuietlyWhenOutputCloses();
await runClientCli(process.argv);
