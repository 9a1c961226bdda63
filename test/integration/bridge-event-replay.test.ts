/**
 * The bridge's event stream across reconnects, over real HTTP: every event carries a position
 * (`id:`), a client that comes back with `Last-Event-ID` gets what it missed from the hub's
 * bounded ring, and one whose gap the ring cannot cover (too long, another server instance, a
 * malformed or future position) gets one `resync` event. The drop is a TCP relay between the real
 * HTTP client (shared/bridge-http-client.ts) and the core's edge that resets the connection.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startHarness, type Harness } from '../helpers/harness.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { createHttpEdge } from '../../main/core/http/http-edge.js';
import { bridgeRoutes } from '../../main/core/ui/bridge-routes.js';
import { BridgeEventHub } from '../../main/core/ui/bridge-events.js';
import { createHttpBridge } from '../../shared/bridge-http-client.js';
import { BRIDGE_EVENTS_PATH, type BridgeEvent } from '../../shared/bridge-table.js';

const SECRET = 'S'.repeat(43);
const RING = 4;
let h: Harness;
let server: Server;
let port: number;
let relay: TcpRelay;
const hub = new BridgeEventHub(RING);

beforeAll(async () => {
  h = await startHarness();
  const edge = createHttpEdge({ routes: bridgeRoutes(h.app.ui, hub), sessionSecret: SECRET, hostAllowed: () => true, origins: () => [] });
  server = createServer(edge);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  relay = await startTcpRelay(port);
});
afterAll(async () => {
  await relay.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await h.close();
});

const pending = (n: number): BridgeEvent => ({ name: 'pending', data: { requestId: `r-${n}`, agentId: 'finance-bot' } });

/** Open a stream (optionally with Last-Event-ID) and read until `frames` frames arrived; the raw frames. */
function readFrames(frames: number, lastEventId?: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${SECRET}` };
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
    const req = request({ host: '127.0.0.1', port, path: BRIDGE_EVENTS_PATH, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        const done = text.split('\n\n').slice(0, -1);
        if (done.length >= frames) {
          req.destroy();
          resolve(done.slice(0, frames));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const idOf = (frame: string) => /^id: (.+)$/m.exec(frame)?.[1];
const nameOf = (frame: string) => /^event: (.+)$/m.exec(frame)?.[1];

describe('the event stream across reconnects', () => {
  it('replays, to a client whose connection was reset, the events sent while it was down, in order and once', async () => {
    const client = createHttpBridge({ baseUrl: `http://127.0.0.1:${relay.port}`, sessionSecret: SECRET });
    const seen: BridgeEvent[] = [];
    const stop = client.subscribe((event) => seen.push(event));
    try {
      await vi.waitFor(() => expect(hub.subscribers).toBe(1), { interval: 20 });
      hub.emit(pending(1));
      await vi.waitFor(() => expect(seen).toHaveLength(1), { interval: 20 });
      relay.sever();
      await vi.waitFor(() => expect(hub.subscribers).toBe(0), { interval: 20 });
      hub.emit(pending(2));
      hub.emit({ name: 'decided', data: { requestId: 'r-1', state: 'denied' } });
      relay.heal();
      await vi.waitFor(() => expect(seen).toHaveLength(3), { timeout: 15_000, interval: 50 });
      hub.emit(pending(3));
      await vi.waitFor(() => expect(seen).toHaveLength(4), { interval: 20 });
      expect(seen).toEqual([pending(1), pending(2), { name: 'decided', data: { requestId: 'r-1', state: 'denied' } }, pending(3)]);

      // A gap longer than the ring: the client cannot be told what it missed, so it is told to re-read.
      relay.sever();
      await vi.waitFor(() => expect(hub.subscribers).toBe(0), { interval: 20 });
      for (let n = 10; n < 10 + RING + 1; n++) hub.emit(pending(n));
      relay.heal();
      await vi.waitFor(() => expect(seen).toHaveLength(5), { timeout: 15_000, interval: 50 });
      expect(seen[4]).toEqual({ name: 'resync', data: {} });
      hub.emit(pending(20));
      await vi.waitFor(() => expect(seen).toHaveLength(6), { interval: 20 });
      expect(seen[5]).toEqual(pending(20));
    } finally {
      stop();
    }
  }, 60_000);

  it('gives a first connection its current position, and replays nothing to a client that missed nothing', async () => {
    hub.emit(pending(30));
    const [opening] = await readFrames(1);
    expect(idOf(opening!)).toBe(hub.position());
    expect(nameOf(opening!)).toBeUndefined();
    const reading = readFrames(2, hub.position());
    await vi.waitFor(() => expect(hub.subscribers).toBe(1), { interval: 20 });
    hub.emit(pending(31));
    const [, next] = await reading;
    // The frame after the opening is the new event, not a replay of r-30.
    expect(/"requestId":"([^"]+)"/.exec(next!)?.[1]).toBe('r-31');
  });

  it('replays exactly the events after the position given, each with its own position', async () => {
    const from = hub.position();
    hub.emit(pending(40));
    hub.emit(pending(41));
    const frames = await readFrames(3, from);
    expect(frames.slice(1).map(nameOf)).toEqual(['pending', 'pending']);
    expect(frames.slice(1).map((f) => /"requestId":"([^"]+)"/.exec(f)?.[1])).toEqual(['r-40', 'r-41']);
    expect(frames.slice(1).map(idOf)).toEqual([hub.position(hub.latest - 1), hub.position()]);
  });

  it.each([
    ['from another server instance (a restart)', `${'0'.repeat(16)}-1`],
    ['ahead of the server', () => hub.position(hub.latest + 5)],
    ['older than the ring', () => hub.position(hub.latest - RING - 1)],
    ['malformed', 'not a position'],
    ['longer than any position', `${'a'.repeat(16)}-${'1'.repeat(100)}`],
  ])('sends one resync (with the current position) to a client whose Last-Event-ID is %s', async (_label, given) => {
    const lastEventId = typeof given === 'function' ? given() : given;
    const frames = await readFrames(2, lastEventId);
    expect(nameOf(frames[1]!)).toBe('resync');
    expect(idOf(frames[1]!)).toBe(hub.position());
    expect(/^data: (.*)$/m.exec(frames[1]!)?.[1]).toBe('{}');
  });
});
