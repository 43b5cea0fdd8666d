/** The package's version (from package.json) and the runtime we run on, for /v1/health and /metrics. */
import fs from 'node:fs';
import { detectRuntime } from '../runtime/adapter/index.ts';

export const VERSION: string = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
export const RUNTIME = detectRuntime();
