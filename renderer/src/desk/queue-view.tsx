/**
 * The queue: every pending request, the soonest to expire first, one row each with the agent, the
 * tool, a headline (shared/request-headline.ts), the risk, the approvals so far ("1 of 2", by the
 * one quorum rule) and a live countdown. Identical calls are one row with a count. It follows the
 * core's push events (pending, decided) and refreshes slowly for what they do not carry (a
 * co-approver's partial approval). A row opens the request view; filters narrow by tool, agent
 * and whether the request still needs this person. An admin also sees here the admin actions
 * waiting for a second admin (admin-proposals.tsx), above the requests.
 */
import { memo, useCallback, useEffect, useMemo, useState } from 'react';
import type { ApprovalRequest, ApproverSummary } from '../../../shared/bridge.js';
import { requestHeadline } from '../../../shared/request-headline.js';
import { approvalProgress, mayStillApprove } from '../quorum-view.js';
import type { DeskViewProps } from './desk-view.js';
import { AdminProposals } from './admin-proposals.js';
import { coalescedReload } from './coalesced-reload.js';
import { newestAnswer } from './newest-answer.js';
import { QUEUE_PAGE, queueShown, readQueue, settledQueue } from './first-paint.js';
import { URGENT_MS, describeError, formatRemaining, mergeIdentical, type ShownError } from './desk-format.js';

const FALLBACK_REFRESH_MS = 15_000;
const PAGE = QUEUE_PAGE;

type StateFilter = 'all' | 'needs-me' | 'not-me' | 'urgent';

const STATE_FILTERS: Record<StateFilter, string> = {
  all: 'Every request',
  'needs-me': 'Waiting for me',
  'not-me': 'Not mine to decide',
  urgent: 'Expiring within 5 min',
};

export function riskLevel(score: number): 'high' | 'medium' | 'low' {
  return score >= 60 ? 'high' : score >= 30 ? 'medium' : 'low';
}

/**
 * Rendered again only when its own props change (memo): the desk's other state (the overview's
 * poll, the first-run check, the notifier's count) does not re-render the queue's rows.
 */
export const QueueView = memo(function QueueView({ bridge, session, navigate }: DeskViewProps) {
  // The first answer, when main.tsx's prefetch has it already: the view mounts with its rows.
  const [first] = useState(() => settledQueue(bridge));
  const [pending, setPending] = useState<ApprovalRequest[] | undefined>(first?.page.pending);
  const [total, setTotal] = useState(first === undefined ? 0 : (first.page.total ?? first.page.pending.length));
  const [approvers, setApprovers] = useState<ApproverSummary[]>(first?.approvers ?? []);
  const [error, setError] = useState<ShownError | undefined>();
  const [now, setNow] = useState(() => Date.now());
  const [tool, setTool] = useState('');
  const [agent, setAgent] = useState('');
  const [state, setState] = useState<StateFilter>('all');

  // A push event's reload, the fallback timer and the Refresh button each read: on a slow machine
  // an older read can answer after a newer one, and would take back a request that just arrived
  // (or bring back a decided one) until the next event.
  const [answers] = useState(newestAnswer);
  const load = useCallback(async () => {
    const mayShow = answers.begin();
    try {
      // The first read is usually the one main.tsx started before React rendered (first-paint.ts).
      const { page, approvers: list } = await readQueue(bridge);
      if (!mayShow()) return;
      setPending(page.pending);
      setTotal(page.total ?? page.pending.length);
      setApprovers(list);
      setError(undefined);
    } catch (caught) {
      if (mayShow()) setError(describeError(caught));
    }
  }, [bridge, answers]);

  useEffect(() => {
    if (first === undefined) void load();
    const refresh = window.setInterval(() => void load(), FALLBACK_REFRESH_MS);
    const tick = window.setInterval(() => setNow(Date.now()), 1000);
    const reload = coalescedReload(load);
    const unsubscribe = bridge.subscribe((event) => {
      if (event.name !== 'adminProposal') reload.request();
    });
    return () => {
      reload.cancel();
      window.clearInterval(refresh);
      window.clearInterval(tick);
      unsubscribe();
    };
  }, [bridge, load, first]);

  // Once the first answer is on screen, the desk's other reads may start (first-paint.ts).
  useEffect(() => {
    if (pending !== undefined || error !== undefined) queueShown();
  }, [pending, error]);

  const tools = useMemo(() => [...new Set((pending ?? []).map((r) => r.tool))].sort(), [pending]);
  const agents = useMemo(() => [...new Set((pending ?? []).map((r) => r.agentId))].sort(), [pending]);
  const rows = useMemo(() => {
    const shown = (pending ?? []).filter((r) => {
      if (tool !== '' && r.tool !== tool) return false;
      if (agent !== '' && r.agentId !== agent) return false;
      if (state === 'needs-me') return mayStillApprove(r, approvers, session.approverId);
      if (state === 'not-me') return !mayStillApprove(r, approvers, session.approverId);
      if (state === 'urgent') return r.expiresAt - now < URGENT_MS;
      return true;
    });
    return mergeIdentical(shown);
  }, [pending, tool, agent, state, approvers, session.approverId, now]);

  return (
    <section className="panel desk-queue" data-testid="queue-view" aria-labelledby="queue-title">
      <div className="panel-title">
        <h2 id="queue-title">Queue</h2>
        <span className="muted" data-testid="queue-total" aria-live="polite">
          {pending === undefined ? '' : `${total} waiting${total > PAGE ? ` (the ${PAGE} most urgent shown)` : ''}`}
        </span>
        <button type="button" className="secondary" data-testid="queue-refresh" onClick={() => void load()}>
          Refresh
        </button>
      </div>
      {/* An admin's other waiting work: actions another admin tapped that need a second admin's key. */}
      {session.admin && <AdminProposals bridge={bridge} session={session} onlyWhenWaiting />}
      <form className="queue-filters" aria-label="Filter the queue" onSubmit={(e) => e.preventDefault()}>
        <label>
          Tool
          <select data-testid="queue-filter-tool" value={tool} onChange={(e) => setTool(e.target.value)}>
            <option value="">All tools</option>
            {tools.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label>
          Agent
          <select data-testid="queue-filter-agent" value={agent} onChange={(e) => setAgent(e.target.value)}>
            <option value="">All agents</option>
            {agents.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          State
          <select data-testid="queue-filter-state" value={state} onChange={(e) => setState(e.target.value as StateFilter)}>
            {Object.entries(STATE_FILTERS).map(([id, label]) => (
              <option key={id} value={id}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </form>
      {error && (
        <p className="error" role="alert" data-testid="queue-error" data-code={error.code}>
          Could not load the queue: {error.message} <code>[{error.code}]</code>
        </p>
      )}
      {pending === undefined && !error && <p className="muted">Loading…</p>}
      {pending !== undefined && rows.length === 0 && (
        <p className="muted" data-testid="queue-empty">
          {pending.length === 0 ? 'Nothing is waiting for approval.' : 'Nothing matches these filters.'}
        </p>
      )}
      {rows.length > 0 && (
        <ul className="queue-list" data-testid="queue-list" aria-label="Pending requests, most urgent first">
          {rows.map((row) => {
            const request = row.first;
            const headline = requestHeadline(request.tool, request.params);
            const progress = approvalProgress(request, approvers);
            const remaining = request.expiresAt - now;
            const level = riskLevel(request.risk.score);
            const agentName = request.agentDisplayName || request.agentId;
            return (
              <li key={row.key}>
                <button
                  type="button"
                  className={`queue-row${remaining < URGENT_MS ? ' queue-row-urgent' : ''}`}
                  data-testid="queue-row"
                  data-request-id={request.requestId}
                  data-calls={row.calls}
                  aria-label={`${headline.text}, ${request.tool} by ${agentName}, risk ${request.risk.score}, ${progress.text} approvals, ${formatRemaining(remaining)}${row.calls > 1 ? `, ${row.calls} identical calls` : ''}. Open the request.`}
                  onClick={() => navigate({ view: 'request', requestId: request.requestId })}
                >
                  <span className="queue-headline" data-testid="queue-headline">
                    {headline.text}
                  </span>
                  <span className="queue-meta">
                    <code>{request.tool}</code> · {agentName}
                  </span>
                  <span className="queue-badges">
                    <span className={`risk-badge risk-${level}`} data-testid="queue-risk">
                      risk {request.risk.score}
                    </span>
                    <span className="queue-progress" data-testid="queue-progress">
                      {progress.text} approvals
                    </span>
                    {row.calls > 1 && (
                      <span className="badge" data-testid="queue-count">
                        ×{row.calls} identical calls
                      </span>
                    )}
                    <span className="queue-countdown" data-testid="queue-countdown">
                      {formatRemaining(remaining)}
                    </span>
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
});
