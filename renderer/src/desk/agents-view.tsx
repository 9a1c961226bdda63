/**
 * Agents (admin): the enrolled agents with their keys, enrollment from the agent's enrollment
 * request file (dropped or picked) with the scope the admin decides, key rotation from a new
 * request file, and revocation with a reason. Every change is an admin action confirmed with the
 * admin's security-key tap (admin-ceremony.ts); the core checks the scope against the policy set.
 */
import { useCallback, useContext, useEffect, useId, useState } from 'react';
import type { AgentSummary } from '../../../shared/bridge.js';
import type { AdminOutcome } from '../../../shared/bridge-admin.js';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import type { EnrollmentRequest } from '../../../shared/enrollment.js';
import type { DeskViewProps } from './desk-view.js';
import { EnrollmentDrop } from './enrollment-file.js';
import { outcomeText, runAdminAction, shownError, type ShownError } from './admin-ceremony.js';
import { AdminProposals, AdminProposalsContext } from './admin-proposals.js';
import { StatusLine, type Status } from './status-line.js';

/** "a, b ,c" -> ["a","b","c"] (empty entries dropped). */
const splitList = (text: string): string[] =>
  text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);

/** The enrollment form: a request file plus the scope; used by the Agents view and the first run. */
export function EnrollAgentForm({
  bridge,
  adminId,
  defaultOwner,
  onEnrolled,
  onProposed,
}: {
  bridge: CountersignBridge;
  adminId: string;
  defaultOwner: string;
  onEnrolled: (agentId: string) => void;
  /** Under the admin quorum the tap proposes; a second admin's tap enrolls. */
  onProposed?: (() => void) | undefined;
}) {
  const ids = useId();
  const [request, setRequest] = useState<{ request: EnrollmentRequest; fileName: string } | undefined>();
  const [owner, setOwner] = useState(defaultOwner);
  const [group, setGroup] = useState('');
  const [tools, setTools] = useState('');
  const [dataClasses, setDataClasses] = useState('');
  const [jurisdictions, setJurisdictions] = useState('');
  const [status, setStatus] = useState<Status | undefined>();
  const ready = request !== undefined && owner.trim() && group.trim() && splitList(tools).length > 0;

  const enroll = async () => {
    if (request === undefined) return;
    setStatus({ kind: 'working', text: 'Touch your security key to confirm the enrollment…' });
    try {
      const outcome = await runAdminAction(bridge, adminId, {
        kind: 'agent.enroll',
        request: request.request,
        scope: {
          owner: owner.trim(),
          group: group.trim(),
          allowedTools: splitList(tools),
          dataClasses: splitList(dataClasses),
          jurisdictions: splitList(jurisdictions),
        },
      });
      setStatus({ kind: 'done', text: outcomeText(outcome, `Enrolled ${request.request.payload.agentId}.`) });
      if (outcome.proposal === undefined) onEnrolled(request.request.payload.agentId);
      else onProposed?.();
      setRequest(undefined);
    } catch (caught) {
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };

  return (
    <form
      className="admin-form"
      aria-label="Enroll an agent"
      onSubmit={(e) => {
        e.preventDefault();
        void enroll();
      }}
    >
      <EnrollmentDrop
        label="Choose an enrollment request file"
        testId="enroll-drop"
        onRequest={(r, fileName) => {
          setRequest({ request: r, fileName });
          setStatus(undefined);
        }}
      />
      {request && (
        <p data-testid="enroll-request" className="muted">
          Agent <strong>{request.request.payload.agentId}</strong> ({request.request.payload.displayName}), key{' '}
          <code>{request.request.payload.publicJwk.kid.slice(0, 16)}…</code> {request.request.payload.publicJwk.alg}, from{' '}
          {request.fileName}.
        </p>
      )}
      <div className="field-grid">
        <label htmlFor={`${ids}-owner`}>Owner (a person)</label>
        <input id={`${ids}-owner`} data-testid="enroll-owner" value={owner} onChange={(e) => setOwner(e.target.value)} />
        <label htmlFor={`${ids}-group`}>Agent group</label>
        <input id={`${ids}-group`} data-testid="enroll-group" value={group} onChange={(e) => setGroup(e.target.value)} />
        <label htmlFor={`${ids}-tools`}>Allowed tools (comma separated)</label>
        <input id={`${ids}-tools`} data-testid="enroll-tools" value={tools} onChange={(e) => setTools(e.target.value)} />
        <label htmlFor={`${ids}-data`}>Data classes</label>
        <input id={`${ids}-data`} data-testid="enroll-data-classes" value={dataClasses} onChange={(e) => setDataClasses(e.target.value)} />
        <label htmlFor={`${ids}-jur`}>Jurisdictions</label>
        <input
          id={`${ids}-jur`}
          data-testid="enroll-jurisdictions"
          value={jurisdictions}
          onChange={(e) => setJurisdictions(e.target.value)}
        />
      </div>
      <button type="submit" data-testid="enroll-submit" disabled={!ready || status?.kind === 'working'}>
        Enroll (key tap)
      </button>
      <StatusLine status={status} testId="enroll-status" />
    </form>
  );
}

function AgentCard({
  agent,
  bridge,
  adminId,
  onChanged,
}: {
  agent: AgentSummary;
  bridge: CountersignBridge;
  adminId: string;
  onChanged: () => void;
}) {
  const ids = useId();
  const [reason, setReason] = useState('');
  const [status, setStatus] = useState<Status | undefined>();
  const act = async (what: string, run: () => Promise<AdminOutcome>) => {
    setStatus({ kind: 'working', text: `Touch your security key to confirm: ${what}…` });
    try {
      const outcome = await run();
      setStatus({ kind: 'done', text: outcomeText(outcome, `Done: ${what}.`) });
      onChanged();
    } catch (caught) {
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };
  const revoked = agent.status === 'revoked';
  return (
    <li className="admin-card" data-testid="agent-card" data-agent-id={agent.id} data-status={agent.status}>
      <h3>
        {agent.displayName || agent.id} <span className={`state state-${agent.status}`}>{agent.status}</span>
      </h3>
      <dl className="stats">
        <dt>Id</dt>
        <dd>
          <code className="id">{agent.id}</code>
        </dd>
        <dt>Owner</dt>
        <dd>{agent.owner}</dd>
        <dt>Group</dt>
        <dd>{agent.group}</dd>
        <dt>Tools</dt>
        <dd>
          {agent.allowedTools.map((t) => (
            <code key={t} className="tool">
              {t}
            </code>
          ))}
        </dd>
        <dt>Keys</dt>
        <dd>
          <ul className="keys">
            {agent.keys.map((k) => (
              <li key={k.kid}>
                <code title={k.kid}>{k.kid.slice(0, 12)}…</code> {k.alg} <span className={`state state-${k.status}`}>{k.status}</span>
              </li>
            ))}
          </ul>
        </dd>
      </dl>
      {!revoked && (
        <>
          <details>
            <summary>Rotate to a new key</summary>
            <EnrollmentDrop
              label="Choose the new key's enrollment request"
              testId="rotate-drop"
              onRequest={(request) =>
                void act(`rotate ${agent.id} to a new key`, () =>
                  runAdminAction(bridge, adminId, { kind: 'agent.rotate', id: agent.id, request, overlapHours: 24 }),
                )
              }
            />
          </details>
          <form
            className="inline-form"
            aria-label={`Revoke ${agent.id}`}
            onSubmit={(e) => {
              e.preventDefault();
              void act(`revoke ${agent.id}`, () =>
                runAdminAction(bridge, adminId, { kind: 'agent.revoke', id: agent.id, reason: reason.trim() }),
              );
            }}
          >
            <label htmlFor={`${ids}-reason`}>Reason for revoking</label>
            <input id={`${ids}-reason`} data-testid="revoke-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
            <button
              type="submit"
              className="danger"
              data-testid="revoke-agent"
              disabled={reason.trim().length === 0 || status?.kind === 'working'}
            >
              Revoke (key tap)
            </button>
          </form>
        </>
      )}
      <StatusLine status={status} testId="agent-status" />
    </li>
  );
}

export function AgentsView({ bridge, session }: DeskViewProps) {
  const [agents, setAgents] = useState<AgentSummary[] | undefined>();
  const [error, setError] = useState<ShownError | undefined>();
  // After a tap that proposed (admin quorum) or decided a proposal the pending list reloads too.
  const proposals = useContext(AdminProposalsContext);
  const reloadProposals = proposals.reload;
  const reload = useCallback(() => {
    reloadProposals();
    bridge
      .listAgents()
      .then((list) => {
        setAgents(list);
        setError(undefined);
      })
      .catch((caught: unknown) => setError(shownError(caught)));
  }, [bridge, reloadProposals]);
  useEffect(reload, [reload]);
  return (
    <section className="panel admin-view" aria-labelledby="agents-view-title" data-testid="agents-view">
      <h2 id="agents-view-title">Agents</h2>
      <p className="muted">Every change here needs a tap of your security key ({session.displayName}).</p>
      <AdminProposals bridge={bridge} session={session} onDecided={reload} />
      <h3>Enroll an agent</h3>
      <EnrollAgentForm
        bridge={bridge}
        adminId={session.approverId}
        defaultOwner={session.approverId}
        onEnrolled={reload}
        onProposed={reload}
      />
      <h3>Enrolled agents</h3>
      {error && (
        <p className="error" role="alert">
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
      {agents?.length === 0 && <p className="muted">No agents enrolled yet.</p>}
      <ul className="admin-list">
        {agents?.map((agent) => (
          <AgentCard key={agent.id} agent={agent} bridge={bridge} adminId={session.approverId} onChanged={reload} />
        ))}
      </ul>
    </section>
  );
}
