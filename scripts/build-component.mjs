/**
 * `npm run build:component`: builds the kernels as a WASI component, dist/blockcore-core.wasm
 * (world blockcore:core/core@0.1.0, wit/blockcore-core.wit), and its JavaScript bindings,
 * dist/blockcore-core/ (jco transpile, `instantiation: async`), which test/component.test.ts and
 * bench/component.ts load. Steps, all in this process through the tools' JS APIs:
 *   1. asc: assembly/component/ (the canonical ABI exports over the same kernels as the plain
 *      module) with assembly/component/asconfig.json, into memory;
 *   2. rename: AssemblyScript cannot spell export names like
 *      `blockcore:core/bitmap@0.1.0#[method]bitmap.next-set`, so assembly/component/ exports
 *      `bitmap_method_next_set` and binaryen's JS API renames it by the rules in canonicalName;
 *      an export no rule covers fails the build;
 *   3. jco componentEmbed (the WIT source passed as a string: its CLI cannot read files here)
 *      and componentNew: the component;
 *   4. jco transpile: the bindings, then hoistDebugFlag on them (below).
 * Skips everything when both outputs are newer than every input (assembly/, wit/, this file);
 * `--force` rebuilds anyway. Plain Node ESM; the heavy tools load only when a build runs.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const WIT_FILE = join('wit', 'blockcore-core.wit');
const WORLD = 'core';
const PACKAGE = 'blockcore:core';
const VERSION = '0.1.0';
const ASCONFIG = join('assembly', 'component', 'asconfig.json');
const COMPONENT_FILE = join('dist', 'blockcore-core.wasm');
const BINDINGS_DIR = join('dist', 'blockcore-core');
const BINDINGS_NAME = 'blockcore-core';
const BINDINGS_ENTRY = join(BINDINGS_DIR, `${BINDINGS_NAME}.js`);
const INPUT_DIRS = ['assembly', 'wit'];
/** Core exports the component model names itself: kept as they are. */
const KEPT_EXPORTS = new Set(['memory', 'cabi_realloc', '_initialize']);
/** Interfaces whose resource has the interface's name (the WIT keeps them one to one). */
const RESOURCE_INTERFACES = new Set(['bitmap']);

function mtimeMs(path) {
  try {
    return statSync(join(ROOT, path)).mtimeMs;
  } catch {
    return -Infinity;
  }
}

function filesUnder(dir) {
  const found = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...filesUnder(path));
    else found.push(path);
  }
  return found;
}

function upToDate() {
  const inputs = [...INPUT_DIRS.flatMap(filesUnder), join('scripts', 'build-component.mjs')];
  const newestInput = Math.max(...inputs.map(mtimeMs));
  return Math.min(mtimeMs(COMPONENT_FILE), mtimeMs(BINDINGS_ENTRY)) > newestInput;
}

/**
 * The canonical ABI name of an AssemblyScript export (null when no rule applies):
 *   <iface>_static_<name>   -> blockcore:core/<iface>@0.1.0#[static]<iface>.<name>
 *   <iface>_method_<name>   -> ...#[method]<iface>.<name>
 *   <iface>_dtor            -> ...#[dtor]<iface>
 *   <iface>_<name>          -> ...#<name>
 *   post_<any of the above> -> cabi_post_<its name>
 * with <name>'s underscores as WIT's hyphens (WIT names never hold underscores).
 */
export function canonicalName(asName) {
  if (asName.startsWith('post_')) {
    const target = canonicalName(asName.slice('post_'.length));
    return target === null ? null : `cabi_post_${target}`;
  }
  const match = /^([a-z0-9]+)_(?:(static|method)_)?([a-z0-9_]+)$/.exec(asName);
  if (match === null) return null;
  const [, iface, kind, rawName] = match;
  const name = rawName.replaceAll('_', '-');
  const prefix = `${PACKAGE}/${iface}@${VERSION}#`;
  if (kind === undefined && name === 'dtor' && RESOURCE_INTERFACES.has(iface)) return `${prefix}[dtor]${iface}`;
  if (kind === undefined) return `${prefix}${name}`;
  if (!RESOURCE_INTERFACES.has(iface)) return null;
  return `${prefix}[${kind}]${iface}.${name}`;
}

async function compileCore() {
  const { default: asc } = await import('assemblyscript/asc');
  const outputs = new Map();
  const { error, stderr } = await asc.main(['--config', ASCONFIG, '--outFile', 'core.wasm'], {
    writeFile: (name, contents) => outputs.set(name, contents),
  });
  if (error) throw new Error(`build-component: asc failed: ${error.message}\n${stderr.toString()}`);
  const binary = outputs.get('core.wasm');
  if (!(binary instanceof Uint8Array)) throw new Error('build-component: asc wrote no core.wasm');
  return binary;
}

async function renameExports(binary) {
  const { default: binaryen } = await import('binaryen');
  const module = binaryen.readBinary(binary);
  try {
    module.setFeatures(binaryen.Features.All); // read as MVP otherwise: the kernels use SIMD and bulk memory
    const exports = [];
    for (let i = 0; i < module.getNumExports(); i++) exports.push(binaryen.getExportInfo(module.getExportByIndex(i)));
    for (const { kind, name, value } of exports) {
      if (KEPT_EXPORTS.has(name)) continue;
      const canonical = canonicalName(name);
      if (kind !== binaryen.ExternalFunction || canonical === null) {
        throw new Error(`build-component: export ${name} has no canonical ABI name (see canonicalName)`);
      }
      module.removeExport(name);
      module.addFunctionExport(value, canonical);
    }
    if (!module.validate()) throw new Error('build-component: the renamed core module does not validate');
    return module.emitBinary();
  } finally {
    module.dispose();
  }
}

/**
 * jco 1.35's bindings call `_debugLog` some 10-20 times per export call, and each call reads
 * `process.env.JCO_DEBUG`: on Node and Deno that lookup leaves the JavaScript engine (Deno's
 * process.env asks the runtime), and it was most of a call's cost (bench/component.ts, a bitmap
 * set: 3.8 -> 0.6 us on Node, 5.4 -> 0.55 us on Deno, 1.7 -> 0.5 us on Bun; the design note in
 * assembly/component/index.ts). The variable is read once, when the bindings load, instead;
 * JCO_DEBUG set before then still turns the logging on. A jco whose bindings no longer hold the
 * check is left as it is (with a note).
 */
const DEBUG_CHECK = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
const DEBUG_FLAG = 'blockcoreJcoDebugAtLoad';
const DIRECTIVE = '"use components";\n';

export function hoistDebugFlag(js) {
  if (!js.includes(DEBUG_CHECK)) {
    console.log('build-component: note: the jco bindings read JCO_DEBUG differently now; left as they are');
    return js;
  }
  const declaration = `const ${DEBUG_FLAG} = Boolean(globalThis?.process?.env?.JCO_DEBUG);\n`;
  const body = js.replaceAll(DEBUG_CHECK, `if (!${DEBUG_FLAG}) { return; }`);
  return body.startsWith(DIRECTIVE) ? DIRECTIVE + declaration + body.slice(DIRECTIVE.length) : declaration + body;
}

async function build() {
  const started = performance.now();
  const { componentEmbed, componentNew, transpile } = await import('@bytecodealliance/jco');
  const core = await renameExports(await compileCore());
  const witSource = readFileSync(join(ROOT, WIT_FILE), 'utf8');
  const embedded = await componentEmbed({ binary: core, witSource, world: WORLD, stringEncoding: 'utf8' });
  const component = await componentNew(embedded);
  mkdirSync(dirname(join(ROOT, COMPONENT_FILE)), { recursive: true });
  writeFileSync(join(ROOT, COMPONENT_FILE), component);
  const { files } = await transpile(component, { name: BINDINGS_NAME, instantiation: 'async', quiet: true });
  rmSync(join(ROOT, BINDINGS_DIR), { recursive: true, force: true });
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(ROOT, BINDINGS_DIR, name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, name === `${BINDINGS_NAME}.js` ? hoistDebugFlag(new TextDecoder().decode(bytes)) : bytes);
  }
  const elapsedMs = Math.round(performance.now() - started);
  console.log(`build-component: ${COMPONENT_FILE} (${component.byteLength} bytes; core module ${core.byteLength} bytes), ${BINDINGS_DIR}/ (${Object.keys(files).length} files), ${elapsedMs} ms`);
}

async function main() {
  process.chdir(ROOT);
  if (!process.argv.includes('--force') && upToDate()) {
    console.log('build-component: up to date');
    return;
  }
  await build();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  });
}
