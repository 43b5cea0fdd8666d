/**
 * The one list of engines the service hosts (engine.ts says what one is and how to add one).
 * Order is the state file's and the restore order: an engine may export-reference only engines
 * before it.
 */
import { arrayEngine } from './array/index.ts';
import { cloneEngine } from './clone/index.ts';
import { mirrorEngine } from './mirror/index.ts';
import type { EngineDefinition } from './engine.ts';
import { transportEngine } from './transport/index.ts';

/** Transport first: a clone may stack on a remote device (`remote:r1` as its source); arrays and mirrors before clones. */
export const ENGINES: readonly EngineDefinition[] = [transportEngine, arrayEngine, mirrorEngine, cloneEngine];

/** The kinds of `<kind>:<name>` device references. */
export const ENGINE_KINDS: readonly string[] = ENGINES.map((engine) => engine.kind);
