/**
 * The desk's Custody-and-health view: who holds the signing key (a PKCS#11 token or software),
 * every signing key of the domain with its fingerprint (the RFC 7638 thumbprint it is pinned by)
 * and rotation state, whether the token answers, the last signature, the audit log's latest
 * signed checkpoint and the last verification pass, and the open tamper alarm. `verifyNow` runs a
 * full verification pass on demand (audit-verifier.ts: it re-hashes every entry and raises a
 * tamper alarm when it finds one changed); everything else here only reads.
 */
import type { CustodyStatus } from '../keys/open-custody.js';
import type { SigningKeyRegistry } from '../keys/signing-keys.js';
import type { Checkpointer } from '../audit/checkpoints.js';
import type { AuditVerifier } from '../audit/audit-verifier.js';
import type { TamperAlarm } from '../audit/tamper-alarm.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { AuditVerification, CustodyHealth } from '../../../shared/desk-records.js';

export interface HealthDeskDeps {
  serverId: string;
  domain: 'production' | 'test';
  origin: string;
  custody: { status(): CustodyStatus };
  keys: Pick<SigningKeyRegistry, 'list' | 'lastSignatureAt'>;
  checkpoints: Pick<Checkpointer, 'latest'>;
  verifier: Pick<AuditVerifier, 'lastReport' | 'verifyNow'>;
  alarm: Pick<TamperAlarm, 'current'>;
  log: Pick<AuditLog, 'size'>;
}

export class HealthDesk {
  constructor(private readonly deps: HealthDeskDeps) {}

  health(): CustodyHealth {
    const status = this.deps.custody.status();
    const keys = this.deps.keys.list(this.deps.domain);
    const active = keys.filter((k) => k.status === 'active');
    const checkpoint = this.deps.checkpoints.latest();
    const last = this.deps.verifier.lastReport();
    const alarm = this.deps.alarm.current();
    return {
      serverId: this.deps.serverId,
      domain: this.deps.domain,
      custody: status.custody,
      algorithm: status.algorithm,
      kid: status.kid,
      tokenLabel: status.tokenLabel ?? null,
      tokenPresent: status.tokenPresent ?? (status.custody === 'software' ? null : false),
      loggedIn: status.loggedIn ?? null,
      lastSignatureAt: status.lastSignatureAt ?? this.deps.keys.lastSignatureAt(status.kid) ?? null,
      keys: keys.slice(0, 1000).map((k) => ({
        kid: k.kid,
        custody: k.custody,
        alg: k.algorithm,
        status: k.status,
        createdAt: k.createdAt,
        notAfter: k.notAfter ?? null,
        retiredAt: k.retiredAt ?? null,
        lastSignatureAt: this.deps.keys.lastSignatureAt(k.kid) ?? null,
      })),
      rotation: active.length === 0 ? 'no_active_key' : keys.some((k) => k.status === 'retiring') ? 'overlap' : 'steady',
      audit: {
        entries: this.deps.log.size(),
        origin: this.deps.origin,
        checkpoint: checkpoint === undefined ? null : { treeSize: checkpoint.size, rootHash: checkpoint.rootHash, at: checkpoint.at },
        lastVerification:
          last === undefined
            ? null
            : { at: last.finishedAt, entries: last.entries, findings: last.findings.length, ok: last.findings.length === 0 },
      },
      alarm:
        alarm === undefined
          ? null
          : {
              id: alarm.id,
              raisedAt: alarm.raisedAt,
              source: alarm.source,
              firstBadSeq: alarm.firstBadSeq,
              findings: alarm.findings.length,
              reason: (alarm.findings[0]?.reason ?? '').slice(0, 500),
            },
    };
  }

  async verifyNow(): Promise<AuditVerification> {
    const report = await this.deps.verifier.verifyNow();
    return {
      at: report.finishedAt,
      entries: report.entries,
      findings: report.findings.length,
      ok: report.findings.length === 0,
      alarmId: report.raised?.id ?? null,
      firstFinding: report.findings[0]?.reason.slice(0, 500) ?? null,
    };
  }
}
