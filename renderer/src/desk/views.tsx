/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 */
import type { DeskViewRow } from './desk-view.js';
import { AgentsView } from './agents-view.js';
import { ApproversView } from './approvers-view.js';

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // one row per desk view, e.g. { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  // The admin console (agents; approvers and keys). The first run is FirstRunGate (first-run.tsx), shown before any session.
  { id: 'agents', label: 'Agents', admin: true, Component: AgentsView },
  { id: 'approvers', label: 'Approvers and keys', admin: true, Component: ApproversView },
];
