/**
 * The registry of signed `typ` values (shared/typ.ts): unique, used by every signed-kind schema
 * and constant, and spelled nowhere else in shared/ or main/, so a new signed kind cannot
 * quietly reuse another's domain separation.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIGNED_TYP } from '../../shared/typ.js';
import { SIGNED_TYPES, authProofPayloadSchema, callPayloadSchema } from '../../shared/protocol.js';
import { enrollmentPayloadSchema } from '../../shared/enrollment.js';
import { APPROVAL_CHALLENGE_TYP, approvalChallengeRecordSchema } from '../../shared/approvals.js';
import { APPROVAL_TOKEN_TYP } from '../../shared/approval-token.js';
import { ADMIN_ACTION_TYP } from '../../main/core/approvals/admin-actions.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|tsx|mjs)$/.test(name) ? [path] : [];
  });
}

describe('signed typ registry', () => {
  it('gives every signed kind a distinct value', () => {
    const values = Object.values(SIGNED_TYP);
    expect(new Set(values).size).toBe(values.length);
  });

  it('is where every signed-kind constant takes its value', () => {
    expect(SIGNED_TYPES).toEqual({ auth: SIGNED_TYP.agentAuth, call: SIGNED_TYP.callEnvelope, enrollment: SIGNED_TYP.enrollment });
    expect(APPROVAL_CHALLENGE_TYP).toBe(SIGNED_TYP.approvalChallenge);
    expect(ADMIN_ACTION_TYP).toBe(SIGNED_TYP.adminAction);
    expect(APPROVAL_TOKEN_TYP).toBe(SIGNED_TYP.approvalToken);
  });

  it('makes each signed-kind schema accept only its own registry value', () => {
    const schemas = [
      [callPayloadSchema, SIGNED_TYP.callEnvelope],
      [authProofPayloadSchema, SIGNED_TYP.agentAuth],
      [enrollmentPayloadSchema, SIGNED_TYP.enrollment],
      [approvalChallengeRecordSchema, SIGNED_TYP.approvalChallenge],
    ] as const;
    for (const [schema, own] of schemas) {
      const typ = schema.shape.typ;
      expect(typ.safeParse(own).success, own).toBe(true);
      for (const other of Object.values(SIGNED_TYP).filter((value) => value !== own))
        expect(typ.safeParse(other).success, `${own} accepts ${other}`).toBe(false);
    }
  });

  it('is the only source file in shared/ and main/ that spells a registry value', () => {
    const spelled: string[] = [];
    for (const file of [...sourceFiles(join(root, 'shared')), ...sourceFiles(join(root, 'main'))]) {
      const rel = relative(root, file);
      if (rel === join('shared', 'typ.ts')) continue;
      const text = readFileSync(file, 'utf8');
      for (const value of Object.values(SIGNED_TYP))
        if (text.includes(`'${value}'`) || text.includes(`"${value}"`) || text.includes(`\`${value}\``)) spelled.push(`${rel}: ${value}`);
    }
    expect(spelled).toEqual([]);
  });

  it('is listed in docs/canonical-json.md', () => {
    const doc = readFileSync(join(root, 'docs', 'canonical-json.md'), 'utf8');
    for (const value of Object.values(SIGNED_TYP)) expect(doc, value).toContain(`\`${value}\``);
  });
});
