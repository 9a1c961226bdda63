/**
 * The desk's deferred bridge (shared/bridge-deferred.ts) and push events while its full bridge's
 * chunk fails to load: a valid event is kept and delivered, in order, once a later try loads it
 * (review7 F5). Fault injection: loadFull rejects as a chunk fetch does when the network drops;
 * a real browser cannot be made to fail one dynamic import on demand.
 */
import { describe, expect, it } from 'vitest';
import { createDeferredBridge } from '../../shared/bridge-deferred.js';
import { parseBridgeEvent, type BridgeEvent } from '../../shared/bridge-table.js';

function bridgeFailingLoads(failures: number) {
  let push: ((name: unknown, data: unknown) => void) | undefined;
  let loads = 0;
  const bridge = createDeferredBridge({
    first: () => Promise.reject(new Error('not used')),
    events: (listener) => {
      push = listener;
      return () => undefined;
    },
    loadFull: () => {
      loads++;
      if (loads <= failures) return Promise.reject(new TypeError('Failed to fetch dynamically imported module'));
      return Promise.resolve({ bridge: {} as never, parseEvent: parseBridgeEvent });
    },
    ready: Promise.resolve(),
  });
  const seen: string[] = [];
  bridge.subscribe((event: BridgeEvent) => seen.push((event.data as { requestId: string }).requestId));
  return { push: (id: string) => push!('decided', { requestId: id, state: 'denied' }), seen, loads: () => loads };
}

const until = async (check: () => boolean) => {
  while (!check()) await new Promise((r) => setTimeout(r, 10));
};

describe('deferred bridge events', () => {
  it('delivers an event that arrived while the full bridge failed to load, and those after it, in order', async () => {
    const b = bridgeFailingLoads(2);
    b.push('req-a');
    b.push('req-b');
    await until(() => b.seen.length === 2);
    expect(b.seen).toEqual(['req-a', 'req-b']);
    expect(b.loads()).toBe(3);
    b.push('req-c');
    await until(() => b.seen.length === 3);
    expect(b.seen).toEqual(['req-a', 'req-b', 'req-c']);
    expect(b.loads()).toBe(3); // loaded once, kept
  });

  it('still drops an event that is not one of ours', async () => {
    const b = bridgeFailingLoads(0);
    b.push('req-a');
    // Same name, data that fails the event's schema: never delivered.
    b.push(42 as unknown as string);
    b.push('req-b');
    await until(() => b.seen.length === 2);
    expect(b.seen).toEqual(['req-a', 'req-b']);
  });
});
