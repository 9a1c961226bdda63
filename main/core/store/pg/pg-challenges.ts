/**
 * WebAuthn ceremony challenges of a team in the team database (PG migration 10,
 * `ceremony_challenges`), so a ceremony begun on one hub is finished on any other behind one
 * origin (docs/team-mode.md "One origin, any hub"): approvals, admin actions and confirmations,
 * key registration. (A desk sign-in stores nothing at begin: its challenge is stateless, ADR 0019,
 * ui/sign-in-challenge.ts.) The rows hold what the hub's own tables hold in embedded mode
 * (the person, the request and verdict, the signed record, the keys offered, the expiry); the
 * ceremony engine (approvals/ceremony.ts) checks them exactly as it checks its local rows.
 *
 * Single use across hubs: `claim` marks a row used with one `UPDATE .. WHERE used_at IS NULL AND
 * expires_at > now AND user_id = ..` and returns it only to the one statement that changed it, so
 * the same answer sent to two hubs at once is accepted by one; a row bound to another person is
 * neither returned nor spent. A claim is made once the key's signature verified, just before the
 * ceremony's own commit: if that commit then fails the challenge stays spent (the person starts
 * again), never reusable. Losing the database fails closed (store_unavailable).
 */
import type pg from 'pg';
import { storeError } from './pg-errors.js';

/** The ceremonies whose challenges a team keeps: the engine's two and registration. */
export type TeamChallengePurpose = 'approval' | 'admin' | 'registration';

/** A challenge as it is stored, embedded or in a team (the ceremony engine's StoredChallenge). */
export interface TeamChallengeRow {
  challenge: string;
  /** The person the challenge was issued to (approver, admin, registering or signing-in person). */
  userId: string;
  /** approval only: the request and verdict the record names. */
  requestId: string | null;
  verdict: string | null;
  /** The signed record as JCS text (registration: the code's hash record; sign-in: null). */
  record: string | null;
  expiresAt: number;
  usedAt: number | null;
  /** The offered credential ids as stored (JSON array; NULL for a pre-upgrade ceremony): read with parseOffered. */
  offered: string | null;
}

/** A challenge to store (record already JCS text). */
export interface TeamChallengeIssue {
  challenge: string;
  userId: string;
  requestId?: string | undefined;
  verdict?: string | undefined;
  record: string | null;
  expiresAt: number;
  offered: readonly string[];
}

/** Where a hub keeps its ceremony challenges when it belongs to a team. */
export interface TeamChallenges {
  issue(purpose: TeamChallengePurpose, issued: TeamChallengeIssue): Promise<void>;
  /** The row, used or not, or undefined (the caller words the refusal). */
  read(purpose: TeamChallengePurpose, challenge: string): Promise<TeamChallengeRow | undefined>;
  /**
   * Spend it now, once for the whole team: the row as it was issued when this call took it
   * (unused, unexpired at `now`, issued to `userId`), otherwise undefined and nothing changed.
   */
  claim(purpose: TeamChallengePurpose, challenge: string, userId: string, now: number): Promise<TeamChallengeRow | undefined>;
}

/** Rows are removed this long after they expired (kept a while for a support look). */
const KEEP_EXPIRED_MS = 3600_000;
/** One issue in this many also removes long-expired rows. */
const SWEEP_EVERY = 64;

interface Row {
  challenge: string;
  user_id: string;
  request_id: string | null;
  verdict: string | null;
  record: string | null;
  expires_at: string;
  used_at: string | null;
  offered: string | null;
}

const COLUMNS = 'challenge, user_id, request_id, verdict, record, expires_at, used_at, offered';

function toRow(row: Row): TeamChallengeRow {
  return {
    challenge: row.challenge,
    userId: row.user_id,
    requestId: row.request_id,
    verdict: row.verdict,
    record: row.record,
    expiresAt: Number(row.expires_at),
    usedAt: row.used_at === null ? null : Number(row.used_at),
    offered: row.offered,
  };
}

export class PgChallenges implements TeamChallenges {
  private issued = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly hub: string,
    private readonly now: () => number = Date.now,
  ) {}

  async issue(purpose: TeamChallengePurpose, issued: TeamChallengeIssue): Promise<void> {
    const now = this.now();
    const params = [
      issued.challenge,
      purpose,
      issued.userId,
      issued.requestId ?? null,
      issued.verdict ?? null,
      issued.record,
      JSON.stringify(issued.offered),
      issued.expiresAt,
      this.hub,
      now,
    ];
    try {
      if ((this.issued++ & (SWEEP_EVERY - 1)) === 0)
        await this.pool.query('DELETE FROM ceremony_challenges WHERE expires_at < $1', [now - KEEP_EXPIRED_MS]);
      await this.pool.query(
        `INSERT INTO ceremony_challenges (challenge, purpose, user_id, request_id, verdict, record, offered, expires_at, issued_by_hub, issued_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        params,
      );
    } catch (error) {
      throw storeError(error, 'storing a ceremony challenge');
    }
  }

  async read(purpose: TeamChallengePurpose, challenge: string): Promise<TeamChallengeRow | undefined> {
    try {
      const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM ceremony_challenges WHERE purpose = $1 AND challenge = $2`, [
        purpose,
        challenge,
      ]);
      return rows[0] === undefined ? undefined : toRow(rows[0]);
    } catch (error) {
      throw storeError(error, 'reading a ceremony challenge');
    }
  }

  async claim(purpose: TeamChallengePurpose, challenge: string, userId: string, now: number): Promise<TeamChallengeRow | undefined> {
    try {
      const { rows } = await this.pool.query<Row>(
        `UPDATE ceremony_challenges SET used_at = $4, used_by_hub = $5
         WHERE purpose = $1 AND challenge = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $4
         RETURNING ${COLUMNS}`,
        [purpose, challenge, userId, now, this.hub],
      );
      // The row as issued: this claim is the use.
      return rows[0] === undefined ? undefined : { ...toRow(rows[0]), usedAt: null };
    } catch (error) {
      throw storeError(error, 'spending a ceremony challenge');
    }
  }
}
