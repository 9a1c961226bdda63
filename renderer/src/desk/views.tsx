/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 */
import type { DeskViewRow } from './desk-view.js';
import { QueueView } from './queue-view.js';
import { RequestView } from './request-view.js';
import { HistoryView } from './HistoryView.js';
import { PoliciesView } from './PoliciesView.js';
import { HealthView } from './HealthView.js';
import { AgentsView } from './agents-view.js';
import { ApproversView } from './approvers-view.js';
import { DeadLettersView } from './DeadLettersView.js';

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // The queue and one request (renderer/src/desk/queue-view.tsx, request-view.tsx); the queue is the desk's first view.
  { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  { id: 'request', label: 'Request', admin: false, hidden: true, Component: RequestView },
  // History, Policies, Custody and health: read-only views (every change still needs a key tap elsewhere).
  { id: 'history', label: 'History', admin: false, Component: HistoryView },
  { id: 'policies', label: 'Policies', admin: false, Component: PoliciesView },
  { id: 'health', label: 'Custody and health', admin: false, Component: HealthView },
  // The admin console (agents; approvers and keys). The first run is FirstRunGate (first-run.tsx), shown before any session.
  { id: 'agents', label: 'Agents', admin: true, Component: AgentsView },
  { id: 'approvers', label: 'Approvers and keys', admin: true, Component: ApproversView },
  { id: 'dead-letters', label: 'Webhook dead letters', admin: true, Component: DeadLettersView },
];
