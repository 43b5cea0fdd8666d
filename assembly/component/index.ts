/**
 * The kernels as a WebAssembly component. DESIGN NOTE.
 *
 * World. wit/blockcore-core.wit: package blockcore:core@0.1.0, world `core`, which imports
 * nothing (not even WASI) and exports five interfaces:
 *   types   error-code: out-of-range, invalid-argument, out-of-memory;
 *   bitmap  resource bitmap: [static] create(bit-count) -> result<bitmap>, bit-count, get, set,
 *           clear, next-set, next-zero (and -wrapping), count-set, set-range, clear-range,
 *           next-run, words, load-words, or, and-not (the bitmap kernels, ../bitmap.ts);
 *   bytes   copy, is-zero over list<u8> (../copy.ts);
 *   digest  crc32c(seed, data), xxh64(seed, data) (../crc32c.ts, ../xxh64.ts);
 *   frame   decode-nbd-requests (a batch of NBD request headers into records with verdicts),
 *           encode-nbd-request, -simple-reply, -structured-reply (../frame.ts).
 * Positions are u32 (bitmaps hold up to 2^32 - 1 bits here, one fewer than the plain facade's
 * 2^32, so every position and count is a u32 and no call needs a 64-bit integer); export sizes,
 * cookies and offsets are u64. Every argument is checked in here, in the plain facade's order
 * (runtime/wasm/kernels.ts): out-of-range positions, offsets, lengths and words, malformed
 * ranges and limits come back as the result's error case and change nothing.
 *
 * Build (scripts/build-component.mjs, `npm run build:component`). The same kernel sources as the
 * plain module, compiled by asc (runtime stub, SIMD) from this entry; binaryen's JS API renames
 * the exports (AssemblyScript cannot spell `blockcore:core/bitmap@0.1.0#[method]bitmap.get`:
 * `bitmap_method_get` here, mapped by rule); jco's componentEmbed (WIT passed as a string) and
 * componentNew wrap it; jco transpile writes the JavaScript bindings to dist/blockcore-core/.
 *
 * The canonical ABI, written by hand in this folder (names: wit-component's export and import
 * names; layouts: component-model's CanonicalABI.md):
 *   memory    heap.ts: a first-fit, coalescing free list over the component's own memory (the
 *             plain module leaves memory to its host), growing by pages, 0 when full;
 *   arguments flattened: lists arrive as (ptr, len) in blocks the host took from cabi_realloc,
 *             the callee's to release (each export does, before returning); u64 as i64; bools
 *             as non-zero; u16 masked to 16 bits;
 *   results   abi.ts: one static return area, since every result<...> and list flattens to more
 *             than one value: a u8 case, then the payload at its alignment; lists returned are
 *             released by the export's cabi_post_* function (or by the next export, if a host
 *             skips it); NBD headers come from a static buffer; empty lists never touch the heap;
 *   resource  bitmap.ts: the rep is the address of a heap block (a descriptor, then the bitmap's
 *             layout), handed to the host through the imported `[resource-new]bitmap`; methods
 *             and borrow<bitmap> arguments arrive as reps (the resource is this component's
 *             own); `[dtor]bitmap` frees the block; a rep that is not a live bitmap is refused;
 *   start     `_initialize` runs the kernels' start code (the CRC32C tables and their check).
 * Nothing traps on any argument. The one trap left is cabi_realloc when the rest of the 4 GiB
 * cannot hold a list the host passes in: the canonical ABI gives realloc no error path, and no
 * call could take such a list anyway.
 *
 * Size: 30,144 bytes (the core module 17,332 of them; the plain SIMD module is 12,944).
 * test/component.test.ts keeps it under 40 KiB.
 *
 * Cost (bench/component.ts: one call from JavaScript, medians of 15 interleaved rounds, us per
 * call on Node 20 / Bun 1.4 / Deno 2.9, this 2-core VM; plain = the TypeScript facade over the
 * plain module, which checks the same arguments):
 *   kernel                   plain               component
 *   bitmap get               0.013/0.006/0.010   0.64/0.61/0.57
 *   bitmap set               0.012/0.009/0.010   0.63/0.48/0.55
 *   bitmap next-set          0.034/0.033/0.031   1.38/0.57/1.10
 *   bitmap count-set (4096)  0.043/0.031/0.038   1.33/0.63/0.62
 *   set-range + clear-range  0.109/0.078/0.091   2.70/1.31/2.23  (two calls)
 *   is-zero 4 KiB            0.23/0.20/0.18      1.51/0.80/0.77
 *   crc32c 64 B              0.16/0.13/0.11      1.55/0.77/0.67
 *   crc32c 4 KiB             0.64/0.62/0.67      2.24/1.46/1.39
 *   xxh64 4 KiB              0.46/0.42/0.38      1.79/1.21/1.03
 *   copy 64 B                0.026/0.019/0.020   2.43/1.34/1.95  (plain: between its buffers)
 *   decode 32 NBD headers    0.60/0.33/0.51      6.81/5.16/5.00  (component: 64 bigints out)
 *   encode a simple reply    0.30/0.22/0.59      1.92/1.00/1.92
 * So a component call costs 0.5-1.4 us more than a plain one, 1-2 us with lists, ~5 us for a
 * 32-record batch: 20-100x the plain call for bitmap operations, 2-4x for 4 KiB digests. That is
 * jco's bindings, not the kernels or the ABI: calling the same core export straight from
 * JavaScript costs 0.07-0.12 us. Stock jco 1.35 bindings cost 3.8/1.7/5.4 us for a set and
 * 13.1/13.6/8.0 us for decode-32, most of it a process.env.JCO_DEBUG lookup on every internal
 * log call: the build reads it once (hoistDebugFlag in the build script).
 *
 * Who should embed which.
 *   - blockcore itself, and any JavaScript host (Node, Bun, Deno, browsers): the plain module
 *     with its TypeScript facade. The bindings add more per call than most kernels take, the
 *     facade already checks every argument, and it shares memory with its callers (bitmaps and
 *     buffers in place, no copies in and out, no bigints).
 *   - Hosts in other languages, with a component runtime (wasmtime from Rust, Python, .NET, Go,
 *     C; checked once with wasmtime 49's Python embedding: it loads, computes the CRC32C check
 *     value, runs the resource's methods and returns out-of-range as an error), and hosts that
 *     want the typed contract and isolation: the component. They get the kernels without
 *     porting the facade (its checks are inside), a memory nobody else writes, handles instead
 *     of pointers, and errors as values; a native runtime's per-call cost is not jco's.
 *   - A JavaScript host that must take the component (one artifact for every host, or
 *     composition with other components): batch the work per call (a digest of 64 KiB, a decode
 *     of many headers), where 1-5 us is noise.
 *
 * Known limits of the jco bindings (not of the component): they read core pointers as signed
 * i32, so a list placed above 2 GiB of the component's memory fails in the host with a
 * RangeError (the allocator is first-fit from the bottom, so lists land low unless 2 GiB of
 * bitmaps sit below them); they wrap JavaScript numbers into u32/u16 (`>>> 0`) rather than
 * refuse them, so range checks of JS numbers above 2^32 are the caller's; u64 are bigints.
 */
export {
  bitmap_static_create, bitmap_dtor, bitmap_method_bit_count, bitmap_method_get, bitmap_method_set, bitmap_method_clear,
  bitmap_method_next_set, bitmap_method_next_zero, bitmap_method_next_set_wrapping, bitmap_method_next_zero_wrapping,
  bitmap_method_count_set, bitmap_method_set_range, bitmap_method_clear_range, bitmap_method_next_run,
  bitmap_method_words, post_bitmap_method_words, bitmap_method_load_words, bitmap_method_or, bitmap_method_and_not,
} from './bitmap';
export { bytes_copy, post_bytes_copy, bytes_is_zero, digest_crc32c, digest_xxh64 } from './bytes';
export {
  frame_decode_nbd_requests, post_frame_decode_nbd_requests, frame_encode_nbd_request, frame_encode_nbd_simple_reply,
  frame_encode_nbd_structured_reply,
} from './frame';
export { cabi_realloc } from './abi';
