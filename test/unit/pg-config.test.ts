/**
 * The team database settings (main/core/store/pg/pg-config.ts) as the `pg` client will apply
 * them: the TLS mode the URL names is the one the connection gets (pg's own URL parser, which
 * runs after ours, must find nothing in the URL that overrides it), and the URL shown in logs
 * and on /healthz never carries the password, wherever the URL puts it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { resolveDatabaseConfig } from '../../main/core/store/pg/pg-config.js';
import { isCountersignError } from '../../shared/errors.js';
import { tempDir } from '../helpers/harness.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function caFile(): string {
  const dir = tempDir('countersign-pg-config-');
  dirs.push(dir);
  const file = join(dir, 'ca.pem');
  writeFileSync(file, '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n');
  return file;
}

const failure = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    return isCountersignError(error) ? `${error.code}: ${error.message}` : String(error);
  }
  return undefined;
};

/** What a pg client (made, never connected) ends up with: our pool settings merged with its own parse of the URL. */
function clientSettings(pool: pg.PoolConfig): { ssl: unknown; password: unknown } {
  return (new pg.Client(pool) as unknown as { connectionParameters: { ssl: unknown; password: unknown } }).connectionParameters;
}

function effectiveSsl(url: string): unknown {
  return clientSettings(resolveDatabaseConfig({ url }).pool).ssl;
}

describe('team database url', () => {
  it('connects with verify-full exactly as configured', () => {
    const ssl = effectiveSsl(`postgres://hub@db.example:5432/countersign?sslmode=verify-full&sslrootcert=${caFile()}`);
    expect(ssl).toMatchObject({ rejectUnauthorized: true });
  });

  it.each([
    'ssl=0',
    'ssl=false',
    'sslcert=/nonexistent/cert.pem',
    'sslkey=/nonexistent/key.pem',
    'sslnegotiation=direct',
    'uselibpqcompat=true',
  ])('refuses %s beside sslmode: pg would apply it over the TLS mode the url names', (extra) => {
    const url = `postgres://hub@db.example:5432/countersign?sslmode=verify-full&sslrootcert=${caFile()}&${extra}`;
    const name = extra.split('=')[0]!;
    expect(failure(() => resolveDatabaseConfig({ url }))).toBe(
      `config_invalid: the database url parameter "${name}" is not supported: TLS is set by sslmode and sslrootcert`,
    );
  });

  it("connects over the server's Unix socket when host= names a directory, and refuses TLS there", () => {
    const pool = resolveDatabaseConfig({ url: 'postgres://hub@localhost:5432/countersign?host=%2Fvar%2Frun%2Fpostgresql' }).pool;
    expect(new pg.Client(pool)).toMatchObject({ host: '/var/run/postgresql', port: 5432, database: 'countersign' });
    expect(
      failure(() => resolveDatabaseConfig({ url: 'postgres://hub@localhost/countersign?host=/var/run/postgresql&sslmode=require' })),
    ).toBe(
      'config_invalid: the database url names a Unix socket directory (/var/run/postgresql), where PostgreSQL has no TLS: drop sslmode=require',
    );
    // The directory as the URL's own host, percent-encoded (pg connects to the socket there): refused alike.
    expect(failure(() => resolveDatabaseConfig({ url: 'postgres://hub@%2Fvar%2Frun%2Fpostgresql/countersign?sslmode=require' }))).toBe(
      'config_invalid: the database url names a Unix socket directory (/var/run/postgresql), where PostgreSQL has no TLS: drop sslmode=require',
    );
    // host= twice (pg takes the last): refused, whichever it names.
    expect(
      failure(() => resolveDatabaseConfig({ url: 'postgres://hub@localhost/countersign?host=db.example&host=/var/run/postgresql' })),
    ).toBe('config_invalid: the database url names its host parameter more than once');
    // An empty host= (pg then uses the URL's host, here the socket directory): refused.
    expect(
      failure(() => resolveDatabaseConfig({ url: 'postgres://hub@%2Fvar%2Frun%2Fpostgresql/countersign?host=&sslmode=require' })),
    ).toBe('config_invalid: the database url host parameter is empty');
    // A host name in host= is TCP, as in libpq: TLS stays available.
    expect(effectiveSsl('postgres://hub@localhost/countersign?host=db.example&sslmode=require')).toMatchObject({
      rejectUnauthorized: false,
    });
  });

  it('never shows the password, in the user part or as a parameter', () => {
    const inUser = resolveDatabaseConfig({ url: 'postgres://hub:s3cret-one@db.example:5432/countersign' });
    expect(inUser.display).not.toContain('s3cret-one');
    expect(inUser.display).toContain('db.example:5432/countersign');
    const inQuery = resolveDatabaseConfig({ url: 'postgres://hub@db.example:5432/countersign?password=s3cret-two&application_name=hub-a' });
    expect(inQuery.display).not.toContain('s3cret-two');
    expect(inQuery.display).toContain('application_name=hub-a');
    // The client still gets the password it needs.
    expect(clientSettings(inQuery.pool).password).toBe('s3cret-two');
  });
});
