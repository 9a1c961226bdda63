/**
 * The desk's bridge whose zod loads after the first paint. Building the bridge table's schemas
 * was most of a fresh desk's script time (bench desk-paint), and the queue's first paint needs
 * only three answers: who is signed in, the queue's page and the approvers. So this bridge
 * answers those three (getSession, listQueue, listApprovers) from the transport and checks them
 * by hand (shared/desk-first-answers.ts, held equal to their schemas by a test), and hands every
 * other method to the full bridge (the table's, with its zod schemas), which is loaded once
 * `ready` settles; calls made before then wait for it. Push events are received from the start
 * and each is checked against its schema and delivered, in order, once the full bridge is there.
 * Nothing is shown unchecked: an answer that fails its check is schema_invalid, an event that
 * fails its schema is dropped, as with the table's own bridge; an event waiting for a chunk that
 * failed to load waits for the next try.
 *
 * Pure and zod-free: the only imports are the hand checks, the method names and types.
 */
import type { BridgeEvent, BridgeListener, BridgeMethodName, BridgeMethods, CountersignBridge } from './bridge-table.js';
import { BRIDGE_METHOD_NAME_LIST } from './bridge-method-names.js';
import { checkFirstAnswer, FIRST_ANSWER_METHODS, type FirstAnswerMethod } from './desk-first-answers.js';
import { toCountersignError } from './errors.js';

/** What the deferred part brings: the table's bridge and its event check. */
export interface FullBridge {
  readonly bridge: CountersignBridge;
  /** parseBridgeEvent (shared/bridge-table.ts): the event, or undefined when it is not one of ours. */
  readonly parseEvent: (name: unknown, data: unknown) => BridgeEvent | undefined;
}

export interface DeferredBridgeParts {
  /** One first-answer call over the transport: its answer, unchecked (a failure is thrown). */
  first(method: FirstAnswerMethod, args: readonly unknown[]): Promise<unknown>;
  /** The transport's push events, unchecked, until the returned function is called. */
  events(listener: (name: unknown, data: unknown) => void): () => void;
  /** Load the full bridge (a separate chunk in the renderer); called once, after `ready`. */
  loadFull(): Promise<FullBridge>;
  /** Settles when the full bridge may load (after the queue's first paint). */
  ready: Promise<void>;
}

const FIRST = new Set<string>(FIRST_ANSWER_METHODS);
/** Pauses between tries to load the full bridge while a push event waits for its check. */
const EVENT_RETRY_FIRST_MS = 250;
const EVENT_RETRY_MAX_MS = 5_000;

export function createDeferredBridge(parts: DeferredBridgeParts): CountersignBridge {
  let full: Promise<FullBridge> | undefined;
  const loadFull = (): Promise<FullBridge> => (full ??= parts.ready.then(() => parts.loadFull()));

  const methods = {} as Record<BridgeMethodName, (...args: unknown[]) => Promise<unknown>>;
  for (const name of BRIDGE_METHOD_NAME_LIST) {
    methods[name] = FIRST.has(name)
      ? async (...args: unknown[]) => {
          // As createBridgeClient does: trailing undefined arguments are left out.
          while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
          let value: unknown;
          try {
            value = await parts.first(name as FirstAnswerMethod, args);
          } catch (error) {
            throw toCountersignError(error);
          }
          return checkFirstAnswer(name as FirstAnswerMethod, value);
        }
      : async (...args: unknown[]) => {
          let bridge: CountersignBridge;
          try {
            ({ bridge } = await loadFull());
          } catch (error) {
            // The chunk did not load (the server restarted, the network dropped): said as any failure.
            full = undefined;
            throw toCountersignError(error);
          }
          return (bridge[name] as (...a: unknown[]) => Promise<unknown>)(...args);
        };
  }

  // One event stream however many subscribers: opened by the first, closed after the last. Each
  // event waits for the full bridge's check, in arrival order.
  const listeners = new Set<BridgeListener>();
  let closeStream: (() => void) | undefined;
  let delivered: Promise<void> = Promise.resolve();
  const deliver = (name: unknown, data: unknown) => {
    delivered = delivered.then(async () => {
      // A valid event is never dropped because the chunk failed to load (the server restarted, the
      // network dropped): the transport has moved past it and would not send it again. It waits,
      // and the events behind it in order, while the load is tried again with a growing pause.
      let event: BridgeEvent | undefined;
      for (let attempt = 0; ; attempt++) {
        try {
          event = (await loadFull()).parseEvent(name, data);
          break;
        } catch {
          full = undefined;
          await new Promise((resolve) => setTimeout(resolve, Math.min(EVENT_RETRY_FIRST_MS * 2 ** attempt, EVENT_RETRY_MAX_MS)));
        }
      }
      if (event !== undefined) for (const each of [...listeners]) each(event);
    });
  };
  const subscribe = (listener: BridgeListener): (() => void) => {
    listeners.add(listener);
    closeStream ??= parts.events(deliver);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && closeStream !== undefined) {
        closeStream();
        closeStream = undefined;
      }
    };
  };
  return { ...(methods as unknown as BridgeMethods), subscribe };
}
