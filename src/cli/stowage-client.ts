#!/usr/bin/env node
/** Entry point of `stowage-client`: backup, restore, list. Commands live in src/cli/client/. */
import { runClientCli } from './client/main.js';

await runClientCli(process.argv);
