/**
 * Approvers in the team directory (ADR 0013): add, disable and regroup approvers, give them
 * aliases, issue registration codes, register and remove their security keys, and take a key out
 * of service, for every hub of a database at once. The same pattern as identity/team-agents.ts:
 * each write checks what the embedded directory checks (approver-directory.ts: id, name, groups,
 * handles; the last admin; the first run), then runs in one PostgreSQL transaction under the
 * directory lock (store/pg/pg-directory.ts) with its `directory_changes` entry, its team audit
 * records and the NOTIFY; this hub's replica applies it before the call returns when it can, the
 * others on the notification. A write answers with what it committed (row images, the code it
 * issued), never with a re-read of the replica: once COMMIT succeeded the write succeeded, so a
 * replica whose catch-up failed (retried on its own) cannot lose a first run's single-use code.
 *
 * Uniqueness and the rules across people are checked on the authoritative rows, under the
 * directory lock (every directory write holds it, so what is read there stays true until COMMIT):
 * handles (`directory_handles`), the last admin, "no admin yet" for the first run, a code's single
 * use. An admin's tap that authorises the write (`tap`) is checked and its counter advanced in the
 * same transaction (PgDirectory.checkTap).
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import {
  REGISTRATION_CODE_TTL_MS,
  hashCode,
  lastActiveAdmin,
  type ApproverDirectory,
  approverFromRowImage,
  credentialFromRowImage,
  type ApproverRecord,
  type CredentialRecord,
  type CredentialRow,
  type NewApprover,
  type TeamApproverWrites,
} from './approver-directory.js';
import {
  lockDirectoryRow,
  storedRow,
  type HeldSuspicion,
  type PgDirectory,
  type ReplicaOp,
  type ReplicaRow,
  type TeamTap,
} from '../store/pg/pg-directory.js';
import type { AuditSubmission } from '../store/store-seam.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import { ADMIN_GROUP_NAME } from '../../../shared/bridge.js';
import { base64url } from '../../../shared/encoding.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { normalizeHandle } from '../identity/people.js';
import { storeError } from '../store/pg/pg-errors.js';

/** What authorises a write besides the caller: the desk admin's tap and its `admin.action` record. */
export interface TeamWriteContext {
  also?: AuditSubmission[];
  tap?: TeamTap;
}

export interface IssuedCode {
  code: string;
  expiresAt: number;
}

export class TeamApprovers implements TeamApproverWrites {
  constructor(
    private readonly directory: ApproverDirectory,
    private readonly team: PgDirectory,
    private readonly onError: (message: string) => void = () => undefined,
  ) {
    // Suspicions held while the database was down (here or before a restart) reach every hub once it answers.
    team.whenCaughtUp(() => this.replayHeldSuspicions());
  }

  /**
   * Add an approver (and their aliases); with `issuedBy`, also the single-use code they register
   * their first key with, in the same transaction. `firstRun`: refused with first_run_closed
   * once any admin exists in the team directory (two desks on two hubs racing: one wins).
   */
  async add(
    input: NewApprover,
    options: { issuedBy?: string; firstRun?: boolean } & TeamWriteContext = {},
  ): Promise<{ approver: ApproverRecord; registration?: IssuedCode }> {
    const clean = this.directory.checkNewApprover(input);
    const now = this.directory.clock();
    const code = options.issuedBy === undefined ? undefined : newCode(now);
    const committed = await this.team.change(
      'approver.added',
      now,
      async (client) => {
        // As embedded first run counts it: any admin ever added closes it, a disabled one too
        // (else disabling the only admin would let any desk on any hub create a new admin).
        if (options.firstRun === true && (await adminIds(client, 'any status')).length > 0)
          throw new CountersignError('first_run_closed', 'an admin already exists; ask them for a registration code');
        const exists = await client.query('SELECT 1 FROM directory_approvers WHERE id = $1', [clean.id]);
        if (exists.rowCount !== 0) throw new CountersignError('config_invalid', `an approver named ${quote(clean.id)} already exists`);
        // One person, one id: another spelling of an existing id or alias is that person, not a new one.
        await assertHandleFree(client, normalizeHandle(clean.id), 'id');
        for (const alias of clean.aliases) await assertHandleFree(client, alias, 'alias');
        const row: ReplicaRow = {
          id: clean.id,
          display_name: clean.displayName,
          groups_json: JSON.stringify(clean.groups),
          virtual: clean.virtual ? 1 : 0,
          status: 'active',
          created_at: now,
          disabled_at: null,
        };
        await client.query("INSERT INTO directory_approvers (id, status, row) VALUES ($1, 'active', $2)", [clean.id, JSON.stringify(row)]);
        await client.query('INSERT INTO directory_handles (handle, approver_id, is_alias) VALUES ($1, $2, false)', [
          normalizeHandle(clean.id),
          clean.id,
        ]);
        const ops: ReplicaOp[] = [{ table: 'approvers', row }];
        for (const alias of clean.aliases) ops.push({ table: 'approver_aliases', row: await insertAlias(client, clean.id, alias, now) });
        const audit: AuditSubmission[] = [
          {
            kind: 'approver.added',
            at: now,
            event: {
              approverId: clean.id,
              groups: clean.groups,
              virtual: clean.virtual,
              ...(clean.aliases.length > 0 ? { aliases: clean.aliases } : {}),
            },
          },
        ];
        if (code !== undefined) {
          ops.push({ table: 'registration_codes', row: await insertCode(client, clean.id, options.issuedBy!, code) });
          audit.push(codeIssued(clean.id, options.issuedBy!, code.expiresAt, now));
        }
        return { ops, audit: [...audit, ...(options.also ?? [])], result: row };
      },
      options.tap,
    );
    const approver = approverFromRowImage(committed);
    return code === undefined ? { approver } : { approver, registration: { code: code.code, expiresAt: code.expiresAt } };
  }

  /** A single-use code that lets an active approver register one security key (only its hash is stored). */
  async issueRegistrationCode(approverId: string, issuedBy: string, context: TeamWriteContext = {}): Promise<IssuedCode> {
    const now = this.directory.clock();
    const code = newCode(now);
    await this.team.change(
      'approver.registration_code_issued',
      now,
      async (client) => {
        const approver = await lockApprover(client, approverId);
        if (approver.status !== 'active') throw new CountersignError('approver_disabled', `approver ${quote(approverId)} is disabled`);
        const row = await insertCode(client, approverId, issuedBy, code);
        return {
          ops: [{ table: 'registration_codes', row }],
          audit: [codeIssued(approverId, issuedBy, code.expiresAt, now), ...(context.also ?? [])],
          result: undefined,
        };
      },
      context.tap,
    );
    return { code: code.code, expiresAt: code.expiresAt };
  }

  /**
   * Remove an approver from every hub: their next ceremony anywhere is refused (approver_disabled).
   * The last active admin cannot be disabled (last_admin).
   */
  async disable(approverId: string, context: TeamWriteContext = {}): Promise<void> {
    const now = this.directory.clock();
    await this.team.change(
      'approver.disabled',
      now,
      async (client) => {
        const approver = await lockApprover(client, approverId);
        // The last active admin stays (as setGroups), read on the team's rows under the directory lock.
        if (approver.status === 'active') {
          const admins = await adminIds(client);
          if (admins.length === 1 && admins[0] === approverId) throw lastActiveAdmin(approverId);
        }
        const row = { ...approver.row, status: 'disabled', disabled_at: now };
        await client.query("UPDATE directory_approvers SET status = 'disabled', row = $2 WHERE id = $1", [approverId, JSON.stringify(row)]);
        return {
          ops: [{ table: 'approvers', row }],
          audit: [{ kind: 'approver.disabled', at: now, event: { approverId } }, ...(context.also ?? [])],
          result: undefined,
        };
      },
      context.tap,
    );
  }

  /** Change an approver's groups; the last admin cannot leave the admin group (last_admin). */
  async setGroups(approverId: string, groups: string[], context: TeamWriteContext = {}): Promise<void> {
    const clean = this.directory.checkGroups(groups);
    const now = this.directory.clock();
    await this.team.change(
      'approver.groups_changed',
      now,
      async (client) => {
        const approver = await lockApprover(client, approverId);
        const before = parseStrictJson(String(approver.row.groups_json)) as string[];
        // As in embedded mode: with no admin the first-run setup would open again.
        if (before.includes(ADMIN_GROUP_NAME) && !clean.includes(ADMIN_GROUP_NAME)) {
          const others = (await adminIds(client)).filter((id) => id !== approverId);
          if (others.length === 0)
            throw new CountersignError(
              'last_admin',
              `${quote(approverId)} is the last admin; add another admin before removing them from the admin group`,
            );
        }
        const row = { ...approver.row, groups_json: JSON.stringify(clean) };
        await client.query('UPDATE directory_approvers SET row = $2 WHERE id = $1', [approverId, JSON.stringify(row)]);
        return {
          ops: [{ table: 'approvers', row }],
          audit: [{ kind: 'approver.groups_changed', at: now, event: { approverId, groups: clean } }, ...(context.also ?? [])],
          result: undefined,
        };
      },
      context.tap,
    );
  }

  async addAlias(approverId: string, alias: string): Promise<void> {
    const key = this.directory.checkHandle(alias, 'alias');
    const now = this.directory.clock();
    await this.team.change('approver.alias_added', now, async (client) => {
      await lockApprover(client, approverId);
      await assertHandleFree(client, key, 'alias');
      const row = await insertAlias(client, approverId, key, now);
      return {
        ops: [{ table: 'approver_aliases', row }],
        audit: [{ kind: 'approver.alias_added', at: now, event: { approverId, alias: key } }],
        result: undefined,
      };
    });
  }

  async removeAlias(approverId: string, alias: string): Promise<void> {
    const key = typeof alias === 'string' ? normalizeHandle(alias) : '';
    const now = this.directory.clock();
    await this.team.change('approver.alias_removed', now, async (client) => {
      await lockApprover(client, approverId);
      const removed = await client.query('DELETE FROM directory_handles WHERE handle = $1 AND approver_id = $2 AND is_alias', [
        key,
        approverId,
      ]);
      if (removed.rowCount !== 1)
        throw new CountersignError('approver_unknown', `approver ${quote(approverId)} has no alias ${quote(String(alias))}`);
      return {
        ops: [{ table: 'approver_aliases', delete: key }],
        audit: [{ kind: 'approver.alias_removed', at: now, event: { approverId, alias: key } }],
        result: undefined,
      };
    });
  }

  /** Remove a security key from every hub (its next tap anywhere is refused: credential_unknown). */
  async removeCredential(credentialId: string, context: TeamWriteContext = {}): Promise<void> {
    const now = this.directory.clock();
    await this.team.change(
      'approver.credential_removed',
      now,
      async (client) => {
        const key = await lockCredential(client, credentialId);
        const row = { ...key.row, status: 'removed' };
        await client.query("UPDATE directory_credentials SET status = 'removed', row = $2 WHERE credential_id = $1", [
          credentialId,
          JSON.stringify(row),
        ]);
        return {
          ops: [{ table: 'approver_credentials', row }],
          audit: [
            { kind: 'approver.credential_removed', at: now, event: { approverId: key.approverId, credentialId } },
            ...(context.also ?? []),
          ],
          result: undefined,
        };
      },
      context.tap,
    );
  }

  /**
   * A key verified by this hub's registration ceremony (approver-directory.ts finishRegistration):
   * stored for every hub with its registration code spent, in one transaction. The approver must
   * still be active in the team directory, the key new, the code unused and unexpired.
   */
  async registerCredential(
    credential: CredentialRow,
    codeHash: string | undefined,
    event: AuditEventFields<'approver.credential_registered'>,
  ): Promise<CredentialRecord> {
    const now = credential.created_at;
    const committed = await this.team.change('approver.credential_registered', now, async (client) => {
      const approver = await lockApprover(client, credential.approver_id);
      if (approver.status !== 'active')
        throw new CountersignError('approver_disabled', `approver ${quote(credential.approver_id)} is disabled`);
      const ops: ReplicaOp[] = [];
      if (codeHash !== undefined) {
        const { rows } = await client.query<{ row: string }>(
          `SELECT row FROM directory_registration_codes
           WHERE code_hash = $1 AND approver_id = $2 AND used_at IS NULL AND expires_at > $3 FOR UPDATE`,
          [codeHash, credential.approver_id, now],
        );
        if (rows[0] === undefined)
          throw new CountersignError(
            'challenge_invalid',
            'the registration code is unknown, used, expired or for another approver; ask an admin for a new one',
          );
        const row = { ...storedRow(rows[0].row), used_at: now };
        await client.query('UPDATE directory_registration_codes SET used_at = $2, row = $3 WHERE code_hash = $1', [
          codeHash,
          now,
          JSON.stringify(row),
        ]);
        ops.push({ table: 'registration_codes', row });
      }
      const row: ReplicaRow = {
        credential_id: credential.credential_id,
        approver_id: credential.approver_id,
        public_key: credential.public_key,
        public_jwk: credential.public_jwk,
        sign_count: credential.sign_count,
        aaguid: credential.aaguid,
        attestation_fmt: credential.attestation_fmt,
        attestation_object: credential.attestation_object ?? null,
        transports: credential.transports,
        status: 'active',
        created_at: now,
        last_used_at: null,
      };
      const inserted = await client.query(
        "INSERT INTO directory_credentials (credential_id, approver_id, status, row, sign_count) VALUES ($1, $2, 'active', $3, $4) ON CONFLICT DO NOTHING",
        [credential.credential_id, credential.approver_id, JSON.stringify(row), credential.sign_count],
      );
      if (inserted.rowCount !== 1) throw new CountersignError('config_invalid', 'that security key is already registered');
      ops.push({ table: 'approver_credentials', row });
      return { ops, audit: [{ kind: 'approver.credential_registered', at: now, event }], result: row };
    });
    return credentialFromRowImage(committed);
  }

  /**
   * A desk sign-in on this hub, checked where a removal holds at once: the approver and key in the
   * team directory (this hub's replica may not have applied a removal yet), and the key's counter
   * advanced past the team's in the same transaction (PgDirectory.checkTap; a regression throws
   * TeamCounterRegression and the caller marks the key suspect on every hub). No change is
   * appended: the sign-in's audit record is the hub's own (desk.signed_in).
   */
  async checkSignIn(tap: TeamTap, open?: (client: pg.ClientBase, approver: ApproverRecord) => Promise<void>): Promise<ApproverRecord> {
    return this.team.change(
      'desk.sign_in',
      tap.at,
      async (client) => {
        // The person as the team directory has them in this transaction (checkTap holds the row
        // FOR SHARE): the session's groups come from here, never from this hub's replica.
        const { rows } = await client.query<{ row: string }>('SELECT row FROM directory_approvers WHERE id = $1', [tap.approverId]);
        const approver = approverFromRowImage(storedRow(rows[0]!.row));
        await open?.(client, approver);
        return { ops: [], audit: [], result: approver };
      },
      tap,
    );
  }

  /**
   * The admins who can tap now (active, in the admin group, with an active key) as the team
   * directory has them, on `client` (a transaction's) or the pool: the admin quorum is counted
   * here, never in this hub's replica, which may not have applied a second admin yet (a tap on
   * that hub would then act alone where the team needs two).
   */
  async tappingAdmins(client?: pg.ClientBase): Promise<string[]> {
    try {
      const { rows } = await (client ?? this.team.pool).query<{ id: string }>(
        `SELECT a.id FROM directory_approvers a
          WHERE a.status = 'active' AND ((a.row::jsonb ->> 'groups_json')::jsonb) ? $1
            AND EXISTS (SELECT 1 FROM directory_credentials c WHERE c.approver_id = a.id AND c.status = 'active')
          ORDER BY a.id`,
        [ADMIN_GROUP_NAME],
      );
      return rows.map((row) => row.id);
    } catch (error) {
      if (isCountersignError(error)) throw error;
      throw storeError(error, 'reading the admins');
    }
  }

  /**
   * `adminId` as the team directory has them on `client` (inside a transaction that acts on their
   * behalf): active, in the admin group, with an active key; refused as the embedded directory
   * refuses (approver_disabled, approver_not_eligible) when they are not, whatever this hub's
   * replica still says.
   */
  async assertTappingAdmin(client: pg.ClientBase, adminId: string): Promise<void> {
    const { rows } = await client.query<{ status: string; row: string }>(
      'SELECT status, row FROM directory_approvers WHERE id = $1 FOR SHARE',
      [adminId],
    );
    const found = rows[0];
    if (found === undefined) throw new CountersignError('approver_unknown', `no approver named ${quote(adminId)} is in the team directory`);
    if (found.status !== 'active') throw new CountersignError('approver_disabled', `admin ${quote(adminId)} is disabled`);
    if (!approverFromRowImage(storedRow(found.row)).groups.includes(ADMIN_GROUP_NAME))
      throw new CountersignError('approver_not_eligible', `${quote(adminId)} is not in ${ADMIN_GROUP_NAME}`);
    const keys = await client.query("SELECT 1 FROM directory_credentials WHERE approver_id = $1 AND status = 'active' LIMIT 1", [adminId]);
    if (keys.rowCount === 0) throw new CountersignError('credential_unknown', `admin ${quote(adminId)} has no active security key`);
  }

  /**
   * Take a key out of service on every hub (its counter went backwards), audited once. If the team
   * directory cannot record it now (the database down), the suspicion is held on this hub first
   * (PgDirectory.holdSuspicion: this hub refuses the key at once, and a restart keeps it) and
   * recorded for every hub as soon as the database answers again (replayHeldSuspicions, after each
   * reconnect); the caller's tap is refused either way.
   */
  async markSuspect(credentialId: string, approverId: string, stored: number, reported: number): Promise<void> {
    const suspicion = { credentialId, approverId, stored, reported, at: this.directory.clock() };
    try {
      await this.recordSuspicion(suspicion);
    } catch (error) {
      this.team.holdSuspicion(suspicion);
      this.onError(
        `security key ${quote(credentialId)} of ${quote(approverId)} is suspect; held on this hub until the team directory records it: ${messageOf(error)}`,
      );
    }
  }

  /**
   * Record every suspicion this hub holds in the team directory, oldest first; each is released
   * once recorded (or refused for good: the key is no longer in the team directory). A database
   * that fails again rejects, and the directory's listener tries again.
   */
  async replayHeldSuspicions(): Promise<void> {
    for (const suspicion of this.team.heldSuspicions()) {
      try {
        await this.recordSuspicion(suspicion);
      } catch (error) {
        if (isStoreFault(error)) throw error;
        this.onError(`the held suspicion of key ${quote(suspicion.credentialId)} cannot be recorded: ${messageOf(error)}`);
      }
      this.team.releaseSuspicion(suspicion.credentialId);
    }
  }

  private async recordSuspicion(suspicion: HeldSuspicion): Promise<void> {
    const { credentialId, approverId, stored, reported, at } = suspicion;
    await this.team.change('approver.credential_suspect', at, async (client) => {
      const key = await lockCredential(client, credentialId);
      if (key.status !== 'active') return { ops: [], audit: [], result: undefined };
      const row = { ...key.row, status: 'suspect' };
      await client.query("UPDATE directory_credentials SET status = 'suspect', row = $2 WHERE credential_id = $1", [
        credentialId,
        JSON.stringify(row),
      ]);
      return {
        ops: [{ table: 'approver_credentials', row }],
        audit: [
          {
            kind: 'approver.credential_suspect',
            at,
            event: {
              approverId,
              credentialId,
              status: 'suspect',
              reason: 'signature counter went backwards',
              storedCounter: stored,
              reportedCounter: reported,
            },
          },
        ],
        result: undefined,
      };
    });
  }
}

function isStoreFault(error: unknown): boolean {
  return isCountersignError(error) && (error.code === 'store_unavailable' || error.code === 'store_failed');
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function newCode(now: number): IssuedCode & { hash: string } {
  const code = base64url(randomBytes(24));
  return { code, hash: hashCode(code), expiresAt: now + REGISTRATION_CODE_TTL_MS };
}

function codeIssued(approverId: string, issuedBy: string, expiresAt: number, now: number): AuditSubmission {
  return { kind: 'approver.registration_code_issued', at: now, event: { approverId, issuedBy, expiresAt } };
}

async function insertCode(client: pg.ClientBase, approverId: string, issuedBy: string, code: { hash: string; expiresAt: number }) {
  const row: ReplicaRow = { code_hash: code.hash, approver_id: approverId, issued_by: issuedBy, expires_at: code.expiresAt, used_at: null };
  await client.query('INSERT INTO directory_registration_codes (code_hash, approver_id, expires_at, row) VALUES ($1, $2, $3, $4)', [
    code.hash,
    approverId,
    code.expiresAt,
    JSON.stringify(row),
  ]);
  return row;
}

async function insertAlias(client: pg.ClientBase, approverId: string, alias: string, now: number): Promise<ReplicaRow> {
  await client.query('INSERT INTO directory_handles (handle, approver_id, is_alias) VALUES ($1, $2, true)', [alias, approverId]);
  return { alias, approver_id: approverId, created_at: now };
}

/** alias_conflict when any person's id (in any case) or alias is `key` (lowercase), as the embedded directory. */
async function assertHandleFree(client: pg.ClientBase, key: string, what: 'id' | 'alias'): Promise<void> {
  const { rows } = await client.query<{ approver_id: string }>('SELECT approver_id FROM directory_handles WHERE handle = $1', [key]);
  const holder = rows[0]?.approver_id;
  if (holder !== undefined)
    throw new CountersignError('alias_conflict', `the ${what} ${quote(key)} already names approver ${quote(holder)}`, {
      details: { handle: key, approverId: holder },
    });
}

/** The approvers in the admin group (active ones, or of any status), as the team directory has them (under the directory lock). */
async function adminIds(client: pg.ClientBase, which: 'active' | 'any status' = 'active'): Promise<string[]> {
  const { rows } = await client.query<{ id: string; row: string }>(
    which === 'active' ? "SELECT id, row FROM directory_approvers WHERE status = 'active'" : 'SELECT id, row FROM directory_approvers',
  );
  return rows
    .filter(({ row }) => (parseStrictJson(String(storedRow(row).groups_json)) as string[]).includes(ADMIN_GROUP_NAME))
    .map((r) => r.id);
}

async function lockApprover(client: pg.ClientBase, approverId: string): Promise<{ status: string; row: ReplicaRow }> {
  const found = await lockDirectoryRow(client, 'directory_approvers', approverId);
  if (found === undefined) throw new CountersignError('approver_unknown', `no approver named ${quote(String(approverId))}`);
  return found;
}

async function lockCredential(
  client: pg.ClientBase,
  credentialId: string,
): Promise<{ status: string; approverId: string; row: ReplicaRow }> {
  const found = await lockDirectoryRow(client, 'directory_credentials', credentialId);
  if (found === undefined) throw new CountersignError('credential_unknown', 'that security key is not registered');
  return { ...found, approverId: String(found.row.approver_id) };
}
