/**
 * The team's two desk secrets on a hub, kept current without a restart (docs/team-mode.md
 * "Rotating the desk link's secret and the sign-in key", ADR 0017 and 0019 amendments):
 *  - the desk link's bearer secret (`team_desk_secret`) and the key that tags desk sign-in
 *    challenges (`team_sign_in_key`), made by the first hub (pg-desk-sessions.ts) and read at start;
 *  - `rotateTeamDeskSecret` / `rotateTeamSignInKey` (the `countersign hub rotate-...` commands)
 *    replace a row in one transaction that NOTIFYs `countersign_team_secrets` and submits a
 *    `team_secret.rotated` audit record (which secret, by whom, how many sessions ended); the desk
 *    secret's also deletes every desk session, so every session signed in under the old link ends
 *    on every hub at its next call, whatever a hub has reloaded;
 *  - each hub re-reads both rows on that NOTIFY, after every (re)connect of its listener (a
 *    NOTIFY sent while it was away is lost, the rows are not) and every 30 s (a listener cut
 *    without an error hears nothing), and swaps what its HTTP edge and
 *    its sign-ins use. The secrets are never logged or printed here.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { submitTeamAudit } from './pg-audit-submissions.js';
import { storeError } from './pg-errors.js';
import { PgListener } from './pg-listener.js';
import { teamDeskSecret, teamSignInKey } from './pg-desk-sessions.js';

export const TEAM_SECRETS_CHANNEL = 'countersign_team_secrets';
/** How often a hub re-reads the secrets besides each NOTIFY: the longest a silently cut listener keeps an old one. */
export const SECRETS_REREAD_MS = 30_000;

/** Which secret changed, for the hub's listeners (never the secret itself in a log line). */
export type TeamSecretName = 'desk secret' | 'sign-in key';

export class TeamSecrets {
  private listener: PgListener | undefined;
  private rereadTimer: NodeJS.Timeout | undefined;
  private readonly changed = new Set<(name: TeamSecretName) => void>();

  private constructor(
    private readonly pool: pg.Pool,
    private desk: string,
    private signIn: Buffer,
  ) {}

  /** Read (or, first on the team, make) both secrets now; the database must answer. */
  static async open(pool: pg.Pool, hub: string, now: number): Promise<TeamSecrets> {
    return new TeamSecrets(pool, await teamDeskSecret(pool, hub, now), await teamSignInKey(pool, hub, now));
  }

  /** The desk link's bearer secret as this hub holds it now. */
  get deskSecret(): string {
    return this.desk;
  }

  /** The team's sign-in challenge key as this hub holds it now. */
  get signInKey(): Buffer {
    return this.signIn;
  }

  /** Told after a secret was replaced on this hub (the hub ends its event streams, rewrites its secret file). */
  onChange(listener: (name: TeamSecretName) => void): () => void {
    this.changed.add(listener);
    return () => void this.changed.delete(listener);
  }

  /**
   * Follow rotations from now on: LISTEN, and re-read after every (re)connect, on each NOTIFY and
   * every `rereadEveryMs`. The timer is for a listener cut without an error (a half-open TCP
   * path raises none): that hub would otherwise keep accepting a rotated-out link until it noticed.
   */
  async start(connection: pg.ClientConfig, onError: (message: string) => void, rereadEveryMs = SECRETS_REREAD_MS): Promise<void> {
    const listener = new PgListener({
      connection,
      channel: TEAM_SECRETS_CHANNEL,
      name: "the team's desk secrets",
      onNotify: () => void listener.catchUp(),
      onConnected: () => this.reload(),
      onError,
    });
    this.listener = listener;
    await listener.start();
    this.rereadTimer = setInterval(() => void listener.catchUp(), rereadEveryMs);
    this.rereadTimer.unref();
  }

  /** Re-read both rows now (resolves once this hub uses what they hold). */
  async reload(): Promise<void> {
    let rows: Array<{ secret: string | null; key: string | null }>;
    try {
      ({ rows } = await this.pool.query<{ secret: string | null; key: string | null }>(
        'SELECT (SELECT secret FROM team_desk_secret WHERE id = 1) AS secret, (SELECT key FROM team_sign_in_key WHERE id = 1) AS key',
      ));
    } catch (error) {
      throw storeError(error, "reading the team's desk secrets");
    }
    const { secret, key } = rows[0]!;
    // A row deleted by hand (the old way to rotate) is made again by the next hub to start; until then this hub keeps what it has.
    if (secret !== null && secret !== this.desk) {
      this.desk = secret;
      this.tell('desk secret');
    }
    if (key !== null) {
      const bytes = Buffer.from(key, 'base64url');
      if (!bytes.equals(this.signIn)) {
        this.signIn = bytes;
        this.tell('sign-in key');
      }
    }
  }

  async close(): Promise<void> {
    if (this.rereadTimer !== undefined) clearInterval(this.rereadTimer);
    await this.listener?.close();
  }

  private tell(name: TeamSecretName): void {
    for (const listener of [...this.changed]) listener(name);
  }
}

/** A new desk secret (32 random bytes, base64url), as the first hub makes it. */
export function newDeskSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Make `secret` (newDeskSecret) the team's desk secret and end every desk session, in one
 * transaction that tells every hub (NOTIFY at commit). Returns how many sessions ended.
 */
export async function rotateTeamDeskSecret(pool: pg.Pool, secret: string, by: string, now: number): Promise<{ sessionsEnded: number }> {
  const ended = await inOneTransaction(pool, 'replacing the desk secret', async (client) => {
    await client.query(
      `INSERT INTO team_desk_secret (id, secret, created_at, created_by_hub) VALUES (1, $1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at, created_by_hub = EXCLUDED.created_by_hub`,
      [secret, now, by],
    );
    const { rowCount } = await client.query('DELETE FROM desk_sessions');
    const sessionsEnded = rowCount ?? 0;
    await submitTeamAudit(client, by, 'team_secret.rotated', now, { secret: 'desk_secret', by, sessionsEnded });
    return sessionsEnded;
  });
  return { sessionsEnded: ended };
}

/** Replace the team's sign-in challenge key, telling every hub: a sign-in begun under the old key is refused (challenge_invalid). */
export async function rotateTeamSignInKey(pool: pg.Pool, by: string, now: number): Promise<void> {
  await inOneTransaction(pool, 'replacing the sign-in key', async (client) => {
    await client.query(
      `INSERT INTO team_sign_in_key (id, key, created_at, created_by_hub) VALUES (1, $1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, created_at = EXCLUDED.created_at, created_by_hub = EXCLUDED.created_by_hub`,
      [randomBytes(32).toString('base64url'), now, by],
    );
    await submitTeamAudit(client, by, 'team_secret.rotated', now, { secret: 'sign_in_key', by });
  });
}

async function inOneTransaction<T>(pool: pg.Pool, doing: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (error) {
    throw storeError(error, doing);
  }
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('SELECT pg_notify($1, $2)', [TEAM_SECRETS_CHANNEL, '']);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    broken = error as Error;
    await client.query('ROLLBACK').catch(() => undefined);
    throw storeError(error, doing);
  } finally {
    client.release(broken);
  }
}
