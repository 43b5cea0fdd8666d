/** A .wasm imported as a module: workerd (and Workers) give a compiled WebAssembly.Module. */
declare module '*.wasm' {
  const module: WebAssembly.Module;
  export default module;
}
