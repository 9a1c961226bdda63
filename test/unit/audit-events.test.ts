/**
 * The typed audit contract (shared/audit-events.ts): the append path refuses an event that does
 * not match its kind's schema with audit_event_invalid and writes nothing, the set of kinds is
 * closed (the stale `token.issued` is gone), and docs/audit.md lists exactly the kinds there are.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, type Db } from '../../main/core/store/database.js';
import { AuditLog } from '../../main/core/audit/audit-log.js';
import {
  AUDIT_EVENT_SCHEMAS,
  AUDIT_KINDS,
  assertAuditEvent,
  isAuditKind,
  toAuditRecord,
  type AuditEventFields,
  type AuditKind,
} from '../../shared/audit-events.js';
import { parseStrictJson } from '../../shared/canonical-json.js';

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function freshLog(): { db: Db; log: AuditLog } {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-audit-events-'));
  dirs.push(dir);
  const db = openStore(join(dir, 'countersign.db'));
  dbs.push(db);
  return { db, log: new AuditLog(db) };
}

const rows = (db: Db) => db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM audit_log').get()!.n;

/** Append an event the types would refuse, as a programming error would at run time. */
const appendUnchecked = (log: AuditLog, kind: string, event: unknown) =>
  log.append(kind as AuditKind, 1_790_000_000_000, event as AuditEventFields<AuditKind>);

describe('audit event schemas on the append path', () => {
  it('appends a well-formed event of its kind, and the stored record reads back as that typed event', () => {
    const { db, log } = freshLog();
    const entry = db
      .transaction(() => log.append('approver.alias_added', 1_790_000_000_000, { approverId: 'alice', alias: 'alice@example.com' }))
      .immediate();
    expect(entry.seq).toBe(1);
    const record = toAuditRecord(parseStrictJson(entry.record));
    expect(record.kind).toBe('approver.alias_added');
    expect(record).toEqual({
      kind: 'approver.alias_added',
      at: 1_790_000_000_000,
      seq: 1,
      approverId: 'alice',
      alias: 'alice@example.com',
    });
  });

  it.each([
    ['an unknown member', 'approver.alias_added', { approverId: 'alice', alias: 'a', note: 'extra' }, /at note|unrecognized/i],
    ['a missing member', 'approver.alias_added', { approverId: 'alice' }, /at alias/],
    ['a mistyped member', 'agent.key_rotated', { agentId: 'bot', newKid: 'k', retiredKeys: '1', overlapEndsAt: 0 }, /at retiredKeys/],
    ["one of the log's own members (seq)", 'config.loaded', { configSha256: 'abc', seq: 7 }, /unrecognized|seq/i],
    ['a kind that does not exist', 'token.issued', { jti: 'x' }, /"token\.issued" is not one of the known kinds/],
  ])('refuses %s with audit_event_invalid and appends nothing', (_label, kind, event, message) => {
    const { db, log } = freshLog();
    db.transaction(() => log.append('config.loaded', 1_790_000_000_000, { configSha256: 'before' })).immediate();
    let thrown: unknown;
    try {
      db.transaction(() => appendUnchecked(log, kind, event)).immediate();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'audit_event_invalid', message: expect.stringMatching(message) as unknown });
    expect(rows(db)).toBe(1);
    expect(log.size()).toBe(1);
    // The log goes on: the next well-formed event gets the next number.
    expect(db.transaction(() => log.append('config.loaded', 1_790_000_000_001, { configSha256: 'after' })).immediate().seq).toBe(2);
  });

  it('takes the whole transaction down with a malformed event: the state change it records is not kept either', () => {
    const { db, log } = freshLog();
    db.exec('CREATE TABLE side_effect (x INTEGER)');
    expect(() =>
      db
        .transaction(() => {
          db.prepare('INSERT INTO side_effect (x) VALUES (1)').run();
          appendUnchecked(log, 'approver.disabled', {});
        })
        .immediate(),
    ).toThrow(expect.objectContaining({ code: 'audit_event_invalid' }));
    expect(db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM side_effect').get()!.n).toBe(0);
    expect(rows(db)).toBe(0);
  });

  it('has a closed set of kinds without the stale token.issued (nothing emits it: decisions carry their token)', () => {
    expect(isAuditKind('token.issued')).toBe(false);
    expect(isAuditKind('decision.approved')).toBe(true);
    expect(() => assertAuditEvent('decision.allow', { requestId: 'r' })).toThrow(expect.objectContaining({ code: 'audit_event_invalid' }));
  });

  it('docs/audit.md lists every event kind, and no kind that does not exist', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/audit.md', import.meta.url)), 'utf8');
    const section = doc.slice(doc.indexOf('## Event kinds'), doc.indexOf('\n## ', doc.indexOf('## Event kinds') + 3));
    const listed = [...section.matchAll(/^\| `([a-z_]+\.[a-z_]+)` \|/gm)].map((m) => m[1]);
    expect(listed).toEqual(AUDIT_KINDS);
    // Each row names exactly its schema's members (`name?` when optional), over all its variants.
    const membersOf = (schema: unknown): string[] => {
      const def = (schema as { def: { type: string; options?: unknown[] } }).def;
      if (def.type === 'union') return def.options!.flatMap(membersOf);
      return Object.entries((schema as { shape: Record<string, { def: { type: string } }> }).shape).map(([k, v]) =>
        v.def.type === 'optional' ? `${k}?` : k,
      );
    };
    for (const kind of AUDIT_KINDS) {
      const row = section.split('\n').find((line) => line.startsWith(`| \`${kind}\` |`))!;
      const named = [...row.slice(row.indexOf('|', 2)).matchAll(/`([^`]+)`/g)].map((m) => m[1]!).filter((token) => !isAuditKind(token));
      expect(new Set(named), kind).toEqual(new Set(membersOf(AUDIT_EVENT_SCHEMAS[kind])));
    }
  });
});
