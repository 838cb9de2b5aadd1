#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node
/**
 * Entry point of `stowage-client`: backup, restore, list. Commands live in src/cli/client/.
 *
 * The `#!` line asks glibc for transparent huge pages on the memory it maps (a tunable read only
 * at process start): chunk-sized buffers then fault in 2 MiB at a time instead of 4 KiB, which
 * on virtual machines cuts a restore's CPU time by a third (docs/performance.md). Kernels in THP
 * `never` mode and glibc before 2.35 ignore it.
 */
import { runClientCli } from './client/main.js';
import { exitQuietlyWhenOutputCloses } from './pipe-closed.js';

exitQuietlyWhenOutputCloses();
await runClientCli(process.argv);
