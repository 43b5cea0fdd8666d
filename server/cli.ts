/**
 * Entry point of the `blockcore` command (bin/blockcore.mjs loads it; `npm start` runs
 * `node --import tsx server/cli.ts serve`). Everything else is in cli/main.ts.
 */
import { runCli } from './cli/main.ts';

const code = await runCli(process.argv.slice(2), process.env, {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  write: (text) => process.stdout.write(text),
  isTty: process.stdout.isTTY === true,
});
process.exit(code);
