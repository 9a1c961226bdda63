/**
 * resolvePerson: which person of the approver directory a handle (approver id or alias) names,
 * on a real SQLite store, and the directory's rules that keep a handle naming at most one person.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDataDir } from '../../main/core/app.js';
import { ApproverDirectory } from '../../main/core/approvals/approver-directory.js';
import { normalizeHandle, resolvePerson, samePerson } from '../../main/core/identity/people.js';
import type { Db } from '../../main/core/store/database.js';
import type { AuditLog } from '../../main/core/audit/audit-log.js';

let dir: string;
let db: Db;
let audit: AuditLog;
let people: ApproverDirectory;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-people-'));
  ({ db, audit } = openDataDir(dir));
  people = new ApproverDirectory(db, audit, {
    domain: 'production',
    rpId: 'localhost',
    origins: ['http://localhost:7345'],
    requireAaguids: [],
    ceremonyTimeoutMs: 60_000,
  });
  people.addApprover({ id: 'sam', displayName: 'Sam', groups: ['sre-approvers'], aliases: ['Sam@Example.com', 'sam.smith'] });
  people.addApprover({ id: 'Dana.Lee', displayName: 'Dana', groups: [] });
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('resolvePerson', () => {
  it('resolves an approver id in any case, trimmed, to the id as stored', () => {
    expect(resolvePerson(db, 'sam')).toEqual({ id: 'sam', via: 'id', status: 'active' });
    expect(resolvePerson(db, '  dana.lee ')).toEqual({ id: 'Dana.Lee', via: 'id', status: 'active' });
  });

  it('resolves an alias in any case to its person', () => {
    expect(resolvePerson(db, 'SAM@example.COM')).toEqual({ id: 'sam', via: 'alias', status: 'active' });
    expect(resolvePerson(db, 'sam.smith')).toMatchObject({ id: 'sam', via: 'alias' });
    expect(people.aliasesOf('sam')).toEqual(['sam.smith', 'sam@example.com']);
  });

  it('resolves nobody for an unknown, empty or malformed handle', () => {
    for (const handle of ['samuel', 'sam@example.org', '', '   ', 'sam smith', '@sam', 'x'.repeat(129), 42 as unknown as string]) {
      expect(resolvePerson(db, handle), String(handle)).toBeUndefined();
    }
  });

  it('still resolves a disabled person (conflicts outlive approval rights), with the status', () => {
    people.disable('sam');
    expect(resolvePerson(db, 'sam@example.com')).toEqual({ id: 'sam', via: 'alias', status: 'disabled' });
  });

  it('resolves nobody when a database from before unique handles holds one id in two spellings', () => {
    db.prepare(
      "INSERT INTO approvers (id, display_name, groups_json, virtual, status, created_at) VALUES ('SAM', 'Other Sam', '[]', 0, 'active', 1)",
    ).run();
    expect(resolvePerson(db, 'sam')).toBeUndefined();
    expect(resolvePerson(db, 'Sam')).toBeUndefined();
    // An alias still names exactly one person.
    expect(resolvePerson(db, 'sam@example.com')).toMatchObject({ id: 'sam', via: 'alias' });
  });

  it('samePerson compares the persons two handles name; an unknown handle is nobody', () => {
    expect(samePerson(db, 'sam@example.com', 'SAM')).toBe(true);
    expect(samePerson(db, 'sam.smith', 'dana.lee')).toBe(false);
    expect(samePerson(db, 'ghost', 'ghost')).toBe(false);
    expect(normalizeHandle('  Sam@Example.COM ')).toBe('sam@example.com');
  });
});

describe('aliases in the directory', () => {
  it('refuses an id or alias that already names a person, in any case', () => {
    expect(() => people.addApprover({ id: 'SAM', displayName: 'x', groups: [] })).toThrow(
      expect.objectContaining({ code: 'alias_conflict' }),
    );
    expect(() => people.addApprover({ id: 'sam@example.com', displayName: 'x', groups: [] })).toThrow(
      expect.objectContaining({ code: 'alias_conflict' }),
    );
    expect(() => people.addApprover({ id: 'erin', displayName: 'x', groups: [], aliases: ['DANA.LEE'] })).toThrow(
      expect.objectContaining({ code: 'alias_conflict' }),
    );
    expect(() => people.addAlias('Dana.Lee', 'sam.smith')).toThrow(expect.objectContaining({ code: 'alias_conflict' }));
    expect(() => people.addAlias('Dana.Lee', 'not an alias')).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    expect(() => people.addAlias('nobody', 'nobody@example.com')).toThrow(expect.objectContaining({ code: 'approver_unknown' }));
    expect(people.list().map((a) => a.id)).toEqual(['Dana.Lee', 'sam']);
    expect(resolvePerson(db, 'erin')).toBeUndefined();
  });

  it('adds and removes aliases, each audited', () => {
    people.addAlias('Dana.Lee', 'Dana@Example.com');
    expect(resolvePerson(db, 'dana@example.com')).toMatchObject({ id: 'Dana.Lee', via: 'alias' });
    people.removeAlias('Dana.Lee', 'DANA@example.com');
    expect(resolvePerson(db, 'dana@example.com')).toBeUndefined();
    expect(() => people.removeAlias('Dana.Lee', 'dana@example.com')).toThrow(expect.objectContaining({ code: 'approver_unknown' }));
    const kinds = audit
      .entries()
      .map((e) => [e.kind, JSON.parse(e.record) as Record<string, unknown>] as const)
      .filter(([kind]) => kind.startsWith('approver.alias'));
    expect(kinds).toEqual([
      ['approver.alias_added', expect.objectContaining({ approverId: 'Dana.Lee', alias: 'dana@example.com' })],
      ['approver.alias_removed', expect.objectContaining({ approverId: 'Dana.Lee', alias: 'dana@example.com' })],
    ]);
    const added = audit.entries().find((e) => e.kind === 'approver.added' && e.record.includes('"sam"'));
    expect(JSON.parse(added?.record ?? '{}')).toMatchObject({ approverId: 'sam', aliases: ['sam.smith', 'sam@example.com'] });
  });
});
