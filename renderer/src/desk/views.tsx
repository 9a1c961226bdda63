/**
 * The desk's views, one row each: App.tsx renders the tabs and the chosen view from this list.
 * A new view is one row here and one component under renderer/src/desk/. The overview and the
 * approvals view are built into App.tsx and listed before these rows.
 *
 * Only the queue (the first view) is in the first chunk: every other view is its own chunk,
 * fetched when first opened (React.lazy; App.tsx shows "Loading…" meanwhile), so the queue's first
 * paint does not wait for code it does not run (bench desk-paint).
 */
import { lazy } from 'react';
import type { DeskViewRow } from './desk-view.js';
import { QueueView } from './queue-view.js';

/** A view's module, loaded on first use: `pick` names its component. */
function later<M>(load: () => Promise<M>, pick: (module: M) => DeskViewRow['Component']) {
  return lazy(async () => ({ default: pick(await load()) }));
}

export const DESK_VIEWS: readonly DeskViewRow[] = [
  // The queue and one request (renderer/src/desk/queue-view.tsx, request-view.tsx); the queue is the desk's first view.
  { id: 'queue', label: 'Queue', admin: false, Component: QueueView },
  {
    id: 'request',
    label: 'Request',
    admin: false,
    hidden: true,
    Component: later(
      () => import('./request-view.js'),
      (m) => m.RequestView,
    ),
  },
  // History, Policies, Custody and health: read-only views (every change still needs a key tap elsewhere).
  {
    id: 'history',
    label: 'History',
    admin: false,
    Component: later(
      () => import('./HistoryView.js'),
      (m) => m.HistoryView,
    ),
  },
  {
    id: 'policies',
    label: 'Policies',
    admin: false,
    Component: later(
      () => import('./PoliciesView.js'),
      (m) => m.PoliciesView,
    ),
  },
  {
    id: 'health',
    label: 'Custody and health',
    admin: false,
    Component: later(
      () => import('./HealthView.js'),
      (m) => m.HealthView,
    ),
  },
  // The admin console (agents; approvers and keys). The first run is FirstRunGate (first-run.tsx), shown before any session.
  {
    id: 'agents',
    label: 'Agents',
    admin: true,
    Component: later(
      () => import('./agents-view.js'),
      (m) => m.AgentsView,
    ),
  },
  {
    id: 'approvers',
    label: 'Approvers and keys',
    admin: true,
    Component: later(
      () => import('./approvers-view.js'),
      (m) => m.ApproversView,
    ),
  },
  {
    id: 'dead-letters',
    label: 'Webhook dead letters',
    admin: true,
    Component: later(
      () => import('./DeadLettersView.js'),
      (m) => m.DeadLettersView,
    ),
  },
];
