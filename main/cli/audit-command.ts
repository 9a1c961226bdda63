/**
 * `countersign audit …`: verify the log in the data directory (or an export, offline), export
 * it, print proofs and checkpoints, and — after a deliberate restore — reset the external
 * checkpoint. docs/audit.md.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { openDataDir } from '../core/app.js';
import { assertDataDirFree } from '../core/store/data-dir-lock.js';
import { loadConfig } from '../core/config.js';
import { historicKey } from '../core/keys/signing-keys.js';
import { auditOrigin, checkExternalCheckpoint, checkpointFiles, latestCheckpoint, writeFileAtomic } from '../core/audit/checkpoints.js';
import { exportAudit, verifyExport, type ExportSelection } from '../core/audit/audit-export.js';
import { consistencyView, inclusionView } from '../core/audit/audit-proofs.js';
import { TamperAlarm } from '../core/audit/tamper-alarm.js';
import { CountersignError, isCountersignError, quote } from '../../shared/errors.js';
import { fileNotFound } from '../core/user-files.js';
import { parseStrictJson } from '../../shared/canonical-json.js';
import type { PublicJwk } from '../core/custody/signer.js';
import { domainOption } from './keys-command.js';
import { print } from './print.js';

type Values = Record<string, string | boolean | undefined>;

const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : undefined);

function wholeNumber(value: string | boolean | undefined, name: string): number {
  const n = Number(str(value));
  if (str(value) === undefined || !Number.isSafeInteger(n) || n < 0)
    throw new CountersignError('config_invalid', `--${name} must be a whole number`);
  return n;
}

function time(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new CountersignError('config_invalid', `--${name} must be a date and time, such as 2026-11-29T00:00:00Z`);
  return t;
}

/** Public keys for the offline verifier: a JWKS, one JWK, or a PEM SubjectPublicKeyInfo. */
export function readVerificationKeys(file: string): PublicJwk[] {
  if (!existsSync(file)) throw fileNotFound('the key file', file);
  const text = readFileSync(file, 'utf8');
  try {
    if (text.includes('-----BEGIN PUBLIC KEY-----')) return [createPublicKey(text).export({ format: 'jwk' }) as unknown as PublicJwk];
    const value = parseStrictJson(text) as unknown as { keys?: PublicJwk[] } & PublicJwk;
    return Array.isArray(value.keys) ? value.keys : [value];
  } catch (cause) {
    throw new CountersignError('config_invalid', `the key file ${quote(file)} is not a JWKS, a JWK or a PEM public key`, { cause });
  }
}

export async function auditCommand(sub: string | undefined, positionals: string[], values: Values, dataDir: string): Promise<number> {
  const config = loadConfig(dataDir, str(values.config), { domain: domainOption(str(values.domain)) });
  const origin = auditOrigin(config.serverId);

  if (sub === 'verify' && values.export !== undefined) {
    const keyFile = str(values.key);
    if (keyFile === undefined)
      throw new CountersignError('config_invalid', '--key is required with --export (a JWKS from `audit keys`, or a PEM public key)');
    const keys = readVerificationKeys(resolve(keyFile));
    const exportFile = resolve(str(values.export) ?? '');
    if (!existsSync(exportFile)) throw fileNotFound('the audit export', exportFile);
    const result = await verifyExport(exportFile, keys);
    print(result);
    return result.ok ? 0 : 1;
  }

  const { db, audit, signingKeys } = openDataDir(dataDir);
  try {
    const files = checkpointFiles(dataDir, config.audit.mirrorDir === undefined ? undefined : resolve(dataDir, config.audit.mirrorDir));
    // Every key pinned in this data directory, in any domain and any status: old checkpoints stay checkable.
    const records = signingKeys.list();
    const keys = records.map((k) => k.publicJwk);
    const history = records.map(historicKey);
    switch (sub) {
      case 'verify': {
        const result = audit.verify();
        let external: Record<string, unknown>;
        try {
          const checked = checkExternalCheckpoint({ db, log: audit, origin, files, history });
          external = { ok: true, coveredEntries: checked.size, file: checked.source ?? null, warnings: checked.warnings };
        } catch (error) {
          if (!isCountersignError(error)) throw error;
          external = { ok: false, code: error.code, reason: error.message };
        }
        print({ ...result, externalCheckpoint: external });
        return result.ok && external.ok === true ? 0 : 1;
      }
      case 'export': {
        const out = str(values.out);
        if (out === undefined) throw new CountersignError('config_invalid', '--out FILE is required');
        const request = str(values.request);
        const since = str(values.since);
        const until = str(values.until);
        const selection: ExportSelection =
          request !== undefined
            ? { kind: 'request', requestId: request }
            : since !== undefined || until !== undefined
              ? { kind: 'time', since: time(since, 'since', 0), until: time(until, 'until', Number.MAX_SAFE_INTEGER) }
              : { kind: 'all' };
        print(exportAudit({ db, log: audit, origin, file: resolve(out), selection }));
        return 0;
      }
      case 'proof': {
        const kind = positionals[0];
        const latest = latestCheckpoint(db);
        if (kind === 'inclusion') {
          const size = values.size === undefined ? (latest?.size ?? audit.size()) : wholeNumber(values.size, 'size');
          print(inclusionView(audit, wholeNumber(values.seq, 'seq'), size, latest?.size === size ? latest.note : null));
          return 0;
        }
        if (kind === 'consistency') {
          print(consistencyView(audit, wholeNumber(values.from, 'from'), wholeNumber(values.to, 'to')));
          return 0;
        }
        throw new CountersignError(
          'config_invalid',
          'usage: countersign audit proof inclusion --seq N [--size S] | audit proof consistency --from A --to B',
        );
      }
      case 'checkpoint': {
        const latest = latestCheckpoint(db);
        if (!latest) throw new CountersignError('audit_proof_unavailable', 'the audit log has no signed checkpoint yet');
        process.stdout.write(latest.note);
        return 0;
      }
      case 'keys':
        // The JWKS an offline verifier reads, and each key's window (when it could sign checkpoints).
        print({
          keys,
          history: history.map((k) => ({
            kid: k.kid,
            activeFrom: new Date(k.activeFrom).toISOString(),
            activeUntil: k.activeUntil === undefined ? null : new Date(k.activeUntil).toISOString(),
          })),
        });
        return 0;
      case 'alarms': {
        // Tamper alarms (docs/audit.md): open ones first; an admin acknowledges one with a key tap.
        const alarms = new TamperAlarm(db, audit);
        print({ open: alarms.open(), acknowledged: alarms.acknowledged() });
        return 0;
      }
      case 'reset-checkpoint': {
        // A running server writes the same checkpoint files; the reset would race it.
        assertDataDirFree(dataDir, 'countersign audit reset-checkpoint');
        // Only after the database itself verifies: the reset is for a deliberate restore or a lost file.
        const result = audit.verify();
        if (!result.ok)
          throw new CountersignError(
            'audit_corrupt',
            `the audit log does not verify (entry ${result.badSeq}: ${result.reason}); refusing to reset its checkpoint`,
          );
        let previous: string;
        try {
          const checked = checkExternalCheckpoint({ db, log: audit, origin, files, history });
          previous = `consistent, covering ${checked.size} entries`;
        } catch (error) {
          if (!isCountersignError(error)) throw error;
          previous = `${error.code}: ${error.message}`;
        }
        const latest = latestCheckpoint(db);
        db.transaction(() =>
          audit.append('audit.checkpoint_reset', Date.now(), { previous: previous.slice(0, 1000), resetTo: latest?.size ?? 0, files }),
        ).immediate();
        for (const file of files) {
          if (latest) writeFileAtomic(file, latest.note);
          else rmSync(file, { force: true });
        }
        print({ reset: true, previous, checkpointEntries: latest?.size ?? 0, files });
        return 0;
      }
      default:
        throw new CountersignError(
          'config_invalid',
          'usage: countersign audit verify|export|proof|checkpoint|keys|alarms|reset-checkpoint (see --help)',
        );
    }
  } finally {
    db.close();
  }
}
