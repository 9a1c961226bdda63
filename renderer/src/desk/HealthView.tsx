/**
 * The Custody-and-health view: an open tamper alarm first and loud; then who holds the signing
 * key (a PKCS#11 token or software, said plainly), each key's fingerprint and rotation state,
 * whether the token answers and when the key last signed; the audit log's latest signed
 * checkpoint and the last verification pass, with a button that runs one now.
 */
import { useCallback, useEffect, useState } from 'react';
import type { DeskViewProps } from './desk-view.js';
import { toCountersignError } from '../../../shared/bridge.js';
import type { AuditVerification, CustodyHealth } from '../../../shared/desk-records.js';
import { coalescedReload } from './coalesced-reload.js';

const at = (ms: number | null): string =>
  ms === null
    ? 'never'
    : new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC');
const yesNo = (v: boolean | null): string => (v === null ? 'not applicable' : v ? 'yes' : 'NO');

export function HealthView({ bridge }: DeskViewProps): React.JSX.Element {
  const [health, setHealth] = useState<CustodyHealth | null>(null);
  const [error, setError] = useState<{ code: string; message: string } | null>(null);
  const [run, setRun] = useState<AuditVerification | null>(null);
  const [running, setRunning] = useState(false);

  const refresh = useCallback(async () => {
    try {
      setHealth(await bridge.getCustodyHealth());
      setError(null);
    } catch (caught) {
      const e = toCountersignError(caught);
      setError({ code: e.code, message: e.message });
    }
  }, [bridge]);

  useEffect(() => {
    void refresh();
    const reload = coalescedReload(refresh);
    const unsubscribe = bridge.subscribe(() => reload.request());
    return () => {
      reload.cancel();
      unsubscribe();
    };
  }, [bridge, refresh]);

  const verify = async () => {
    setRunning(true);
    try {
      setRun(await bridge.verifyAuditNow());
      await refresh();
    } catch (caught) {
      const e = toCountersignError(caught);
      setError({ code: e.code, message: e.message });
    } finally {
      setRunning(false);
    }
  };

  return (
    <section className="panel desk-admin" aria-labelledby="health-title" data-testid="health-view">
      <div className="panel-title">
        <h2 id="health-title">Custody and health</h2>
        <button type="button" className="secondary" onClick={() => void refresh()}>
          Refresh
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
      {health && (
        <>
          {health.alarm && (
            <div className="banner banner-alarm health-alarm" role="alert" data-testid="health-alarm">
              <strong>Tamper alarm {health.alarm.id}</strong>: the audit log failed verification at entry {health.alarm.firstBadSeq} (
              {health.alarm.findings} finding{health.alarm.findings === 1 ? '' : 's'}, raised {at(health.alarm.raisedAt)} by{' '}
              {health.alarm.source}): {health.alarm.reason}. High-impact calls wait for an approver until an admin acknowledges it.
            </div>
          )}
          <h3>Signing key custody</h3>
          <p
            className={health.custody === 'pkcs11' ? 'custody-hardware' : 'custody-software'}
            data-testid="health-custody"
            data-custody={health.custody}
          >
            {health.custody === 'pkcs11'
              ? `Hardware: PKCS#11 token ${health.tokenLabel ?? ''}`
              : 'Software key: NOT in a hardware token (first runs and tests only)'}
          </p>
          <dl className="history-facts">
            <dt>Key fingerprint (RFC 7638)</dt>
            <dd>
              <code className="wrap" data-testid="health-kid">
                {health.kid}
              </code>
            </dd>
            <dt>Algorithm</dt>
            <dd>{health.algorithm}</dd>
            <dt>Token present</dt>
            <dd>{yesNo(health.tokenPresent)}</dd>
            <dt>Logged in</dt>
            <dd>{yesNo(health.loggedIn)}</dd>
            <dt>Last signature</dt>
            <dd>{at(health.lastSignatureAt)}</dd>
            <dt>Rotation</dt>
            <dd data-testid="health-rotation">
              {health.rotation === 'steady'
                ? 'one active key'
                : health.rotation === 'overlap'
                  ? 'rotating: the previous key is still published'
                  : 'NO active key'}
            </dd>
            <dt>Key domain</dt>
            <dd>{health.domain}</dd>
          </dl>
          <table className="policy-table">
            <caption>Signing keys of the {health.domain} domain</caption>
            <thead>
              <tr>
                <th scope="col">Fingerprint</th>
                <th scope="col">Custody</th>
                <th scope="col">Algorithm</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">Last signature</th>
              </tr>
            </thead>
            <tbody>
              {health.keys.map((k) => (
                <tr key={k.kid}>
                  <td>
                    <code className="wrap">{k.kid}</code>
                  </td>
                  <td>{k.custody}</td>
                  <td>{k.alg}</td>
                  <td>
                    <span className={`state state-${k.status}`}>{k.status}</span>
                  </td>
                  <td>{at(k.createdAt)}</td>
                  <td>{at(k.lastSignatureAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>Audit log</h3>
          <dl className="history-facts">
            <dt>Log</dt>
            <dd>
              <code>{health.audit.origin}</code>, {health.audit.entries} entries
            </dd>
            <dt>Latest signed checkpoint</dt>
            <dd data-testid="health-checkpoint">
              {health.audit.checkpoint === null ? (
                'none yet'
              ) : (
                <>
                  {health.audit.checkpoint.treeSize} entries at {at(health.audit.checkpoint.at)}, root{' '}
                  <code className="wrap">{health.audit.checkpoint.rootHash}</code>
                </>
              )}
            </dd>
            <dt>Last verification</dt>
            <dd data-testid="health-last-verification">
              {health.audit.lastVerification === null
                ? 'not run yet'
                : `${health.audit.lastVerification.ok ? 'passed' : 'FAILED'}: ${health.audit.lastVerification.entries} entries at ${at(health.audit.lastVerification.at)}`}
            </dd>
          </dl>
          <button type="button" data-testid="health-verify" disabled={running} onClick={() => void verify()}>
            {running ? 'Verifying…' : 'Verify the audit log now'}
          </button>
          {run && (
            <p
              className={run.ok ? 'proof-ok' : 'proof-failed'}
              role={run.ok ? 'status' : 'alert'}
              data-testid="health-verify-result"
              data-ok={String(run.ok)}
            >
              {run.ok
                ? `Verified ${run.entries} entries at ${at(run.at)}: every entry matches the signed tree.`
                : `Verification found ${run.findings} problem${run.findings === 1 ? '' : 's'}: ${run.firstFinding ?? ''}`}
            </p>
          )}
        </>
      )}
    </section>
  );
}
