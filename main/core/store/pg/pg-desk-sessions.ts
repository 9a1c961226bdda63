/**
 * A desk on any hub (docs/team-mode.md "One origin, any hub", PG migration 14): the team's desk
 * sessions and the desk's one bearer secret, in the team database, so a desk behind a load
 * balancer that sends each request to another hub stays signed in.
 *
 * - A session row is keyed by the SHA-256 of its id (the id itself never leaves the desk's
 *   cookie); it is written in the sign-in's own team transaction, with the groups the team
 *   directory had for the person in that transaction (never a hub's replica, which may lag).
 * - `read` returns the row with what it was granted on as the team directory has it now (the
 *   person's status and row, the key's status), in one statement that also moves the idle
 *   deadline when asked and the session is still live; so a removal, a demotion or a sign-out on
 *   any hub holds on every hub at the next call, whatever the hubs' replicas have applied.
 * - `remove` deletes the row and returns it only to the one call that deleted it, so an ending
 *   seen on two hubs at once is audited once.
 * - A sign-in's stateless challenge (ADR 0019) is recorded as used (`spendSignInChallenge`) in
 *   that same transaction, before the key's counter is checked: one unique insert, so a replayed
 *   finish on any hub finds it and opens no second session. The key that tags those challenges is
 *   the team's (`teamSignInKey`), made once by the first hub.
 * - Losing the database fails closed (store_unavailable): no session is granted or resolved.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { storeError } from './pg-errors.js';
import { CountersignError } from '../../../../shared/errors.js';
import { parseStoredJson } from '../stored-json.js';

/** A team session as stored (the id only as its digest). */
export interface TeamSessionRow {
  approverId: string;
  credentialId: string;
  groups: readonly string[];
  ref: string;
  signedInAt: number;
  lastSeenAt: number;
  expiresAt: number;
}

/** A session and what it was granted on, as the team directory has them at the read. */
export interface TeamSessionState {
  session: TeamSessionRow;
  /** The person's status and row image (`directory_approvers`); null when the person is gone. */
  approverStatus: string | null;
  approverRow: string | null;
  /** The status of the key that signed in; null when the key is gone. */
  keyStatus: string | null;
}

/** Long-ended rows are deleted by one insert in this many (ended sessions are never resolved anyway). */
const SWEEP_EVERY = 64;
/**
 * A used sign-in challenge's record is deleted this long after its expiry. Until then the
 * challenge's own expiry refuses it; the margin covers hubs whose clocks disagree (a hub whose
 * clock is behind must still find the record while it would take the challenge as unexpired).
 */
const KEEP_USED_SIGN_INS_MS = 3600_000;

interface Row {
  approver_id: string;
  credential_id: string;
  groups: string;
  ref: string;
  signed_in_at: string;
  last_seen_at: string;
  expires_at: string;
}

function toSession(row: Row): TeamSessionRow {
  return {
    approverId: row.approver_id,
    credentialId: row.credential_id,
    groups: parseStoredJson(row.groups) as string[],
    ref: row.ref,
    signedInAt: Number(row.signed_in_at),
    lastSeenAt: Number(row.last_seen_at),
    expiresAt: Number(row.expires_at),
  };
}

export class PgDeskSessions {
  private inserted = 0;

  /**
   * `signInKey`: the team's sign-in challenge key in force (TeamSecrets.signInKey), which every
   * hub's desk sign-ins are tagged and checked with; a rotation replaces it while the hub runs.
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly hub: string,
    private readonly currentSignInKey: () => Buffer,
  ) {}

  /** The team's sign-in challenge key as this hub holds it now. */
  get signInKey(): Buffer {
    return this.currentSignInKey();
  }

  /** Whether a sign-in challenge (by its digest) was used on any hub: read before the key's answer is verified. */
  async signInChallengeUsed(digest: string): Promise<boolean> {
    try {
      const { rows } = await this.pool.query('SELECT 1 FROM sign_in_challenges_used WHERE challenge_hash = $1', [digest]);
      return rows.length > 0;
    } catch (error) {
      throw storeError(error, 'reading the used sign-in challenges');
    }
  }

  /**
   * Inside a sign-in's team transaction, before anything else is written: record the challenge
   * (by its digest) as used, once for the team. A second use, on any hub, is challenge_invalid
   * and its transaction writes nothing; if this transaction rolls back the record goes with it,
   * so a sign-in that failed leaves its challenge answerable until it expires.
   */
  async spendSignInChallenge(
    client: pg.ClientBase,
    used: { digest: string; approverId: string; expiresAt: number; at: number },
  ): Promise<void> {
    const { rowCount } = await client.query(
      `INSERT INTO sign_in_challenges_used (challenge_hash, approver_id, expires_at, used_at, used_by_hub)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (challenge_hash) DO NOTHING`,
      [used.digest, used.approverId, used.expiresAt, used.at, this.hub],
    );
    if (rowCount !== 1) throw new CountersignError('challenge_invalid', 'the sign-in challenge has already been used');
    // Bounded by genuine taps; records of challenges long expired go now (the index finds them).
    await client.query('DELETE FROM sign_in_challenges_used WHERE expires_at < $1', [used.at - KEEP_USED_SIGN_INS_MS]);
  }

  /** Store a new session inside the sign-in's transaction (`client`): it exists only if that commits. */
  async insert(client: pg.ClientBase, idHash: string, session: TeamSessionRow, idleMs: number): Promise<void> {
    if ((this.inserted++ & (SWEEP_EVERY - 1)) === 0)
      await client.query('DELETE FROM desk_sessions WHERE expires_at <= $1 OR last_seen_at + $2 <= $1', [session.signedInAt, idleMs]);
    await client.query(
      `INSERT INTO desk_sessions (id_hash, approver_id, credential_id, groups, ref, signed_in_at, last_seen_at, expires_at, signed_in_on_hub)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        idHash,
        session.approverId,
        session.credentialId,
        JSON.stringify(session.groups),
        session.ref,
        session.signedInAt,
        session.lastSeenAt,
        session.expiresAt,
        this.hub,
      ],
    );
  }

  /**
   * The session `idHash` names with the team directory's view of its person and key (undefined:
   * none). With `touch`, a session still live at `now` (before its end and its idle deadline) gets
   * `now` as its last activity, in the same statement; the row returned is as it was before.
   */
  async read(idHash: string, now: number, idleMs: number, touch: boolean): Promise<TeamSessionState | undefined> {
    try {
      const { rows } = await this.pool.query<
        Row & { approver_status: string | null; approver_row: string | null; key_status: string | null }
      >(
        `WITH found AS (SELECT * FROM desk_sessions WHERE id_hash = $1),
         touched AS (
           UPDATE desk_sessions d SET last_seen_at = greatest(d.last_seen_at, $2)
           FROM found WHERE $4 AND d.id_hash = found.id_hash AND found.expires_at > $2 AND found.last_seen_at + $3 > $2
           RETURNING 1) -- runs whether or not the query reads it
         SELECT found.approver_id, found.credential_id, found.groups, found.ref, found.signed_in_at, found.last_seen_at, found.expires_at,
                a.status AS approver_status, a.row AS approver_row, c.status AS key_status
         FROM found
         LEFT JOIN directory_approvers a ON a.id = found.approver_id
         LEFT JOIN directory_credentials c ON c.credential_id = found.credential_id AND c.approver_id = found.approver_id`,
        [idHash, now, idleMs, touch],
      );
      const row = rows[0];
      if (row === undefined) return undefined;
      return { session: toSession(row), approverStatus: row.approver_status, approverRow: row.approver_row, keyStatus: row.key_status };
    } catch (error) {
      throw storeError(error, 'reading a desk session');
    }
  }

  /** Delete the session: its row to the one call that deleted it (undefined: already gone). */
  async remove(idHash: string): Promise<TeamSessionRow | undefined> {
    try {
      const { rows } = await this.pool.query<Row>(
        'DELETE FROM desk_sessions WHERE id_hash = $1 RETURNING approver_id, credential_id, groups, ref, signed_in_at, last_seen_at, expires_at',
        [idHash],
      );
      return rows[0] === undefined ? undefined : toSession(rows[0]);
    } catch (error) {
      throw storeError(error, 'ending a desk session');
    }
  }

  /** How many sessions the team holds (tests, status). */
  async count(): Promise<number> {
    try {
      const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM desk_sessions');
      return Number(rows[0]!.n);
    } catch (error) {
      throw storeError(error, 'counting desk sessions');
    }
  }
}

/**
 * The desk's bearer secret for the whole team: made by the first hub to ask (32 random bytes) and
 * read by every other, so the desk link of one hub opens on every hub behind the same origin.
 * Never logged; the hub prints it only in the desk link, as embedded mode prints its own.
 */
export async function teamDeskSecret(pool: pg.Pool, hub: string, now: number): Promise<string> {
  try {
    await pool.query(
      'INSERT INTO team_desk_secret (id, secret, created_at, created_by_hub) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING',
      [randomBytes(32).toString('base64url'), now, hub],
    );
    const { rows } = await pool.query<{ secret: string }>('SELECT secret FROM team_desk_secret WHERE id = 1');
    return rows[0]!.secret;
  } catch (error) {
    throw storeError(error, "reading the team's desk secret");
  }
}

/**
 * The key that tags the team's desk sign-in challenges (ADR 0019): made by the first hub to ask
 * (32 random bytes) and read by every other, so a sign-in begun on one hub finishes on any. Never
 * logged or printed; whoever reads the database can make challenges, but a sign-in still needs
 * the person's key.
 */
export async function teamSignInKey(pool: pg.Pool, hub: string, now: number): Promise<Buffer> {
  try {
    await pool.query(
      'INSERT INTO team_sign_in_key (id, key, created_at, created_by_hub) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING',
      [randomBytes(32).toString('base64url'), now, hub],
    );
    const { rows } = await pool.query<{ key: string }>('SELECT key FROM team_sign_in_key WHERE id = 1');
    return Buffer.from(rows[0]!.key, 'base64url');
  } catch (error) {
    throw storeError(error, "reading the team's sign-in key");
  }
}
