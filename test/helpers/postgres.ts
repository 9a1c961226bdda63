/**
 * A real, throwaway PostgreSQL 15 cluster for tests and the bench (STACK.md): initdb into a temp
 * dir, started on a free loopback port with its socket in that dir (`url` is TCP, `socketUrl` the
 * socket), trust auth for one user,
 * removed after. PostgreSQL refuses to run as root, so as root the binaries run as the Debian
 * `postgres` user (runuser); otherwise as the current user.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_BIN = process.env.COUNTERSIGN_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PostgresCluster {
  /** Over loopback TCP. */
  url: string;
  /** The same database over the server's Unix socket (libpq's `?host=<socket dir>`). */
  socketUrl: string;
  port: number;
  dir: string;
  /** pg_ctl stop -m fast (connections are ended, as in a restart). */
  stopServer(): void;
  startServer(): void;
  /** Stop and delete everything. */
  destroy(): void;
}

export function postgresAvailable(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl'));
}

/** A TCP port free on loopback a moment ago (for a server that must know another's port before it starts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function asOwner(command: string, args: string[]): string[] {
  return process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', command, ...args] : [command, ...args];
}

function run(command: string, args: string[]): void {
  const [bin, ...rest] = asOwner(command, args);
  const result = spawnSync(bin!, rest, { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.stdout || String(result.error)}`);
}

export async function startPostgres(): Promise<PostgresCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-pg-'));
  if (process.getuid?.() === 0) {
    const ids = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const gid = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    chownSync(dir, Number(ids), Number(gid));
  }
  const data = join(dir, 'data');
  const port = await freePort();
  run(join(PG_BIN, 'initdb'), ['-D', data, '-U', 'countersign', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const start = () =>
    run(join(PG_BIN, 'pg_ctl'), [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`,
      'start',
    ]);
  start();
  let stopped = false;
  return {
    url: `postgres://countersign@127.0.0.1:${port}/postgres`,
    socketUrl: `postgres://countersign@localhost:${port}/postgres?host=${encodeURIComponent(dir)}`,
    port,
    dir,
    stopServer: () => run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-w', '-t', '60', '-m', 'fast', 'stop']),
    startServer: start,
    destroy: () => {
      if (stopped) return;
      stopped = true;
      try {
        run(join(PG_BIN, 'pg_ctl'), ['-D', data, '-w', '-t', '60', '-m', 'immediate', 'stop']);
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A pool a test uses to look at or change the team database itself. Its idle connections die
 * when a test stops the server (57P01, admin shutdown); pg reports that as an 'error' event on the
 * pool, which unhandled would crash the test process, so it is taken here: the next query opens a
 * new connection, and a query that fails still rejects in the test.
 */
export function testPool(url: string, max = 2): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  pool.on('error', () => undefined);
  return pool;
}
