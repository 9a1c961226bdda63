/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 */
import type { DeskViewRow } from './desk-view.js';
import { DeadLettersView } from './DeadLettersView.js';

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // one row per desk view, e.g. { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  { id: 'dead-letters', label: 'Webhook dead letters', admin: true, Component: DeadLettersView },
];
