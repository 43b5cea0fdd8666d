#!/usr/bin/env node
// The `blockcore` command. Node 20 cannot run TypeScript, so under Node this registers tsx's loader
// in this process (no child to forward signals to) and imports the CLI; Bun and Deno run the .ts
// as it is (`bun bin/blockcore.mjs ...`, `deno run -A bin/blockcore.mjs ...`).
if (!('Bun' in globalThis) && !('Deno' in globalThis)) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(new URL('../server/cli.ts', import.meta.url).href);
