// @ts-check
/**
 * One V8 setting every process that evaluates Cedar makes before V8's optimising compiler sees
 * the calls into Cedar's WebAssembly: calls from JavaScript into WebAssembly are not inlined into
 * the optimised caller (`--no-turbo-inline-js-wasm-calls`). Imported for its effect by the policy
 * engine (policy-engine.ts), so the server, the desktop shell, headless mode, the CLI, the tests
 * and the benches all run with it; V8's flags are per process, so the Cedar worker thread too.
 *
 * Why: with the inlining on, Node 20's V8 (11.3) aborts the whole process ("Fatal error ...
 * unreachable code" in Deoptimizer::DoComputeBuiltinContinuation) when an optimised caller of
 * cedar-wasm (evaluatePrepared) is deoptimised lazily around the inlined call. It was seen in
 * `BENCH_ONLY=policy-lookups npm run bench` (SIGTRAP within 16 s, every run, since f1aa931 changed
 * that caller's shape) and is a crash a server could meet with any code shape. TurboFan reads the
 * flag when it compiles a function, so setting it at import, before any call is decided, is in
 * time. What it costs: one ordinary call boundary per call into Cedar (nanoseconds, against a
 * Cedar evaluation of about half a millisecond). A `--turbo-inline-js-wasm-calls` given on the
 * node command line wins.
 */
import { setFlagsFromString } from 'node:v8';

if (!process.execArgv.some((arg) => arg.includes('turbo-inline-js-wasm-calls'))) setFlagsFromString('--no-turbo-inline-js-wasm-calls');
