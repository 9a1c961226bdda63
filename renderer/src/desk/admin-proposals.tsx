/**
 * Pending admin actions (the admin quorum, approvals.adminQuorum: 2): every admin sees the actions
 * another admin tapped that wait for a second admin, with the action in full; Confirm and Reject
 * each start a key tap over exactly that proposal and verdict (admin-ceremony.ts). The proposer's
 * own buttons are disabled with the reason (the server refuses them too: admin_self_confirm).
 * The list is read once per signed-in admin (useAdminProposals, owned by App.tsx) and again on
 * each `adminProposal` push event, when the soonest proposal expires, and when the window comes
 * back into view (a dropped event stream may have missed an event); it is never polled. The
 * queue shows it first to an admin, the Agents view beside the agents; the count joins the
 * desk's pending count and title, and a proposal another admin makes raises a notification.
 * Renders nothing while the quorum is 1 and nothing waits.
 */
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import type { AdminProposal, AdminProposalList } from '../../../shared/bridge-admin.js';
import type { AdminAction } from '../../../shared/admin-actions.js';
import type { DeskSession } from './desk-view.js';
import { decideAdminProposal, shownError } from './admin-ceremony.js';
import { StatusLine, type Status } from './status-line.js';
import { coalescedReload } from './coalesced-reload.js';

/** The pending admin actions as this desk knows them (one reader per desk, shared by the views). */
export interface AdminProposalsState {
  /** undefined while not read yet, or when the person signed in is not an admin. */
  readonly list: AdminProposalList | undefined;
  /** Proposals another admin made: each waits for this admin's confirmation or rejection. */
  readonly awaitingMe: number;
  /** Read the list again now (after this desk proposed or decided something). */
  readonly reload: () => void;
}

const NOT_READ: AdminProposalsState = { list: undefined, awaitingMe: 0, reload: () => undefined };
export const AdminProposalsContext = createContext<AdminProposalsState>(NOT_READ);

/**
 * Keep the pending admin actions of a signed-in admin: read at sign-in, then on each
 * `adminProposal` event, at the soonest expiry and when the page becomes visible again.
 * `onArrived` is told of each proposal by another admin that appears after the first read.
 */
export function useAdminProposals(
  bridge: CountersignBridge,
  session: DeskSession | undefined,
  onArrived: (proposal: AdminProposal) => void,
): AdminProposalsState {
  const adminId = session?.admin === true ? session.approverId : undefined;
  const [list, setList] = useState<AdminProposalList | undefined>();
  const loadRef = useRef<() => void>(() => undefined);
  const arrivedRef = useRef(onArrived);
  arrivedRef.current = onArrived;
  useEffect(() => {
    setList(undefined);
    if (adminId === undefined) return undefined;
    let active = true;
    let known: Set<string> | undefined;
    let wake: number | undefined;
    const load = () => {
      bridge
        .listPendingAdminActions()
        .then((next) => {
          if (!active) return;
          setList(next);
          const before = known;
          known = new Set(next.proposals.map((p) => p.id));
          if (before !== undefined)
            for (const p of next.proposals) if (!before.has(p.id) && p.proposedBy !== adminId) arrivedRef.current(p);
          // The list leaves expired proposals out: read it again when the soonest one expires.
          if (wake !== undefined) window.clearTimeout(wake);
          const soonest = Math.min(...next.proposals.map((p) => p.expiresAt));
          wake = Number.isFinite(soonest) ? window.setTimeout(load, Math.max(0, soonest - Date.now()) + 50) : undefined;
        })
        .catch(() => undefined);
    };
    loadRef.current = load;
    load();
    const reload = coalescedReload(load);
    const unsubscribe = bridge.subscribe((event) => {
      // `resync`: the event stream came back after a gap it cannot replay.
      if (event.name === 'adminProposal' || event.name === 'resync') reload.request();
    });
    const visible = () => {
      if (document.visibilityState === 'visible') load();
    };
    document.addEventListener('visibilitychange', visible);
    return () => {
      active = false;
      reload.cancel();
      loadRef.current = () => undefined;
      if (wake !== undefined) window.clearTimeout(wake);
      document.removeEventListener('visibilitychange', visible);
      unsubscribe();
    };
  }, [bridge, adminId]);
  // Stable across renders: views put it in their effects' dependencies.
  const reload = useCallback(() => loadRef.current(), []);
  return useMemo(
    () => ({
      list: adminId === undefined ? undefined : list,
      awaitingMe: list?.proposals.filter((p) => p.proposedBy !== adminId).length ?? 0,
      reload,
    }),
    [list, adminId, reload],
  );
}

/** One line naming what an action does. */
export function adminActionHeadline(action: AdminAction): string {
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
  onDecided,
  onlyWhenWaiting,
}: {
  bridge: CountersignBridge;
  session: DeskSession;
  /** After this desk confirmed or rejected a proposal (the list itself reloads). */
  onDecided?: () => void;
  /** Show nothing while nothing waits (the queue), rather than the quorum's explanation. */
  onlyWhenWaiting?: boolean;
}) {
  const { list, reload } = useContext(AdminProposalsContext);
  if (list === undefined || ((list.quorum === 1 || onlyWhenWaiting === true) && list.proposals.length === 0)) return null;
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
                reload();
                onDecided?.();
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
        <strong>{adminActionHeadline(proposal.action)}</strong>
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
