/**
 * Test-only fault injection: a TCP relay on loopback between one hub and PostgreSQL, so a test
 * can cut that hub off from the database while every other hub keeps its own connections. A real
 * database and a real hub cannot produce a partition of one client on their own; this relay is the
 * network between them, nothing more (bytes pass through unchanged). `sever()` destroys every
 * relayed connection on both sides (each end sees its peer go away, as when a firewall or a dead
 * link resets them) and refuses new ones until `heal()`. `freeze()` is the silent kind: nothing
 * is forwarded either way and new connections are accepted but get no answer, until `thaw()`
 * delivers what waited (the relay holds it as the network's retransmissions would).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpRelay {
  port: number;
  /** Connections relayed right now. */
  readonly open: number;
  sever(): void;
  heal(): void;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpRelay(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpRelay> {
  const pairs = new Set<[Socket, Socket]>();
  let cut = false;
  let frozen = false;
  const flow = ([inbound, outbound]: [Socket, Socket]) => {
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  };
  const stall = ([inbound, outbound]: [Socket, Socket]) => {
    inbound.unpipe(outbound);
    outbound.unpipe(inbound);
    inbound.pause();
    outbound.pause();
  };
  const server: Server = createServer((inbound) => {
    if (cut) {
      inbound.destroy();
      return;
    }
    const outbound = connect(targetPort, targetHost);
    const pair: [Socket, Socket] = [inbound, outbound];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    for (const socket of pair) {
      socket.setNoDelay(true);
      socket.on('error', drop);
      socket.on('close', drop);
    }
    if (frozen) stall(pair);
    else flow(pair);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the relay has no port');
  return {
    port: address.port,
    get open() {
      return pairs.size;
    },
    sever() {
      cut = true;
      for (const [inbound, outbound] of [...pairs]) {
        inbound.resetAndDestroy();
        outbound.resetAndDestroy();
      }
      pairs.clear();
    },
    heal() {
      cut = false;
    },
    freeze() {
      frozen = true;
      for (const pair of pairs) stall(pair);
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) flow(pair);
    },
    close: () =>
      new Promise<void>((resolve) => {
        cut = true;
        for (const [inbound, outbound] of pairs) {
          inbound.destroy();
          outbound.destroy();
        }
        pairs.clear();
        server.close(() => resolve());
      }),
  };
}

/**
 * A load balancer that is not sticky, for the one-origin tests: one loopback port whose every new
 * connection goes to the next of `targetPorts` in turn (round robin per connection), bytes passed
 * through unchanged. `targets` lists, in order, the port each connection was sent to, so a test
 * can show its requests really reached different hubs.
 */
export interface AlternatingRelay {
  port: number;
  readonly targets: readonly number[];
  close(): Promise<void>;
}

export async function startAlternatingRelay(targetPorts: readonly number[], targetHost = '127.0.0.1'): Promise<AlternatingRelay> {
  const sockets = new Set<Socket>();
  const targets: number[] = [];
  const server: Server = createServer((inbound) => {
    const target = targetPorts[targets.length % targetPorts.length]!;
    targets.push(target);
    const outbound = connect(target, targetHost);
    const drop = () => {
      sockets.delete(inbound);
      sockets.delete(outbound);
      inbound.destroy();
      outbound.destroy();
    };
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('error', drop);
      socket.on('close', drop);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('the relay has no port');
  return {
    port: address.port,
    targets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        sockets.clear();
        server.close(() => resolve());
      }),
  };
}
