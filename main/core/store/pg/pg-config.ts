/**
 * Team-mode database settings (docs/team-mode.md "Database settings"): the connection URL and
 * what the `pg` pool gets from it. Every setting has a default a small team can keep; a bad value
 * is config_invalid, naming the setting. TLS to the database: `sslmode=require` (encrypt),
 * `sslmode=verify-full` (encrypt and check the server certificate and host name against
 * `sslrootcert`, a CA file); without it the connection is plain, for a database on loopback only.
 * `?host=/dir` connects over the server's Unix socket in that directory (same host, no TLS).
 */
import { readFileSync } from 'node:fs';
import type { PoolConfig } from 'pg';
import { CountersignError, quote } from '../../../../shared/errors.js';

export interface TeamDatabaseConfig {
  /** postgres://user:password@host:port/database[?sslmode=...&sslrootcert=...] */
  url: string;
  /** Connections per hub for decisions (the outcome listener and the audit leader hold one more each). */
  poolSize?: number | undefined;
  /** A statement that runs longer is cancelled and its decision fails closed (ms). */
  statementTimeoutMs?: number | undefined;
  /** How long to wait for a free pooled connection or a new one before failing closed (ms). */
  connectTimeoutMs?: number | undefined;
  /** How long one group transaction may stay open before the server ends it (ms). */
  idleInTransactionTimeoutMs?: number | undefined;
  /** Most decisions sharing one COMMIT. */
  maxBatch?: number | undefined;
  /** How often an approval or a directory write PostgreSQL ends as a deadlock victim (40P01) runs before store_failed. */
  deadlockAttempts?: number | undefined;
}

export interface ResolvedDatabaseConfig {
  pool: PoolConfig;
  poolSize: number;
  maxBatch: number;
  deadlockAttempts: number;
  /** The URL with any password replaced, for logs. */
  display: string;
}

/** How much longer than the server's statement timeout a hub waits for an answer before giving the connection up. */
const ANSWER_MARGIN_MS = 2_000;
/** The server probes an idle hub connection after 1 s, every 1 s, and drops it after 3 unanswered probes or 4 s of unacknowledged data. */
const SERVER_KEEPALIVE = '-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 -c tcp_user_timeout=4000';

function positiveInt(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new CountersignError('config_invalid', `the database setting ${name} must be a whole number from 1 to ${max}`);
  return value;
}

export function resolveDatabaseConfig(config: TeamDatabaseConfig): ResolvedDatabaseConfig {
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw new CountersignError('config_invalid', 'the database url is not a url (expected postgres://user@host:port/database)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
    throw new CountersignError('config_invalid', `the database url scheme ${JSON.stringify(url.protocol)} is not postgres:`);
  const poolSize = positiveInt('poolSize', config.poolSize, 8, 200);
  const statementTimeoutMs = positiveInt('statementTimeoutMs', config.statementTimeoutMs, 5_000, 600_000);
  const connectTimeoutMs = positiveInt('connectTimeoutMs', config.connectTimeoutMs, 5_000, 600_000);
  const idleInTransactionTimeoutMs = positiveInt('idleInTransactionTimeoutMs', config.idleInTransactionTimeoutMs, 10_000, 600_000);
  const maxBatch = positiveInt('maxBatch', config.maxBatch, 64, 10_000);
  const deadlockAttempts = positiveInt('deadlockAttempts', config.deadlockAttempts, 3, 10);

  // pg parses the URL again and applies what it finds over the pool's `ssl`: any other TLS
  // parameter (`ssl=0` beside `sslmode=verify-full`) would silently change the mode named here.
  for (const name of url.searchParams.keys())
    if (name !== 'sslmode' && name !== 'sslrootcert' && (name.startsWith('ssl') || name === 'uselibpqcompat'))
      throw new CountersignError(
        'config_invalid',
        `the database url parameter ${quote(name)} is not supported: TLS is set by sslmode and sslrootcert`,
      );
  const sslmode = url.searchParams.get('sslmode') ?? 'disable';
  // `?host=/var/run/postgresql` (libpq's syntax) connects over the server's Unix socket in that
  // directory, for a database on the hub's own machine: no TCP on either side (about a third of
  // a millisecond of CPU per decision less, docs/team-mode.md). PostgreSQL has no TLS there.
  // Judged as pg reads the URL: a `host=` parameter overrides the URL's host (the last one, when
  // repeated, so a repeated one is refused outright), and the URL's own host may be the directory
  // percent-encoded (postgres://user@%2Fvar%2Frun%2Fpostgresql/db).
  const hostParams = url.searchParams.getAll('host');
  if (hostParams.length > 1) throw new CountersignError('config_invalid', 'the database url names its host parameter more than once');
  // pg takes an empty `host=` as absent (the URL's host then), so it names nothing: refused too.
  if (hostParams[0] === '') throw new CountersignError('config_invalid', 'the database url host parameter is empty');
  let urlHost: string;
  try {
    urlHost = decodeURIComponent(url.hostname);
  } catch {
    throw new CountersignError('config_invalid', 'the database url host is not valid percent-encoding');
  }
  const host = hostParams[0] ?? urlHost; // a `host=` parameter overrides the URL's host in pg
  const socket = host.startsWith('/') ? host : undefined;
  if (socket !== undefined && sslmode !== 'disable')
    throw new CountersignError(
      'config_invalid',
      `the database url names a Unix socket directory (${socket}), where PostgreSQL has no TLS: drop sslmode=${sslmode}`,
    );
  const rootcert = url.searchParams.get('sslrootcert');
  let ssl: PoolConfig['ssl'];
  if (sslmode === 'disable') ssl = false;
  else if (sslmode === 'require') ssl = { rejectUnauthorized: false };
  else if (sslmode === 'verify-full') {
    if (!rootcert) throw new CountersignError('config_invalid', 'sslmode=verify-full needs sslrootcert=<a CA certificate file>');
    let ca: string;
    try {
      ca = readFileSync(rootcert, 'utf8');
    } catch {
      throw new CountersignError('file_not_found', `the database CA file ${JSON.stringify(rootcert)} cannot be read`);
    }
    ssl = { rejectUnauthorized: true, ca };
  } else
    throw new CountersignError('config_invalid', `the database sslmode ${JSON.stringify(sslmode)} is not disable, require or verify-full`);

  // The TLS parameters are ours to interpret; pg's own URL parser would override `ssl`.
  const plain = new URL(url.toString());
  plain.searchParams.delete('sslmode');
  plain.searchParams.delete('sslrootcert');
  const display = new URL(plain.toString());
  if (display.password) display.password = '***';
  // libpq and pg also take the password as a parameter: never shown either.
  if (display.searchParams.has('password')) display.searchParams.set('password', '***');
  return {
    pool: {
      connectionString: plain.toString(),
      ssl,
      max: poolSize,
      connectionTimeoutMillis: connectTimeoutMs,
      statement_timeout: statementTimeoutMs,
      idle_in_transaction_session_timeout: idleInTransactionTimeoutMs,
      // A statement runs at most statementTimeoutMs on the server; an answer that never comes
      // (the network silently dropping packets) fails the query here a little later, so a hub cut
      // off that way fails closed (store_unavailable) instead of hanging its calls.
      query_timeout: statementTimeoutMs + ANSWER_MARGIN_MS,
      // A hub cut off from the database notices within seconds, not the kernel's two hours.
      keepAlive: true,
      keepAliveInitialDelayMillis: 1_000,
      // And the server notices a hub gone silent just as soon: its session ends, with the audit
      // leader lock it may hold, so another hub takes over (session settings; TCP connections only:
      // on a Unix socket the server ignores them, and a local socket has no silent partition).
      options: SERVER_KEEPALIVE,
      application_name: 'countersign-hub',
    },
    poolSize,
    maxBatch,
    deadlockAttempts,
    display: display.toString(),
  };
}
