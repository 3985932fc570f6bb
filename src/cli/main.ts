#!/usr/bin/env node
// The `tracklock` command (package.json `bin`). Sets the exit status and lets the process end
// by itself: a handle left open would show as a command that never returns.
import { main } from './program.js';

process.exitCode = await main(process.argv);
