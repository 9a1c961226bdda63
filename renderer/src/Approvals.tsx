/**
 * The approver's view: decide as the person signed in (App.tsx's sign-in), or before sign-in
 * choose who you are to register a security key (with the single-use
 * registration code an admin issued), and decide pending
 * requests. Each request shows everything the approver is asked to vouch for (the agent, the
 * tool, every parameter, data class, jurisdiction, provenance, risk, the policy's reasons and the
 * approval obligation). Approve / Deny run one WebAuthn ceremony each: the core binds the
 * challenge to the exact call, the verdict and the approver (startApprovalCeremony), the key
 * signs it (startAuthentication), and the core verifies and records it (submitApprovalCeremony).
 * It knows only CountersignBridge; errors are shown with their code.
 */
import { useCallback, useEffect, useState } from 'react';
import type { DeskSession } from './desk/desk-view.js';
import { startAuthentication, startRegistration, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';
import {
  toCountersignError,
  type ApprovalCeremony,
  type ApprovalEntry,
  type ApprovalOutcome,
  type ApprovalRequest,
  type ApprovalVerdict,
  type ApproverSummary,
  type RegisteredKey,
} from '../../shared/bridge.js';
import type { CountersignBridge } from '../../shared/bridge-table.js';
import { isCountersignError } from '../../shared/errors.js';
import { approvalProgress, whoCanStillApprove } from './quorum-view.js';
import { coalescedReload } from './desk/coalesced-reload.js';
import { newestAnswer } from './desk/newest-answer.js';
import { announceOwnDecision } from './desk/own-decisions.js';

/** The pending list follows the bridge's push events (pending, decided); this slow refresh only catches what they do not carry (a co-approver's partial approval). */
const FALLBACK_REFRESH_MS = 30_000;

interface ShownError {
  code: string;
  message: string;
  /** What was being done, e.g. "approve request r-1". */
  during: string;
  /** A plainer explanation for this context, shown instead of EXPLAIN[code]. */
  hint?: string;
}

interface ShownOutcome {
  outcome: ApprovalOutcome;
  verdict: ApprovalVerdict;
  /** The request as it was shown when the approver decided (it may have left the list since). */
  request: ApprovalRequest;
}

interface Ceremony {
  requestId: string;
  verdict: ApprovalVerdict;
  record?: ApprovalCeremony['record'];
}

/** Codes with a plainer explanation than the server's message. */
const EXPLAIN: Partial<Record<string, string>> = {
  platform_authenticator_refused:
    'Only roaming security keys (USB, NFC or Bluetooth) are accepted, not built-in authenticators such as Windows Hello or Touch ID.',
  approver_conflicted:
    'You may not decide this request: you own the agent, you are its requester, or the policy names you. Someone else has to.',
  agent_held_for_review: "The agent's owner is not a known person, so nobody may decide its requests until an administrator sets one.",
  approver_not_eligible: 'You are not in a group this request still needs.',
  approver_already_decided: 'You have already decided this request.',
  credential_unknown: 'No registered security key of yours answered. Register a key first.',
  request_not_pending: 'This request is no longer waiting for approval.',
  challenge_invalid: 'The ceremony expired or was already used. Try again.',
  assertion_invalid: 'The security key response did not verify.',
  attestation_refused: 'This kind of security key is not accepted here.',
  not_authenticated: 'The session secret was not accepted (the server may have restarted). Open the new link it printed.',
  ERROR_CEREMONY_ABORTED: 'The security key ceremony was cancelled.',
  NotAllowedError: 'The security key ceremony was cancelled or timed out.',
  ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED: 'This security key is already registered to you.',
};

const REGISTRATION_CODE_REFUSED =
  'The registration code is unknown, already used, expired or for someone else. Ask an admin for a new one.';

function describeError(caught: unknown, during: string): ShownError {
  if (isCountersignError(caught)) return { code: caught.code, message: caught.message, during };
  // @simplewebauthn/browser's WebAuthnError carries a code; a bare DOMException only its name.
  if (caught instanceof Error && 'code' in caught && typeof caught.code === 'string' && /^ERROR_[A-Z_]{1,80}$/.test(caught.code)) {
    return { code: caught.code, message: caught.message, during };
  }
  if (caught instanceof DOMException) return { code: caught.name, message: caught.message, during };
  const error = toCountersignError(caught);
  return { code: error.code, message: error.message, during };
}

const CONFLICT_NOTES: Record<'owner' | 'requester' | 'policy' | 'owner_unresolved', string> = {
  owner: 'You own the agent that made this request: Countersign will not count your decision.',
  requester: 'You are the requester of this call: Countersign will not count your decision.',
  policy: 'The policy names you as conflicted for this request: Countersign will not count your decision.',
  owner_unresolved: "The agent's owner is not a known person (the agent is held for review): nobody may decide this request.",
};

/**
 * Why the core refuses this approver's decision, if it does. The core resolves owners, requesters
 * and policy-named people through the directory's aliases and sends approver ids: compared
 * exactly here, never re-derived from the owner's text (an email alias would slip through).
 */
function conflictOf(request: ApprovalRequest, approverId: string): keyof typeof CONFLICT_NOTES | undefined {
  if (request.ownerUnresolved === true) return 'owner_unresolved';
  return request.excludedApprovers?.find((e) => e.approverId === approverId)?.reason;
}

// Characters that hide or reorder text: shown escaped so a payee name cannot pretend to be another.
const HIDDEN_CHARACTERS =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]/gu;

function revealHidden(text: string): { text: string; hidden: boolean } {
  let hidden = false;
  const shown = text.replace(HIDDEN_CHARACTERS, (ch) => {
    hidden = true;
    return `\\u{${(ch.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}}`;
  });
  return { text: shown, hidden };
}

/** "3 pending", or "2 pending (7 calls)" when identical calls were merged into one prompt. */
function pendingSummary(pending: ApprovalRequest[]): string {
  const calls = pending.reduce((sum, r) => sum + (r.count ?? 1), 0);
  return calls === pending.length ? `${pending.length} pending` : `${pending.length} pending (${calls} calls)`;
}

function formatTime(ms: number): string {
  return new Date(ms).toLocaleString();
}

function formatRemaining(ms: number): string {
  if (ms <= 0) return 'expired';
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(minutes / 60);
  if (hours > 0) return `${hours} h ${minutes % 60} min left`;
  if (minutes > 0) return `${minutes} min ${seconds % 60} s left`;
  return `${seconds} s left`;
}

function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0 && seconds >= 3600) return `${seconds / 3600} h`;
  if (seconds % 60 === 0 && seconds >= 60) return `${seconds / 60} min`;
  return `${seconds} s`;
}

export function ApprovalsView({ bridge, session }: { bridge: CountersignBridge; session?: DeskSession | undefined }) {
  const [approvers, setApprovers] = useState<ApproverSummary[] | undefined>();
  const [chosenId, setApproverId] = useState('');
  // Signed in, the desk decides as that person only (the server refuses anyone else); before
  // sign-in the choice serves key registration, which a registration code authorises.
  const approverId = session?.approverId ?? chosenId;
  const [pending, setPending] = useState<ApprovalRequest[] | undefined>();
  const [loadedAt, setLoadedAt] = useState<number | undefined>();
  const [loadError, setLoadError] = useState<ShownError | undefined>();
  const [error, setError] = useState<ShownError | undefined>();
  const [busy, setBusy] = useState<string | undefined>();
  const [ceremony, setCeremony] = useState<Ceremony | undefined>();
  const [registered, setRegistered] = useState<RegisteredKey | undefined>();
  const [registrationCode, setRegistrationCode] = useState('');
  const [outcome, setOutcome] = useState<ShownOutcome | undefined>();
  const [denyFor, setDenyFor] = useState<string | undefined>();
  const [denyReason, setDenyReason] = useState('');

  const loadApprovers = useCallback(async () => {
    try {
      setApprovers((await bridge.listApprovers()).approvers);
      setLoadError(undefined);
    } catch (caught) {
      setLoadError(describeError(caught, 'load the approvers'));
    }
  }, [bridge]);

  // A push event's reload, the fallback timer, the Refresh button and the end of a ceremony each
  // read: an older read answering after a newer one would take back a card that just arrived (or
  // bring back a decided one) until the next read.
  const [pendingAnswers] = useState(newestAnswer);
  const loadPending = useCallback(async () => {
    const mayShow = pendingAnswers.begin();
    try {
      const { pending: list } = await bridge.listPendingApprovals();
      if (!mayShow()) return;
      setPending(list);
      setLoadedAt(Date.now());
      setLoadError(undefined);
    } catch (caught) {
      if (mayShow()) setLoadError(describeError(caught, 'load the pending requests'));
    }
  }, [bridge, pendingAnswers]);

  useEffect(() => {
    void loadApprovers();
    void loadPending();
    const timer = window.setInterval(() => void loadPending(), FALLBACK_REFRESH_MS);
    const reload = coalescedReload(loadPending);
    const unsubscribe = bridge.subscribe((event) => {
      if (event.name !== 'adminProposal') reload.request();
    });
    return () => {
      reload.cancel();
      window.clearInterval(timer);
      unsubscribe();
    };
  }, [bridge, loadApprovers, loadPending]);

  const me = approvers?.find((a) => a.id === approverId);

  const chooseApprover = (id: string) => {
    setApproverId(id);
    setRegistered(undefined);
    setRegistrationCode('');
    setOutcome(undefined);
    setError(undefined);
    setDenyFor(undefined);
  };

  const registerKey = async () => {
    const code = registrationCode.trim();
    if (me === undefined || code.length === 0) return;
    setBusy('register');
    setError(undefined);
    setRegistered(undefined);
    let started = false;
    try {
      const options = await bridge.beginApproverRegistration(me.id, code);
      started = true;
      // The bridge checked the members a ceremony needs; the browser checks the rest.
      const response = await startRegistration({ optionsJSON: options as unknown as PublicKeyCredentialCreationOptionsJSON });
      setRegistered(await bridge.finishApproverRegistration(me.id, response));
      // The code is spent with the key it registered (a refused or cancelled attempt keeps it valid).
      setRegistrationCode('');
    } catch (caught) {
      const shown = describeError(caught, `register a security key for ${me.displayName}`);
      if (!started && shown.code === 'challenge_invalid') shown.hint = REGISTRATION_CODE_REFUSED;
      else if (started)
        shown.hint = `${EXPLAIN[shown.code] ?? ''} The registration code is still valid: try again with a security key.`.trim();
      setError(shown);
    } finally {
      setBusy(undefined);
    }
  };

  const decide = async (request: ApprovalRequest, verdict: ApprovalVerdict, reason?: string) => {
    if (me === undefined) return;
    setBusy(request.requestId);
    setError(undefined);
    setOutcome(undefined);
    setCeremony({ requestId: request.requestId, verdict });
    try {
      const started = await bridge.startApprovalCeremony(request.requestId, me.id, verdict);
      // The ceremony seals the group of identical calls: if more joined since this card was
      // shown, the key would sign for calls the approver never saw. Stop before the tap; the
      // refreshed card shows the sealed group, and deciding again signs exactly that.
      const signedFor = 1 + (started.record.followers?.length ?? 0);
      if (signedFor !== (request.count ?? 1)) {
        setError({
          code: 'request_changed',
          during: `${verdict} request ${request.requestId}`,
          message: `${signedFor} identical calls are now waiting in this group, not ${request.count ?? 1} as shown. Nothing was signed: review the card again, then decide.`,
        });
        return;
      }
      setCeremony({ requestId: request.requestId, verdict, record: started.record });
      const response = await startAuthentication({ optionsJSON: started.options });
      const result = await bridge.submitApprovalCeremony(request.requestId, me.id, response, reason);
      setOutcome({ outcome: result, verdict, request });
      announceOwnDecision(request.requestId);
      setDenyFor(undefined);
      setDenyReason('');
    } catch (caught) {
      setError(describeError(caught, `${verdict} request ${request.requestId}`));
    } finally {
      setBusy(undefined);
      setCeremony(undefined);
      void loadPending();
    }
  };

  return (
    <section className="approvals" data-testid="approvals-view">
      <section className="panel">
        <h2>Who is approving?</h2>
        {approvers === undefined ? (
          <p className="muted">Loading approvers…</p>
        ) : approvers.length === 0 ? (
          <p className="muted">
            No approvers are configured. An administrator adds them (<code>countersign approvers add</code>).
          </p>
        ) : (
          <div className="approver-picker">
            <label htmlFor="approver-select">I am</label>
            <select
              id="approver-select"
              data-testid="approver-select"
              value={approverId}
              onChange={(e) => chooseApprover(e.target.value)}
              disabled={busy !== undefined || session !== undefined}
            >
              <option value="">— choose yourself —</option>
              {approvers.map((a) => (
                <option key={a.id} value={a.id} disabled={a.status !== 'active'}>
                  {a.displayName} ({a.id}){a.groups.length > 0 ? ` · ${a.groups.join(', ')}` : ''}
                  {a.virtual ? ' · virtual' : ''}
                  {a.status !== 'active' ? ' · disabled' : ''}
                </option>
              ))}
            </select>
            <button
              type="button"
              className="secondary"
              data-testid="refresh-approvers"
              onClick={() => void loadApprovers()}
              disabled={busy !== undefined}
            >
              Reload
            </button>
          </div>
        )}
        {me && (
          <div className="me" data-testid="current-approver" data-approver-id={me.id}>
            <p>
              Deciding as <strong>{me.displayName}</strong> <code className="id">{me.id}</code>
              {' · '}groups:{' '}
              {me.groups.length === 0 ? (
                <span className="muted">none</span>
              ) : (
                me.groups.map((g) => (
                  <code key={g} className="tool">
                    {g}
                  </code>
                ))
              )}
              {me.virtual && <span className="badge badge-test">virtual</span>}
            </p>
            <form
              className="register-form"
              data-testid="register-form"
              onSubmit={(e) => {
                e.preventDefault();
                void registerKey();
              }}
            >
              <label htmlFor="registration-code">Registration code</label>
              <input
                id="registration-code"
                type="text"
                data-testid="registration-code"
                autoComplete="off"
                spellCheck={false}
                maxLength={128}
                value={registrationCode}
                onChange={(e) => setRegistrationCode(e.target.value)}
                disabled={busy !== undefined}
              />
              <button type="submit" data-testid="register-key" disabled={busy !== undefined || registrationCode.trim().length === 0}>
                {busy === 'register' ? 'Touch your security key…' : 'Register a security key'}
              </button>
            </form>
            <p className="muted" data-testid="registration-code-help">
              An admin gives you a single-use code for each key (<code>countersign approvers add</code> or{' '}
              <code>countersign approvers registration-code {me.id}</code>, or the admin action).
            </p>
            {registered && (
              <p
                className="success"
                role="status"
                data-testid="registration-result"
                data-credential-id={registered.credentialId}
                data-aaguid={registered.aaguid}
              >
                Security key registered for {me.displayName}: credential{' '}
                <code title={registered.credentialId}>{shorten(registered.credentialId, 16)}</code>, authenticator model (AAGUID){' '}
                <code>{registered.aaguid}</code>.
              </p>
            )}
          </div>
        )}
      </section>

      {ceremony && (
        <section className="notice ceremony" role="status" data-testid="ceremony-in-progress" data-request-id={ceremony.requestId}>
          <strong>
            Touch your security key to {ceremony.verdict === 'approve' ? 'APPROVE' : 'DENY'} request <code>{ceremony.requestId}</code>.
          </strong>
          {ceremony.record && (
            <p className="muted">
              Your key signs over: call digest <code>{ceremony.record.callSha256}</code>, policy{' '}
              <code>{shorten(ceremony.record.policyHash, 19)}</code>, verdict <code>{ceremony.record.verdict}</code>, approver{' '}
              <code>{ceremony.record.approverId}</code>, valid until {formatTime(ceremony.record.expiresAt)}.
              {ceremony.record.followers !== undefined && (
                <span data-testid="ceremony-followers">
                  {' '}
                  It also signs for the {ceremony.record.followers.length} identical{' '}
                  {ceremony.record.followers.length === 1 ? 'call' : 'calls'}{' '}
                  {ceremony.record.followers.map((id) => (
                    <code key={id} className="id">
                      {id}
                    </code>
                  ))}
                  .
                </span>
              )}
            </p>
          )}
        </section>
      )}

      {error && (
        <section className="error" role="alert" data-testid="approval-error" data-code={error.code}>
          <strong>Could not {error.during}.</strong> {error.hint ?? EXPLAIN[error.code] ?? ''}{' '}
          <span className="muted">{error.message}</span> <code data-testid="error-code">[{error.code}]</code>
        </section>
      )}

      {outcome && <OutcomePanel shown={outcome} approvers={approvers ?? []} />}

      <section className="panel">
        <div className="panel-title">
          <h2>Waiting for approval</h2>
          <span className="muted" data-testid="pending-count">
            {pending === undefined ? '' : pendingSummary(pending)}
          </span>
          <button type="button" className="secondary" data-testid="refresh-pending" onClick={() => void loadPending()}>
            Refresh
          </button>
          {loadedAt !== undefined && <span className="muted">updated {new Date(loadedAt).toLocaleTimeString()}</span>}
        </div>
        {loadError && (
          <p className="error" role="alert" data-testid="load-error" data-code={loadError.code}>
            Could not {loadError.during}: {EXPLAIN[loadError.code] ?? loadError.message} <code>[{loadError.code}]</code>
          </p>
        )}
        {!me && <p className="muted">Choose who you are above to approve or deny.</p>}
        {pending === undefined ? (
          !loadError && <p className="muted">Loading…</p>
        ) : pending.length === 0 ? (
          <p className="muted" data-testid="no-pending">
            Nothing is waiting for approval.
          </p>
        ) : (
          <div className="pending-list" data-testid="pending-list">
            {pending.map((request) => (
              <PendingRequestCard
                key={request.requestId}
                request={request}
                approver={me}
                approvers={approvers ?? []}
                busy={busy}
                denying={denyFor === request.requestId}
                denyReason={denyReason}
                onApprove={() => void decide(request, 'approve')}
                onStartDeny={() => {
                  setDenyFor(request.requestId);
                  setDenyReason('');
                }}
                onDenyReason={setDenyReason}
                onCancelDeny={() => setDenyFor(undefined)}
                onConfirmDeny={() => void decide(request, 'deny', denyReason.trim())}
              />
            ))}
          </div>
        )}
      </section>
    </section>
  );
}

function OutcomePanel({ shown, approvers }: { shown: ShownOutcome; approvers: readonly ApproverSummary[] }) {
  const { outcome, request, verdict } = shown;
  const progress = approvalProgress({ ...request, approvals: outcome.approvalsSoFar }, approvers);
  return (
    <section
      className={`panel outcome outcome-${outcome.state}`}
      role="status"
      data-testid="ceremony-outcome"
      data-request-id={outcome.requestId}
      data-state={outcome.state}
    >
      <h2>
        {outcome.state === 'approved' && 'Approved'}
        {outcome.state === 'denied' && 'Denied'}
        {outcome.state === 'pending' && (verdict === 'approve' ? 'Your approval is recorded' : 'Recorded')}{' '}
        <span className={`state state-${outcome.state}`} data-testid="outcome-state">
          {outcome.state}
        </span>
      </h2>
      <p>
        <code>{request.tool}</code> by <strong>{request.agentDisplayName || request.agentId}</strong>, request{' '}
        <code className="id">{outcome.requestId}</code>.
      </p>
      {outcome.state === 'pending' && <p>{progress.text} approvals so far; the request waits for the others.</p>}
      {outcome.state === 'approved' && (
        <p>
          The quorum is met: a co-signed approval token was issued to the agent
          {outcome.tokenExpiresAt !== undefined && <> (valid until {formatTime(outcome.tokenExpiresAt)})</>}.
        </p>
      )}
      {outcome.state === 'denied' && <p>The agent was told the call is denied.</p>}
      {outcome.reasons.length > 0 && (
        <ul className="reasons" data-testid="outcome-reasons">
          {outcome.reasons.map((r, i) => (
            <li key={i}>{revealHidden(r).text}</li>
          ))}
        </ul>
      )}
      <ApprovalEntries entries={outcome.approvalsSoFar} />
    </section>
  );
}

interface CardProps {
  request: ApprovalRequest;
  approver: ApproverSummary | undefined;
  /** Every approver (their groups say whose approval counts and who can still approve). */
  approvers: readonly ApproverSummary[];
  busy: string | undefined;
  denying: boolean;
  denyReason: string;
  onApprove: () => void;
  onStartDeny: () => void;
  onDenyReason: (reason: string) => void;
  onCancelDeny: () => void;
  onConfirmDeny: () => void;
}

function PendingRequestCard({
  request,
  approver,
  approvers,
  busy,
  denying,
  denyReason,
  onApprove,
  onStartDeny,
  onDenyReason,
  onCancelDeny,
  onConfirmDeny,
}: CardProps) {
  const progress = approvalProgress(request, approvers);
  const required = progress.required;
  const canStillApprove = whoCanStillApprove(request, approvers);
  const conflict = approver === undefined ? undefined : conflictOf(request, approver.id);
  const conflicted = conflict !== undefined;
  // This person's own recorded decision: the card then says so and offers no Approve or Deny.
  const mine = approver === undefined ? undefined : request.approvals.find((e) => e.approverId === approver.id);
  const disabled = approver === undefined || busy !== undefined;
  const paramEntries = Object.entries(request.params);
  const remaining = request.expiresAt - Date.now();
  const count = request.count ?? 1;
  return (
    <article className="request" data-testid="pending-request" data-request-id={request.requestId}>
      <header className="request-header">
        <h3>
          <code data-testid="request-tool">{request.tool}</code> requested by{' '}
          <strong data-testid="request-agent">{request.agentDisplayName || request.agentId}</strong>
        </h3>
        {count > 1 && (
          <span
            className="badge"
            data-testid="request-count"
            title="The agent made this exact call this many times; your decision answers each of them"
          >
            ×{count} identical calls
          </span>
        )}
        <span className={`state state-${request.state}`}>{request.state}</span>
      </header>
      <dl className="stats request-details">
        <dt>Agent</dt>
        <dd>
          {request.agentDisplayName && <>{request.agentDisplayName} </>}
          <code className="id">{request.agentId}</code>
          {' · '}owner{' '}
          {request.agentOwner === undefined ? (
            <span className="muted">unknown</span>
          ) : (
            <span data-testid="request-owner">{request.agentOwner}</span>
          )}
        </dd>
        <dt>Tool</dt>
        <dd>
          <code>{request.tool}</code>
        </dd>
        <dt>Parameters</dt>
        <dd>
          {paramEntries.length === 0 ? (
            <span className="muted">none</span>
          ) : (
            <table className="params" data-testid="request-params">
              <tbody>
                {paramEntries.map(([name, value]) => (
                  <tr key={name} data-testid="param" data-param={name}>
                    <th scope="row">
                      <code>{revealHidden(name).text}</code>
                    </th>
                    <td>
                      <ParamValue value={value} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </dd>
        <dt>Data class</dt>
        <dd data-testid="request-data-class">{request.dataClass}</dd>
        <dt>Jurisdiction</dt>
        <dd data-testid="request-jurisdiction">{request.jurisdiction}</dd>
        <dt>Provenance</dt>
        <dd data-testid="request-provenance">
          {request.provenance.length === 0 ? (
            <span className="muted">not stated</span>
          ) : (
            request.provenance.map((p) => (
              <code key={p} className="tool">
                {p}
              </code>
            ))
          )}
        </dd>
        <dt>Risk</dt>
        <dd data-testid="request-risk">
          score <strong data-testid="risk-score">{request.risk.score}</strong>/100
          {request.risk.factors.length > 0 && (
            <ul className="reasons" data-testid="risk-factors">
              {request.risk.factors.map((f) => (
                <li key={f.name} data-factor={f.name}>
                  {f.explanation}{' '}
                  <span className="muted">
                    (<code>{f.name}</code>, +{f.points})
                  </span>
                </li>
              ))}
            </ul>
          )}
        </dd>
        <dt>{request.state === 'pending' ? 'Why it is held' : 'Why it was held'}</dt>
        <dd>
          {request.reasons.length === 0 ? (
            <span className="muted">no reasons given</span>
          ) : (
            <ul className="reasons" data-testid="request-reasons">
              {request.reasons.map((r, i) => (
                <li key={i}>{r}</li>
              ))}
            </ul>
          )}
          {request.determiningPolicies.length > 0 && (
            <span className="muted">
              policies:{' '}
              {request.determiningPolicies.map((p) => (
                <code key={p} className="tool">
                  {p}
                </code>
              ))}
            </span>
          )}
        </dd>
        <dt>Approval needed</dt>
        <dd data-testid="request-obligation">
          <strong data-testid="approvals-needed">{required}</strong> distinct {required === 1 ? 'person' : 'people'}
          {request.obligation.groups.length > 0 && (
            <>
              {', '}
              {request.obligation.groups.map((list, i) => (
                <span key={i} className="group-list" data-testid="required-groups">
                  {i > 0 && ' and another from '}
                  {i === 0 && 'from '}
                  {list.map((g, j) => (
                    <span key={g}>
                      {j > 0 && ' or '}
                      <code className="tool">{g}</code>
                    </span>
                  ))}
                </span>
              ))}
            </>
          )}
          {'; '}not the agent&apos;s owner; user verification {request.obligation.userVerification}; window{' '}
          {formatDuration(request.obligation.ttlSeconds)}.
          <br />
          Expires {formatTime(request.expiresAt)}{' '}
          <span className="muted" data-testid="request-expiry">
            ({formatRemaining(remaining)})
          </span>
        </dd>
        <dt>Approvals so far</dt>
        <dd>
          <span data-testid="approvals-so-far">{progress.text}</span>
          {!progress.satisfied && (
            <span className="muted" data-testid="still-needed">
              {'; '}
              {progress.stillNeeded} more {progress.stillNeeded === 1 ? 'person' : 'people'}
              {progress.openGroups.length > 0 && (
                <>
                  {', including '}
                  {progress.openGroups.map((list, i) => (
                    <span key={i}>
                      {i > 0 && ' and '}one from{' '}
                      {list.map((g, j) => (
                        <span key={g}>
                          {j > 0 && ' or '}
                          <code className="tool">{g}</code>
                        </span>
                      ))}
                    </span>
                  ))}
                </>
              )}
              {approvers.length > 0 && (
                <>
                  {'; '}can still approve:{' '}
                  {canStillApprove.length === 0 ? 'nobody listed' : canStillApprove.map((a) => a.displayName).join(', ')}
                </>
              )}
            </span>
          )}
          <ApprovalEntries entries={request.approvals} />
        </dd>
        <dt>Submitted</dt>
        <dd>{formatTime(request.createdAt)}</dd>
        <dt>Request</dt>
        <dd>
          <code className="id">{request.requestId}</code>
          {(request.followers ?? []).length > 0 && (
            <>
              <br />
              <span data-testid="request-followers">
                and {request.followers!.length} identical {request.followers!.length === 1 ? 'call' : 'calls'}, each answered with its own
                token:{' '}
                {request.followers!.map((id) => (
                  <code key={id} className="id">
                    {id}
                  </code>
                ))}
              </span>
            </>
          )}
          <br />
          call digest{' '}
          <code className="id" title="SHA-256 of the canonical call (what the token and your key are bound to)">
            {request.callSha256}
          </code>
          <br />
          policy <code className="id">{request.policyHash}</code>
        </dd>
      </dl>
      {conflicted && (
        <p className="banner banner-warning" data-testid="conflict-note" data-reason={conflict}>
          {CONFLICT_NOTES[conflict ?? 'owner']}
        </p>
      )}
      {mine !== undefined ? (
        <p className="decided-by-me" data-testid="already-decided" data-verdict={mine.verdict}>
          <span className={`state state-${mine.verdict === 'approve' ? 'approved' : 'denied'}`}>
            {mine.verdict === 'approve' ? 'approved' : 'denied'}
          </span>{' '}
          by you at {formatTime(mine.at)}. Your decision is recorded; nothing more is asked of you here.
        </p>
      ) : (
        <div className="actions">
          <button type="button" className="approve" data-testid="approve" onClick={onApprove} disabled={disabled}>
            {busy === request.requestId ? 'Working…' : 'Approve'}
          </button>
          {!denying && (
            <button type="button" className="deny" data-testid="deny" onClick={onStartDeny} disabled={disabled}>
              Deny…
            </button>
          )}
        </div>
      )}
      {denying && mine === undefined && (
        <form
          className="deny-form"
          data-testid="deny-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (denyReason.trim().length > 0) onConfirmDeny();
          }}
        >
          <label htmlFor={`deny-reason-${request.requestId}`}>Why are you denying this call? (recorded and sent to the agent)</label>
          <input
            id={`deny-reason-${request.requestId}`}
            type="text"
            data-testid="deny-reason"
            maxLength={500}
            value={denyReason}
            onChange={(e) => onDenyReason(e.target.value)}
            disabled={busy !== undefined}
            autoFocus
          />
          <button type="submit" className="deny" data-testid="confirm-deny" disabled={disabled || denyReason.trim().length === 0}>
            {busy === request.requestId ? 'Working…' : 'Deny with my security key'}
          </button>
          <button type="button" className="secondary" data-testid="cancel-deny" onClick={onCancelDeny} disabled={busy !== undefined}>
            Cancel
          </button>
        </form>
      )}
    </article>
  );
}

function ApprovalEntries({ entries }: { entries: ApprovalEntry[] }) {
  if (entries.length === 0) return null;
  return (
    <ul className="approvals-list" data-testid="approval-entries">
      {entries.map((e) => (
        <li key={e.approverId} data-approver-id={e.approverId} data-verdict={e.verdict}>
          <span className={`state state-${e.verdict === 'approve' ? 'approved' : 'denied'}`}>
            {e.verdict === 'approve' ? 'approved' : 'denied'}
          </span>{' '}
          {e.displayName} <code className="id">{e.approverId}</code> at {formatTime(e.at)}
          {e.reason !== undefined && <>: “{revealHidden(e.reason).text}”</>}
        </li>
      ))}
    </ul>
  );
}

/** One parameter value, exactly: strings verbatim (hidden characters escaped), the rest as JSON. */
function ParamValue({ value }: { value: unknown }) {
  if (typeof value === 'string') {
    const { text, hidden } = revealHidden(value);
    return (
      <>
        <code className="param-string">{text}</code>
        {hidden && <span className="hidden-warning"> contains invisible or direction-changing characters (shown escaped)</span>}
      </>
    );
  }
  if (value === null || typeof value !== 'object') return <code>{JSON.stringify(value)}</code>;
  return <pre className="param-json">{revealHidden(JSON.stringify(value, null, 2)).text}</pre>;
}

function shorten(value: string, length: number): string {
  return value.length > length ? `${value.slice(0, length)}…` : value;
}
