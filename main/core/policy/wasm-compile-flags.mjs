// @ts-check
/**
 * One V8 setting the server process makes before anything compiles Cedar's 4.3 MB WebAssembly
 * module (cedar-wasm compiles it when first imported): at most one thread compiles WebAssembly
 * at a time (`--wasm-num-compilation-tasks=1`; V8's default lets each of its platform worker
 * threads take a share). Imported for its effect, first, by the launcher (bin/countersign.mjs:
 * `npm start`, the CLI, headless, hub and the bench's server) and by the Electron shell. Plain
 * JavaScript because the launcher imports it before the server bundle: in the bundle, packages
 * are imports that run before any bundled code, Cedar included.
 *
 * Why (ADR 0021): as Cedar's functions get hot, V8 recompiles them with its optimising compiler
 * on background threads; each compile takes up to tens of MB from the C allocator and frees it
 * after, but glibc keeps what each thread's arena held at its peak. With every thread compiling,
 * four arenas of about 20 MB each stayed allocated for the life of the process. One at a time
 * only delays when the optimised code arrives (the calls made meanwhile run Cedar's baseline
 * code, as every first call does); the steady-state decision cost is the same. V8's flags are
 * per process, so worker threads get the setting too; and V8 shares one compiled module between
 * the threads that compile the same bytes (its native module cache), so the Cedar worker reuses
 * the main thread's code instead of compiling its own. A `--wasm-num-compilation-tasks` given on
 * the node command line wins.
 */
import { setFlagsFromString } from 'node:v8';

if (!process.execArgv.some((arg) => arg.startsWith('--wasm-num-compilation-tasks'))) setFlagsFromString('--wasm-num-compilation-tasks=1');
