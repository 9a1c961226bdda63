/**
 * Pending admin actions (the admin quorum, approvals.adminQuorum: 2): every admin sees the actions
 * another admin tapped that wait for a second admin, with the action in full; Confirm and Reject
 * each start a key tap over exactly that proposal and verdict (admin-ceremony.ts). The proposer's
 * own buttons are disabled with the reason (the server refuses them too: admin_self_confirm).
 * Renders nothing while the quorum is 1 and nothing waits.
 */
import { useCallback, useEffect, useState } from 'react';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import type { AdminProposal, AdminProposalList } from '../../../shared/bridge-admin.js';
import type { AdminAction } from '../../../shared/admin-actions.js';
import type { DeskSession } from './desk-view.js';
import { decideAdminProposal, shownError } from './admin-ceremony.js';
import { StatusLine, type Status } from './agents-view.js';

/** Other admins' proposals arrive without a push event: the list is read again this often. */
const POLL_MS = 3_000;

/** One line naming what an action does. */
function headline(action: AdminAction): string {
  switch (action.kind) {
    case 'agent.enroll':
      return `Enroll agent ${action.request.payload.agentId} (owner ${action.scope.owner}, group ${action.scope.group})`;
    case 'agent.rotate':
      return `Rotate agent ${action.id} to a new key`;
    case 'agent.revoke':
      return `Revoke agent ${action.id}: ${action.reason}`;
    case 'approver.add':
      return `Add approver ${action.id} (${action.displayName}) in ${action.groups.join(', ') || 'no group'}`;
    case 'approver.disable':
      return `Disable approver ${action.id}`;
    case 'approver.set_groups':
      return `Set the groups of ${action.id} to ${action.groups.join(', ') || 'none'}`;
    case 'approver.issue_registration_code':
      return `Issue a registration code for ${action.id}`;
    case 'credential.remove':
      return `Remove security key ${action.credentialId.slice(0, 16)}…`;
    case 'audit.acknowledge_alarm':
      return `Acknowledge tamper alarm ${action.alarmId}`;
  }
}

export function AdminProposals({
  bridge,
  session,
  refresh,
  onDecided,
}: {
  bridge: CountersignBridge;
  session: DeskSession;
  /** Changes when this desk proposed or decided something: read the list again at once. */
  refresh: number;
  onDecided: () => void;
}) {
  const [list, setList] = useState<AdminProposalList | undefined>();
  const load = useCallback(() => {
    bridge
      .listPendingAdminActions()
      .then(setList)
      .catch(() => undefined);
  }, [bridge]);
  useEffect(() => {
    load();
    const timer = window.setInterval(load, POLL_MS);
    return () => window.clearInterval(timer);
  }, [load, refresh]);
  if (list === undefined || (list.quorum === 1 && list.proposals.length === 0)) return null;
  return (
    <section className="admin-proposals" aria-labelledby="admin-proposals-title" data-testid="admin-proposals">
      <h3 id="admin-proposals-title">Pending admin actions</h3>
      <p className="muted">
        Admin quorum: every admin action needs the key taps of {list.quorum} different admins. An action one admin tapped waits here until
        another admin confirms or rejects it with their own key.
      </p>
      {list.proposals.length === 0 ? (
        <p className="muted" data-testid="admin-proposals-empty">
          Nothing is waiting.
        </p>
      ) : (
        <ul className="admin-list">
          {list.proposals.map((proposal) => (
            <ProposalCard
              key={proposal.id}
              proposal={proposal}
              bridge={bridge}
              session={session}
              onDecided={() => {
                load();
                onDecided();
              }}
            />
          ))}
        </ul>
      )}
    </section>
  );
}

function ProposalCard({
  proposal,
  bridge,
  session,
  onDecided,
}: {
  proposal: AdminProposal;
  bridge: CountersignBridge;
  session: DeskSession;
  onDecided: () => void;
}) {
  const [status, setStatus] = useState<Status | undefined>();
  const own = proposal.proposedBy === session.approverId;
  const decide = async (confirmation: 'confirm' | 'reject') => {
    setStatus({ kind: 'working', text: `Touch your security key to ${confirmation} ${proposal.id}…` });
    try {
      await decideAdminProposal(bridge, session.approverId, proposal.id, confirmation);
      setStatus({ kind: 'done', text: confirmation === 'confirm' ? `Confirmed and done: ${proposal.id}.` : `Rejected: ${proposal.id}.` });
      onDecided();
    } catch (caught) {
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };
  const busy = status?.kind === 'working';
  return (
    <li className="admin-card" data-testid="admin-proposal" data-proposal-id={proposal.id} data-proposed-by={proposal.proposedBy}>
      <p>
        <strong>{headline(proposal.action)}</strong>
      </p>
      <p className="muted">
        Proposed by {proposal.proposedBy} at {new Date(proposal.createdAt).toLocaleString()}; expires{' '}
        {new Date(proposal.expiresAt).toLocaleString()}. <code className="id">{proposal.id}</code>
      </p>
      <details>
        <summary>The action in full</summary>
        <pre className="raw-json">{JSON.stringify(proposal.action, null, 2)}</pre>
      </details>
      {own && (
        <p className="muted" data-testid="admin-proposal-own">
          You proposed this: another admin confirms or rejects it.
        </p>
      )}
      <div className="inline-form">
        <button
          type="button"
          data-testid="admin-proposal-confirm"
          disabled={own || busy}
          title={own ? 'You proposed this; a second admin must confirm it' : undefined}
          onClick={() => void decide('confirm')}
        >
          Confirm (key tap)
        </button>
        <button
          type="button"
          className="danger"
          data-testid="admin-proposal-reject"
          disabled={own || busy}
          title={own ? 'You proposed this; a second admin must decide it' : undefined}
          onClick={() => void decide('reject')}
        >
          Reject (key tap)
        </button>
      </div>
      <StatusLine status={status} testId="admin-proposal-status" />
    </li>
  );
}
