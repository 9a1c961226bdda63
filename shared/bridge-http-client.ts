/**
 * CountersignBridge over the headless HTTP API (on the gateway port), derived from the bridge
 * table (shared/bridge-table.ts: each row's verb, path and argument places), for the renderer
 * served by `countersign headless` and for tests. Requests and the push events' Server-Sent
 * Events travel through shared/bridge-http-transport.ts (no zod); every answer is validated here
 * against its row and every event against its schema. Errors are CountersignErrors:
 * not_authenticated (401), the server's own code when it answers `{error: {code, message}}` with
 * a known code (e.g. approver_conflicted), schema_invalid (a response that does not match),
 * connection_closed (no answer, timeout) or internal_error (anything else).
 */
import {
  BRIDGE_METHODS,
  createBridgeClient,
  fillBridgePath,
  parseBridgeEvent,
  type BridgeCall,
  type BridgeListener,
  type BridgeMethodRow,
  type CountersignBridge,
} from './bridge-table.js';
import { createHttpTransport, routeRequest, type HttpTransportOptions } from './bridge-http-transport.js';

export type { FetchFn } from './bridge-http-transport.js';
export type HttpBridgeOptions = HttpTransportOptions;

export function createHttpBridge(options: HttpBridgeOptions): CountersignBridge {
  const transport = createHttpTransport(options);
  /** One table method over HTTP: path arguments fill the template, query ones the search, the rest the JSON body. */
  const callMethod: BridgeCall = (name, args) => {
    const row: BridgeMethodRow = BRIDGE_METHODS[name];
    // Path arguments are checked before anything is sent (a bad id never reaches the network).
    const request = routeRequest(row, args, fillBridgePath);
    return transport.call(request.verb, request.path, request.body);
  };

  // One event stream however many subscribers: opened by the first, closed after the last.
  const listeners = new Set<BridgeListener>();
  let closeStream: (() => void) | undefined;
  const subscribe = (listener: BridgeListener): (() => void) => {
    listeners.add(listener);
    closeStream ??= transport.events((name, data) => {
      // Each event checked against its schema; one that is not ours is dropped.
      const event = parseBridgeEvent(name, data);
      if (event !== undefined) for (const each of [...listeners]) each(event);
    });
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && closeStream !== undefined) {
        closeStream();
        closeStream = undefined;
      }
    };
  };

  return createBridgeClient(callMethod, subscribe);
}
