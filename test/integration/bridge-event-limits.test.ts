/**
 * The bridge's event stream under abusive clients, over real HTTP on a real core's UiService:
 * one address cannot take every stream slot, and a client that never reads has its stream
 * destroyed once the bytes waiting for it pass the bound (a small bound injected for the test).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { startHarness, type Harness } from '../helpers/harness.js';
import { createHttpEdge } from '../../main/core/http/http-edge.js';
import { bridgeRoutes } from '../../main/core/ui/bridge-routes.js';
import { BridgeEventHub } from '../../main/core/ui/bridge-events.js';
import { BRIDGE_EVENTS_PATH } from '../../shared/bridge-table.js';

const SECRET = 'S'.repeat(43);
let h: Harness;
let server: Server;
let port: number;
const hub = new BridgeEventHub();

beforeAll(async () => {
  h = await startHarness();
  const edge = createHttpEdge({
    routes: bridgeRoutes(h.app.ui, hub, { maxEventStreams: 32, maxEventStreamsPerAddress: 2, maxBufferedBytes: 16 * 1024 }),
    sessionSecret: SECRET,
    hostAllowed: () => true,
    origins: () => [],
  });
  server = createServer(edge);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await h.close();
});

/** Open a stream with a raw socket that never reads what the server sends. */
function openStream(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${BRIDGE_EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${SECRET}\r\n\r\n`);
      socket.pause();
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

function get(path: string): Promise<{ status: number; code: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${SECRET}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          code: (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: unknown } }).error?.code,
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('the bridge event stream', () => {
  it('refuses more streams from one address than its share with too_many_connections, and frees the slot when one closes', async () => {
    const a = await openStream();
    const b = await openStream();
    for (let i = 0; i < 200 && hub.subscribers < 2; i++) await tick();
    expect(hub.subscribers).toBe(2);
    expect(await get(BRIDGE_EVENTS_PATH)).toEqual({ status: 503, code: 'too_many_connections' });
    a.destroy();
    b.destroy();
    for (let i = 0; i < 200 && hub.subscribers > 0; i++) await tick();
    expect(hub.subscribers).toBe(0);
  });

  it('destroys the stream of a client that never reads once its buffered events pass the bound', async () => {
    const idle = await openStream();
    for (let i = 0; i < 200 && hub.subscribers < 1; i++) await tick();
    expect(hub.subscribers).toBe(1);
    // Large events until the kernel buffers fill and Node's buffer passes the bound (bounded loop, not timed).
    const big = 'r'.repeat(64 * 1024);
    for (let i = 0; i < 4000 && hub.subscribers > 0; i++) {
      hub.emit({ name: 'pending', data: { requestId: big, agentId: 'a' } });
      await tick();
    }
    expect(hub.subscribers).toBe(0);
    idle.destroy();
  });
});
