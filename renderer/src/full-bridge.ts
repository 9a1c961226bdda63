/**
 * The desk's full bridge: zod and every schema of the bridge table, in a chunk of its own that
 * main.tsx's deferred bridge (shared/bridge-deferred.ts) loads after the queue's first paint.
 * Evaluating these schemas was most of a fresh desk's script time (bench desk-paint); the first
 * paint's three answers are checked by hand meanwhile (shared/desk-first-answers.ts).
 */
import { z } from 'zod';
import { createHttpBridge, type HttpBridgeOptions } from '../../shared/bridge-http-client.js';
import { parseBridgeEvent, validatingBridge, type CountersignBridge } from '../../shared/bridge-table.js';
import type { FullBridge } from '../../shared/bridge-deferred.js';

// The CSP forbids eval: tell zod not to probe for it (the probe would log a CSP violation).
z.config({ jitless: true });

/** Over HTTP (headless): the table's bridge with the same secret and cookie. */
export function fullHttpBridge(options: HttpBridgeOptions): FullBridge {
  return { bridge: createHttpBridge(options), parseEvent: parseBridgeEvent };
}

/** In Electron: the preload's bridge, every answer and event validated again (the renderer trusts no transport). */
export function fullIpcBridge(inner: CountersignBridge): FullBridge {
  return { bridge: validatingBridge(inner), parseEvent: parseBridgeEvent };
}
