/**
 * One request in full, for the person at the desk: every canonical parameter (never truncated;
 * long values wrap), rendered per tool where a renderer exists (a transfer, a production change)
 * AND always as escaped raw JSON; hidden, bidirectional and look-alike characters flagged
 * (shared/text-flags.ts); the risk factors in sentences; the determining policies and what they
 * demand; who approved already and with which key; the fingerprint words co-approvers read to each
 * other (shared/fingerprint.ts). Before any ceremony the page recomputes the call digest of what it
 * shows (computeCallDigest) and refuses to sign when it is not the digest the server binds. Approve
 * (optional note) and Deny (reason required) each run one WebAuthn ceremony; progress, errors and
 * the outcome appear on the card. A button that cannot succeed is disabled with the server's
 * reason (getRequest runs the ceremony's checks as a dry run).
 */
import { useCallback, useEffect, useState } from 'react';
import { startAuthentication } from '@simplewebauthn/browser';
import type { ApprovalOutcome, ApprovalVerdict, ApproverSummary, DeskAbility, DeskRequest } from '../../../shared/bridge.js';
import type { JsonObject, JsonValue } from '../../../shared/canonical-json.js';
import { computeCallDigest } from '../../../shared/approval-token.js';
import { fingerprintWords } from '../../../shared/fingerprint.js';
import { formatAmount, isProductionChange, isTransfer, requestHeadline } from '../../../shared/request-headline.js';
import { flagParams, flagText, revealFlagged, type ParamFlag } from '../../../shared/text-flags.js';
import { approvalProgress } from '../quorum-view.js';
import type { DeskViewProps } from './desk-view.js';
import { describeError, formatDuration, formatRemaining, type ShownError } from './desk-format.js';
import { riskLevel } from './queue-view.js';
import { coalescedReload } from './coalesced-reload.js';
import { newestAnswer } from './newest-answer.js';
import { announceOwnDecision } from './own-decisions.js';

/** Plainer words for the codes a person meets at this card. */
const EXPLAIN: Partial<Record<string, string>> = {
  approver_conflicted: 'You may not decide this request.',
  agent_held_for_review: "The agent's owner is not a known person: nobody may decide its requests until an administrator sets one.",
  approver_not_eligible: 'You are not in a group this request still needs.',
  approver_already_decided: 'You have already decided this request.',
  approver_disabled: 'Your approver account is disabled.',
  credential_unknown: 'You have no registered security key. Register one in the Approvals view first.',
  request_not_pending: 'This request is no longer waiting for a decision.',
  challenge_invalid: 'The ceremony expired or was already used. Try again.',
  assertion_invalid: 'The security key response did not verify.',
  digest_mismatch: 'The call shown here does not hash to the digest the server would have you sign. Nothing was signed.',
  request_changed: 'More identical calls joined this request since it was shown. Nothing was signed: review it again.',
  NotAllowedError: 'The security key ceremony was cancelled or timed out.',
  ERROR_CEREMONY_ABORTED: 'The security key ceremony was cancelled.',
};

const CONFLICT: Record<'owner' | 'requester' | 'policy', string> = {
  owner: 'You own the agent that made this request, so you may not approve it.',
  requester: 'You are the requester of this call, so you may not decide it.',
  policy: 'The policy names you as conflicted for this request.',
};

function whyNot(ability: DeskAbility): string | undefined {
  if (ability.ok) return undefined;
  if (ability.conflict !== undefined) return CONFLICT[ability.conflict];
  return EXPLAIN[ability.code] ?? ability.message;
}

type Phase =
  | { kind: 'idle' }
  | { kind: 'starting'; verdict: ApprovalVerdict }
  | { kind: 'touch'; verdict: ApprovalVerdict }
  | { kind: 'submitting'; verdict: ApprovalVerdict }
  | { kind: 'done'; verdict: ApprovalVerdict; outcome: ApprovalOutcome }
  | { kind: 'failed'; verdict: ApprovalVerdict; error: ShownError };

/** Escaped raw JSON: every hidden, bidi or look-alike character as a `\uXXXX` escape, so nothing can hide or reorder. */
export function escapedJson(value: JsonValue): string {
  return JSON.stringify(value, null, 2).replace(/[^\n]/gu, (ch) => {
    if (flagText(ch).length === 0) return ch;
    const cp = ch.codePointAt(0) ?? 0;
    if (cp <= 0xffff) return `\\u${cp.toString(16).padStart(4, '0')}`;
    const hi = Math.floor((cp - 0x10000) / 0x400) + 0xd800;
    const lo = ((cp - 0x10000) % 0x400) + 0xdc00;
    return `\\u${hi.toString(16)}\\u${lo.toString(16)}`;
  });
}

/** A parameter value as text (strings as they are with hidden characters revealed; the rest as JSON). */
function Text({ value }: { value: JsonValue | undefined }) {
  if (value === undefined) return <span className="muted">not given</span>;
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  const flagged = flagText(text).length > 0;
  return (
    <span className={flagged ? 'param-text flagged' : 'param-text'} dir="ltr">
      {revealFlagged(text)}
    </span>
  );
}

function TransferDetails({ params, request }: { params: JsonObject; request: DeskRequest['request'] }) {
  const amount = params.amount;
  const newPayee = request.risk.factors.some((f) => f.name === 'new_recipient' || f.name === 'new_destination');
  return (
    <section className="tool-details" data-testid="transfer-details" aria-label="Transfer">
      <h3>Transfer</h3>
      <dl className="stats">
        <dt>Amount</dt>
        <dd data-testid="transfer-amount">
          <strong>{typeof amount === 'string' ? revealFlagged(formatAmount(amount)) : <Text value={amount} />}</strong>{' '}
          <Text value={params.currency} />
        </dd>
        <dt>Payee</dt>
        <dd data-testid="transfer-payee">
          <Text value={params.payee} />
          {newPayee && (
            <span className="badge badge-warn" data-testid="new-payee">
              new payee
            </span>
          )}
        </dd>
        {Object.hasOwn(params, 'account') && (
          <>
            <dt>Account</dt>
            <dd data-testid="transfer-account">
              <Text value={params.account} />
            </dd>
          </>
        )}
        {Object.hasOwn(params, 'memo') && (
          <>
            <dt>Memo</dt>
            <dd>
              <Text value={params.memo} />
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}

/** An http(s) link the approver may follow (shown as its full text); anything else is only text. */
function safeLink(value: JsonValue | undefined): string | undefined {
  if (typeof value !== 'string' || flagText(value).length > 0) return undefined;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : undefined;
  } catch {
    return undefined;
  }
}

function ChangeDetails({ params }: { params: JsonObject }) {
  const link = safeLink(params.changeUrl ?? params.link ?? params.url);
  const version = params.version ?? params.image ?? params.commit;
  return (
    <section className="tool-details" data-testid="change-details" aria-label="Production change">
      <h3>Production change</h3>
      <dl className="stats">
        <dt>Environment</dt>
        <dd data-testid="change-environment">
          <strong>
            <Text value={params.environment} />
          </strong>
        </dd>
        <dt>Service</dt>
        <dd data-testid="change-service">
          <Text value={params.service} />
        </dd>
        {version !== undefined && (
          <>
            <dt>Version</dt>
            <dd data-testid="change-version">
              <Text value={version} />
            </dd>
          </>
        )}
        <dt>Ticket</dt>
        <dd data-testid="change-ticket">
          {typeof params.changeId === 'string' && params.changeId.length > 0 ? (
            <Text value={params.changeId} />
          ) : (
            <span className="badge badge-warn">no change ticket</span>
          )}
        </dd>
        {link !== undefined && (
          <>
            <dt>Change</dt>
            <dd>
              <a href={link} target="_blank" rel="noreferrer noopener" data-testid="change-link">
                {link}
              </a>
            </dd>
          </>
        )}
        {params.diff !== undefined && (
          <>
            <dt>Diff</dt>
            <dd>
              <pre className="diff" data-testid="change-diff">
                {typeof params.diff === 'string' ? revealFlagged(params.diff) : escapedJson(params.diff)}
              </pre>
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}

function Flags({ flags }: { flags: ParamFlag[] }) {
  if (flags.length === 0) return null;
  const words = { invisible: 'an invisible character', bidi: 'a text-direction control', confusable: 'a look-alike letter' };
  return (
    <section className="banner banner-alarm desk-flags" role="alert" data-testid="param-flags">
      <strong>Check these parameters character by character:</strong>
      <ul>
        {flags.slice(0, 50).map((f, i) => (
          <li key={i} data-kind={f.kind}>
            <code>{revealFlagged(f.path)}</code> holds {words[f.kind]} ({f.codePoint}) at position {f.index + 1}.
          </li>
        ))}
      </ul>
      {flags.length > 50 && <p>…and {flags.length - 50} more.</p>}
    </section>
  );
}

export function RequestView({ bridge, session, navigate, requestId }: DeskViewProps) {
  const [shown, setShown] = useState<DeskRequest | undefined>();
  const [approvers, setApprovers] = useState<ApproverSummary[]>([]);
  const [loadError, setLoadError] = useState<ShownError | undefined>();
  const [digest, setDigest] = useState<string | undefined>();
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [note, setNote] = useState('');
  const [denyReason, setDenyReason] = useState('');
  const [now, setNow] = useState(() => Date.now());

  // The first read, a push event's reload and the ceremony's reload may answer out of order: an
  // older answer (one approval fewer, still pending) never replaces a newer one.
  const [answers] = useState(newestAnswer);
  const load = useCallback(async () => {
    if (requestId === undefined) return;
    const mayShow = answers.begin();
    try {
      const [found, list] = await Promise.all([bridge.getRequest(requestId, session.approverId), bridge.listApprovers()]);
      // The page's own digest of the call it shows: signing is refused unless it is the server's.
      const foundDigest = await computeCallDigest(found.request.tool, found.request.params);
      if (!mayShow()) return;
      setShown(found);
      setApprovers(list.approvers);
      setLoadError(undefined);
      setDigest(foundDigest);
    } catch (caught) {
      if (mayShow()) setLoadError(describeError(caught));
    }
  }, [bridge, requestId, session.approverId, answers]);

  useEffect(() => {
    void load();
    const tick = window.setInterval(() => setNow(Date.now()), 1000);
    const reload = coalescedReload(load);
    const unsubscribe = bridge.subscribe((event) => {
      if (
        event.name === 'decided' ||
        event.name === 'resync' ||
        ((event.name === 'pending' || event.name === 'approvalRecorded') && event.data.requestId === requestId)
      )
        reload.request();
    });
    return () => {
      reload.cancel();
      window.clearInterval(tick);
      unsubscribe();
    };
  }, [bridge, load, requestId]);

  if (requestId === undefined) return <p className="muted">No request chosen.</p>;
  const back = (
    <button type="button" className="secondary" data-testid="back-to-queue" onClick={() => navigate({ view: 'queue' })}>
      ← Queue
    </button>
  );
  if (shown === undefined)
    return (
      <section className="panel" data-testid="request-view">
        {back}
        {loadError ? (
          <p className="error" role="alert" data-testid="request-load-error" data-code={loadError.code}>
            Could not load request <code>{requestId}</code>: {loadError.message} <code>[{loadError.code}]</code>
          </p>
        ) : (
          <p className="muted">Loading…</p>
        )}
      </section>
    );

  const request = shown.request;
  const params = request.params;
  const headline = requestHeadline(request.tool, params);
  const flags = [...flagText(request.tool).map((f) => ({ ...f, path: '(tool)' })), ...flagParams(params)];
  const words = fingerprintWords(request.callSha256) ?? [];
  const digestOk = digest !== undefined && digest === request.callSha256;
  const progress = approvalProgress(request, approvers);
  const remaining = request.expiresAt - now;
  const busy = phase.kind === 'starting' || phase.kind === 'touch' || phase.kind === 'submitting';
  const keyOf = (approverId: string) => shown.keys.find((k) => k.approverId === approverId)?.credentialId;
  const digestRefusal = digest !== undefined && !digestOk ? (EXPLAIN.digest_mismatch ?? '') : undefined;
  const approveWhy = digestRefusal ?? whyNot(shown.approve);
  const denyWhy = digestRefusal ?? whyNot(shown.deny);
  const count = request.count ?? 1;

  const decide = async (verdict: ApprovalVerdict) => {
    const reason = verdict === 'deny' ? denyReason.trim() : note.trim();
    if (verdict === 'deny' && reason.length === 0) return;
    setPhase({ kind: 'starting', verdict });
    try {
      // Recompute now, over exactly what is on screen, and compare with what the server binds.
      const mine = await computeCallDigest(request.tool, request.params);
      if (mine !== request.callSha256) {
        setPhase({
          kind: 'failed',
          verdict,
          error: { code: 'digest_mismatch', message: `computed ${mine}, server ${request.callSha256}` },
        });
        return;
      }
      const started = await bridge.startApprovalCeremony(request.requestId, session.approverId, verdict);
      const signedFor = 1 + (started.record.followers?.length ?? 0);
      if (started.record.callSha256 !== mine) {
        setPhase({
          kind: 'failed',
          verdict,
          error: { code: 'digest_mismatch', message: `the ceremony binds ${started.record.callSha256}` },
        });
        return;
      }
      if (signedFor !== count) {
        setPhase({
          kind: 'failed',
          verdict,
          error: { code: 'request_changed', message: `${signedFor} identical calls now, not ${count}` },
        });
        return;
      }
      setPhase({ kind: 'touch', verdict });
      const response = await startAuthentication({ optionsJSON: started.options });
      setPhase({ kind: 'submitting', verdict });
      const outcome = await bridge.submitApprovalCeremony(
        request.requestId,
        session.approverId,
        response,
        reason.length > 0 ? reason : undefined,
      );
      setPhase({ kind: 'done', verdict, outcome });
      announceOwnDecision(request.requestId);
      setNote('');
      setDenyReason('');
    } catch (caught) {
      setPhase({ kind: 'failed', verdict, error: describeError(caught) });
    } finally {
      void load();
    }
  };

  return (
    <article className="panel desk-request" data-testid="request-view" data-request-id={request.requestId} aria-labelledby="request-title">
      {back}
      <header className="request-header">
        <h2 id="request-title" data-testid="request-headline">
          {revealFlagged(headline.text)}
        </h2>
        <span className={`state state-${request.state}`} data-testid="request-state">
          {request.state}
        </span>
        <span className={`risk-badge risk-${riskLevel(request.risk.score)}`}>risk {request.risk.score}</span>
        {count > 1 && (
          <span className="badge" data-testid="request-count">
            ×{count} identical calls
          </span>
        )}
      </header>
      <p>
        <code>{request.tool}</code> requested by <strong>{request.agentDisplayName || request.agentId}</strong>{' '}
        <code className="id">{request.agentId}</code>
        {request.agentOwner !== undefined && <> · owner {request.agentOwner}</>} · request <code className="id">{request.requestId}</code>
      </p>
      <p data-testid="request-expiry" className={remaining < 5 * 60_000 ? 'expiry-urgent' : undefined}>
        {request.state === 'pending' ? (
          <>
            Expires {new Date(request.expiresAt).toLocaleString()} ({formatRemaining(remaining)})
          </>
        ) : (
          <>Decided {request.decidedAt !== undefined ? new Date(request.decidedAt).toLocaleString() : ''}</>
        )}
      </p>

      <section className="fingerprint" aria-label="Fingerprint" data-testid="fingerprint-section">
        <h3>Fingerprint</h3>
        <p>
          <strong className="fingerprint-words" data-testid="fingerprint">
            {words.join(' ')}
          </strong>
        </p>
        <p className="muted">
          Read these words to your co-approvers: the same words mean the same call. Call digest{' '}
          <code className="id">{request.callSha256}</code>{' '}
          {digest === undefined ? (
            '(checking…)'
          ) : digestOk ? (
            <span data-testid="digest-check" data-ok="true">
              — this page hashed the call shown and got the same digest.
            </span>
          ) : (
            <strong className="error-text" data-testid="digest-check" data-ok="false">
              — this page hashed the call shown and got {digest}: signing is refused.
            </strong>
          )}
        </p>
      </section>

      <Flags flags={flags} />

      {isTransfer(request.tool, params) && <TransferDetails params={params} request={request} />}
      {isProductionChange(request.tool, params) && <ChangeDetails params={params} />}

      <section aria-label="Parameters">
        <h3>Parameters</h3>
        <table className="params desk-params" data-testid="request-params">
          <tbody>
            {Object.entries(params).map(([name, value]) => (
              <tr key={name} data-testid="param" data-param={name}>
                <th scope="row">
                  <code>{revealFlagged(name)}</code>
                </th>
                <td>{typeof value === 'string' ? <Text value={value} /> : <pre className="param-json">{escapedJson(value)}</pre>}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <details open>
          <summary>Raw JSON (escaped)</summary>
          <pre className="raw-json" data-testid="raw-json">
            {escapedJson({ tool: request.tool, params })}
          </pre>
        </details>
        <dl className="stats">
          <dt>Data class</dt>
          <dd>{request.dataClass}</dd>
          <dt>Jurisdiction</dt>
          <dd>{request.jurisdiction}</dd>
          <dt>Provenance</dt>
          <dd>{request.provenance.length === 0 ? 'not stated' : request.provenance.join(', ')}</dd>
        </dl>
      </section>

      <section aria-label="Risk">
        <h3>Risk: {request.risk.score} of 100</h3>
        {request.risk.factors.length === 0 ? (
          <p className="muted">No risk factor added points.</p>
        ) : (
          <ul className="reasons" data-testid="risk-factors">
            {request.risk.factors.map((f) => (
              <li key={f.name} data-factor={f.name}>
                {f.explanation} <span className="muted">(+{f.points} points)</span>
              </li>
            ))}
          </ul>
        )}
      </section>

      <section aria-label="Policies">
        <h3 data-testid="request-reasons-heading">{request.state === 'pending' ? 'Why it is held' : 'Why it was held'}</h3>
        <ul className="reasons" data-testid="request-reasons">
          {request.reasons.map((r, i) => (
            <li key={i}>{r}</li>
          ))}
        </ul>
        <p data-testid="request-obligation">
          {request.determiningPolicies.length > 0 && (
            <>
              Determined by{' '}
              {request.determiningPolicies.map((p) => (
                <code key={p} className="tool">
                  {p}
                </code>
              ))}
              , which demand{' '}
            </>
          )}
          <strong>{progress.required}</strong> distinct {progress.required === 1 ? 'person' : 'people'}
          {request.obligation.groups.length > 0 && (
            <> from {request.obligation.groups.map((list) => list.join(' or ')).join(', and another from ')}</>
          )}
          , not the agent&apos;s owner, with user verification {request.obligation.userVerification}, within{' '}
          {formatDuration(request.obligation.ttlSeconds)}.
        </p>
      </section>

      <section aria-label="Approvals so far">
        <h3>
          Approvals: <span data-testid="request-progress">{progress.text}</span>
        </h3>
        {request.approvals.length === 0 ? (
          <p className="muted">Nobody has decided yet.</p>
        ) : (
          <ul className="reasons" data-testid="request-approvals">
            {request.approvals.map((a) => (
              <li key={a.approverId} data-approver-id={a.approverId}>
                <strong>{a.displayName}</strong> {a.verdict === 'approve' ? 'approved' : 'denied'} at {new Date(a.at).toLocaleTimeString()}{' '}
                with key <code className="id">{keyOf(a.approverId) ?? 'unknown'}</code>
                {a.reason !== undefined && <>: “{revealFlagged(a.reason)}”</>}
              </li>
            ))}
          </ul>
        )}
      </section>

      <section className="decide" aria-label="Your decision" data-testid="decide">
        <h3>Your decision ({session.displayName})</h3>
        <div className="decide-row">
          <label htmlFor="approve-note">Note (optional)</label>
          <textarea
            id="approve-note"
            data-testid="approve-note"
            maxLength={500}
            value={note}
            onChange={(e) => setNote(e.target.value)}
            disabled={busy || approveWhy !== undefined}
          />
          <button
            type="button"
            data-testid="approve"
            disabled={busy || approveWhy !== undefined || !digestOk}
            aria-describedby={approveWhy !== undefined ? 'approve-why' : undefined}
            onClick={() => void decide('approve')}
          >
            Approve with security key
          </button>
          {approveWhy !== undefined && (
            <p id="approve-why" className="why-disabled" data-testid="approve-disabled-reason">
              {approveWhy}
            </p>
          )}
        </div>
        <div className="decide-row">
          <label htmlFor="deny-reason">Reason for denying (required)</label>
          <textarea
            id="deny-reason"
            data-testid="deny-reason"
            maxLength={500}
            value={denyReason}
            onChange={(e) => setDenyReason(e.target.value)}
            disabled={busy || denyWhy !== undefined}
          />
          <button
            type="button"
            className="danger"
            data-testid="deny"
            disabled={busy || denyWhy !== undefined || !digestOk || denyReason.trim().length === 0}
            aria-describedby={denyWhy !== undefined ? 'deny-why' : undefined}
            onClick={() => void decide('deny')}
          >
            Deny with security key
          </button>
          {denyWhy !== undefined && (
            <p id="deny-why" className="why-disabled" data-testid="deny-disabled-reason">
              {denyWhy}
            </p>
          )}
        </div>
        <div aria-live="polite" data-testid="ceremony-status" data-phase={phase.kind}>
          {phase.kind === 'starting' && <p>Preparing the ceremony…</p>}
          {phase.kind === 'touch' && (
            <p className="notice">
              <strong>Touch your security key to {phase.verdict === 'approve' ? 'APPROVE' : 'DENY'}</strong> ({words.join(' ')}).
            </p>
          )}
          {phase.kind === 'submitting' && <p>Checking the signature…</p>}
          {phase.kind === 'failed' && (
            <p className="error" role="alert" data-testid="request-error" data-code={phase.error.code}>
              Could not {phase.verdict}: {EXPLAIN[phase.error.code] ?? phase.error.message} <code>[{phase.error.code}]</code>
            </p>
          )}
          {phase.kind === 'done' && (
            <p
              className={`outcome outcome-${phase.outcome.state}`}
              role="status"
              data-testid="request-outcome"
              data-state={phase.outcome.state}
            >
              {phase.outcome.state === 'approved' && 'Approved: the quorum is met and the agent received its co-signed token.'}
              {phase.outcome.state === 'denied' && 'Denied: the agent was told, with your reason.'}
              {phase.outcome.state === 'pending' &&
                (phase.verdict === 'approve' ? 'Your approval is recorded; the request waits for the others.' : 'Recorded.')}
            </p>
          )}
        </div>
      </section>
    </article>
  );
}
