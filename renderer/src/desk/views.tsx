/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 */
import type { DeskViewRow } from './desk-view.js';
import { QueueView } from './queue-view.js';
import { RequestView } from './request-view.js';

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // one row per desk view, e.g. { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  // The queue and one request (renderer/src/desk/queue-view.tsx, request-view.tsx); the queue is the desk's first view.
  { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  { id: 'request', label: 'Request', admin: false, hidden: true, Component: RequestView },
];
