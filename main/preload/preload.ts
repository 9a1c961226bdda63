/**
 * The preload: the bridge table (shared/bridge-table.ts) over IPC, exposed to the page as
 * `window.countersign` — every table method (one `invoke` on the row's channel) and
 * `subscribe` to the push events arriving on the one event channel. ipcRenderer itself, and the
 * IPC event object, never reach the page. Answers and events are validated against the table
 * before they do. It runs sandboxed, so it is bundled (with zod and shared/) to one CommonJS
 * file; see docs/desktop.md.
 */
import { contextBridge, ipcRenderer } from 'electron';
import { z } from 'zod';
import { bridgeErrorMessage, toBridgeError, unwrapBridgeAnswer } from '../../shared/bridge.js';
import {
  BRIDGE_EVENT_CHANNEL,
  BRIDGE_METHODS,
  BRIDGE_METHOD_NAMES,
  createBridgeClient,
  parseBridgeEvent,
  type BridgeListener,
  type CountersignBridge,
} from '../../shared/bridge-table.js';
import { CountersignError } from '../../shared/errors.js';

const listeners = new Set<BridgeListener>();
ipcRenderer.on(BRIDGE_EVENT_CHANNEL, (_event, name: unknown, data: unknown) => {
  const checked = parseBridgeEvent(name, data);
  if (checked === undefined) return;
  for (const listener of [...listeners]) listener(checked);
});

const client = createBridgeClient(
  async (name, args) => {
    let raw: unknown;
    try {
      raw = await ipcRenderer.invoke(BRIDGE_METHODS[name].channel, ...args);
    } catch (cause) {
      throw new CountersignError('connection_closed', 'the Countersign main process did not answer', { cause });
    }
    // The value is validated against the row's result schema by createBridgeClient.
    return unwrapBridgeAnswer(z.unknown(), raw);
  },
  (listener) => {
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  },
);

/** Only the message survives the context bridge: carry the code in it (`[code] message`). */
const exposed: Record<string, unknown> = { subscribe: client.subscribe };
for (const name of BRIDGE_METHOD_NAMES) {
  const call = client[name] as (...args: unknown[]) => Promise<unknown>;
  exposed[name] = (...args: unknown[]) =>
    call(...args).catch((error: unknown) => {
      throw new Error(bridgeErrorMessage(toBridgeError(error)));
    });
}

contextBridge.exposeInMainWorld('countersign', Object.freeze(exposed as unknown as CountersignBridge));
