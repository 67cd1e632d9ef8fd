#!/usr/bin/env node
// Entry point of the published CLI: the compiled TypeScript lives in dist/.
import '../dist/src/cli/main.js';
