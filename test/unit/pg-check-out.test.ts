/**
 * A pooled PostgreSQL client is handed out with its error listener already in place. The fault —
 * a session that starts and is ended by the server (FATAL 57P01, a fast shutdown) in the same
 * read — comes from a scripted server on loopback speaking the PostgreSQL wire protocol, because
 * a real server cannot be made to put both messages in one TCP read on demand (the hub fault test
 * met it once, while PostgreSQL stopped). Without the listener the error has none and crashes the
 * process.
 */
import { createServer, type Server } from 'node:net';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { checkOut } from '../../main/core/store/pg/pg-errors.js';

function message(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}

const fields = (pairs: Array<[string, string]>) => Buffer.concat([...pairs.map(([k, v]) => Buffer.from(`${k}${v}\0`)), Buffer.from([0])]);
/** AuthenticationOk, ReadyForQuery, then FATAL 57P01: written at once, so the client reads them together. */
const STARTED_THEN_ENDED = Buffer.concat([
  message('R', Buffer.from([0, 0, 0, 0])),
  message('Z', Buffer.from('I')),
  message(
    'E',
    fields([
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '57P01'],
      ['M', 'terminating connection due to administrator command'],
    ]),
  ),
]);

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

it('hands out a client whose session the server ends in the same read as its start, with the loss noted and nothing uncaught', async () => {
  server = createServer((socket) => {
    socket.once('data', () => socket.write(STARTED_THEN_ENDED)); // the startup message
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'countersign', database: 'countersign', max: 1 });
  pool.on('error', () => undefined);
  const lost: Error[] = [];
  const client = await checkOut(pool, (error) => lost.push(error));
  const until = Date.now() + 5_000;
  while (lost.length === 0 && Date.now() < until) await new Promise((r) => setImmediate(r));
  expect(lost[0]).toMatchObject({ code: '57P01' });
  client.release(lost[0]);
  await pool.end();
});
