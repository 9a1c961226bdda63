/**
 * The tamper alarm: what continuous audit verification (audit-verifier.ts) and the checkpointer
 * raise when a record, a stored hash or a checkpoint no longer matches. An alarm is a row in
 * `audit_alarms` plus an `audit.tamper_alarm` entry written in the same transaction, so it
 * survives a restart; it stays open until an admin acknowledges it with a security-key tap (the
 * `audit.acknowledge_alarm` admin action). While one is open, the decision path holds calls to
 * high-impact tools for approvers instead of allowing them automatically (docs/audit.md).
 *
 * A finding is identified by its kind and entry number, never by its wording: the same damage
 * found again (every later pass finds it: the log is append-only, so it cannot be repaired in
 * place) does not raise a new alarm once acknowledged; new damage does.
 */
import type { Db } from '../store/database.js';
import type { AuditLog } from './audit-log.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStoredJson } from '../store/stored-json.js';
import type { AuditEventFields } from '../../../shared/audit-events.js';

/**
 * `record`: an entry's record no longer hashes to its stored leaf hash (rewritten in place);
 * `subtree`: a stored subtree hash does not match its children, or the stored tree no longer
 * matches the last tree this process trusted; `checkpoint`: the tree recomputed from the entries
 * does not match a signed checkpoint (rewritten and re-hashed), or a stored checkpoint disagrees
 * with its signed note; `missing`: an entry or its leaf hash is missing.
 */
export type TamperFindingKind = 'record' | 'subtree' | 'checkpoint' | 'missing';

export interface TamperFinding {
  kind: TamperFindingKind;
  /** The first entry concerned (1-based). */
  seq: number;
  reason: string;
}

/** Where the damage was found. */
export type TamperSource = 'verification' | 'checkpoint';

export interface TamperAlarmView {
  id: number;
  raisedAt: number;
  source: TamperSource;
  firstBadSeq: number;
  findings: TamperFinding[];
  acknowledgedAt?: number;
  acknowledgedBy?: string;
}

/** At most this many findings are kept per alarm (the first ones; the count says how many more). */
export const MAX_FINDINGS_PER_ALARM = 50;

interface AlarmRow {
  id: number;
  raised_at: number;
  source: TamperSource;
  first_bad_seq: number;
  findings: string;
  acknowledged_at: number | null;
  acknowledged_by: string | null;
}

const findingKey = (f: Pick<TamperFinding, 'kind' | 'seq'>): string => `${f.kind}:${f.seq}`;

function toView(row: AlarmRow): TamperAlarmView {
  const view: TamperAlarmView = {
    id: row.id,
    raisedAt: row.raised_at,
    source: row.source,
    firstBadSeq: row.first_bad_seq,
    findings: parseStoredJson(row.findings) as TamperFinding[],
  };
  if (row.acknowledged_at !== null) view.acknowledgedAt = row.acknowledged_at;
  if (row.acknowledged_by !== null) view.acknowledgedBy = row.acknowledged_by;
  return view;
}

export class TamperAlarm {
  private readonly openStmt;
  private readonly byId;
  private readonly allFindings;
  private readonly insert;
  private readonly ack;
  /**
   * Alarms this process has seen open, and those it acknowledged (by an admin's tap, in the
   * admin action's transaction). An alarm seen open stays open for this process until it is
   * acknowledged here: a database edit alone (the acknowledgement column set, the row deleted)
   * cannot release high-impact calls while the server runs.
   */
  private readonly seenOpen = new Map<number, TamperAlarmView>();
  private readonly acknowledgedHere = new Set<number>();

  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    private readonly now: () => number = Date.now,
  ) {
    this.openStmt = db.prepare<[], AlarmRow>('SELECT * FROM audit_alarms WHERE acknowledged_at IS NULL ORDER BY id');
    this.byId = db.prepare<[number], AlarmRow>('SELECT * FROM audit_alarms WHERE id = ?');
    this.allFindings = db.prepare<[], { findings: string }>('SELECT findings FROM audit_alarms');
    this.insert = db.prepare('INSERT INTO audit_alarms (raised_at, source, first_bad_seq, findings) VALUES (?, ?, ?, ?)');
    this.ack = db.prepare('UPDATE audit_alarms SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL');
  }

  /**
   * The oldest open alarm, or undefined. Read from the database each time (a few microseconds
   * on an indexed, nearly empty table); an alarm this process saw open stays open until this
   * process acknowledged it (see seenOpen).
   */
  current(): TamperAlarmView | undefined {
    const row = this.openStmt.get();
    if (row !== undefined) {
      const view = toView(row);
      this.seenOpen.set(view.id, view);
      return view;
    }
    for (const [id, view] of this.seenOpen) if (!this.acknowledgedHere.has(id)) return view;
    return undefined;
  }

  /** Every open alarm, oldest first. */
  open(): TamperAlarmView[] {
    return this.openStmt.all().map(toView);
  }

  /** Acknowledged alarms, newest first (at most `limit`). */
  acknowledged(limit = 100): TamperAlarmView[] {
    return this.db
      .prepare<[number], AlarmRow>('SELECT * FROM audit_alarms WHERE acknowledged_at IS NOT NULL ORDER BY id DESC LIMIT ?')
      .all(limit)
      .map(toView);
  }

  get(id: number): TamperAlarmView | undefined {
    const row = this.byId.get(id);
    return row === undefined ? undefined : toView(row);
  }

  /**
   * Raise an alarm for the findings no earlier alarm (open or acknowledged) already reported.
   * Stored and audited in one transaction. Returns the new alarm, or undefined when every finding
   * was known.
   */
  raise(source: TamperSource, findings: readonly TamperFinding[]): TamperAlarmView | undefined {
    return this.db
      .transaction(() => {
        const known = new Set<string>();
        for (const row of this.allFindings.all())
          for (const f of parseStoredJson(row.findings) as TamperFinding[]) known.add(findingKey(f));
        const fresh: TamperFinding[] = [];
        for (const f of findings) {
          const key = findingKey(f);
          if (known.has(key)) continue;
          known.add(key);
          fresh.push({ kind: f.kind, seq: f.seq, reason: f.reason.slice(0, 500) });
        }
        if (fresh.length === 0) return undefined;
        fresh.sort((a, b) => a.seq - b.seq);
        const kept = fresh.slice(0, MAX_FINDINGS_PER_ALARM);
        const at = this.now();
        const firstBadSeq = kept[0]!.seq;
        const id = Number(this.insert.run(at, source, firstBadSeq, JSON.stringify(kept)).lastInsertRowid);
        const event: AuditEventFields<'audit.tamper_alarm'> = {
          alarmId: id,
          source,
          firstBadSeq,
          findings: kept.map((f) => ({ ...f })),
          findingsTotal: fresh.length,
        };
        this.audit.append('audit.tamper_alarm', at, event);
        const view: TamperAlarmView = { id, raisedAt: at, source, firstBadSeq, findings: kept };
        this.seenOpen.set(id, view);
        return view;
      })
      .immediate();
  }

  /**
   * Close an open alarm. Call inside the transaction of the admin action that confirms it (the
   * admin's assertion is audited there). Throws tamper_alarm_unknown for an alarm that does not
   * exist or is no longer open.
   */
  acknowledge(alarmId: number, adminId: string, at: number): TamperAlarmView {
    if (this.ack.run(at, adminId, alarmId).changes !== 1)
      throw new CountersignError('tamper_alarm_unknown', `no open tamper alarm has the id ${quote(String(alarmId))}`);
    this.acknowledgedHere.add(alarmId);
    return toView(this.byId.get(alarmId)!);
  }

  /** Throws tamper_alarm_unknown unless `alarmId` is open (checked before a ceremony starts). */
  assertOpen(alarmId: number): void {
    const row = this.byId.get(alarmId);
    if (row === undefined || row.acknowledged_at !== null)
      throw new CountersignError('tamper_alarm_unknown', `no open tamper alarm has the id ${quote(String(alarmId))}`);
  }
}
