/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 */
import type { DeskViewRow } from './desk-view.js';
import { HistoryView } from './HistoryView.js';
import { PoliciesView } from './PoliciesView.js';
import { HealthView } from './HealthView.js';

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // one row per desk view, e.g. { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  // History, Policies, Custody and health: read-only views (the server refuses nothing by person here; every change still needs a key tap elsewhere).
  { id: 'history', label: 'History', admin: false, Component: HistoryView },
  { id: 'policies', label: 'Policies', admin: false, Component: PoliciesView },
  { id: 'health', label: 'Custody and health', admin: false, Component: HealthView },
];
