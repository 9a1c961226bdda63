/**
 * The contract every desk view is written against: the bridge, the person the desk acts for, and
 * a way to move to another view (for example from the queue to one request). App.tsx owns the
 * session and the navigation; a view owns only what it shows.
 */
import type { CountersignBridge } from '../../../shared/bridge-table.js';

/** The person signed in at this desk (the server checks every ceremony against it). */
export interface DeskSession {
  readonly approverId: string;
  readonly displayName: string;
  /** In the admin group: the admin views are offered (every admin action still needs a key tap). */
  readonly admin: boolean;
}

/** A place in the desk: a view, and for the request view the request it shows. */
export interface DeskTarget {
  readonly view: string;
  readonly requestId?: string;
}

export interface DeskViewProps {
  readonly bridge: CountersignBridge;
  readonly session: DeskSession;
  readonly navigate: (target: DeskTarget) => void;
  /** The request the target names (the request view), when there is one. */
  readonly requestId?: string | undefined;
}

/** One row of the desk's navigation (renderer/src/desk/views.tsx). */
export interface DeskViewRow {
  readonly id: string;
  readonly label: string;
  /** Shown only to admins. */
  readonly admin: boolean;
  /** Reached by navigation only (for example one request), not listed as a tab. */
  readonly hidden?: boolean;
  /** A plain component, or one loaded on first use (React.lazy, rendered inside Suspense). */
  readonly Component: React.ComponentType<DeskViewProps>;
}

/** The fragment parameter that opens one request (`/ui/#request=<id>`; the MCP proxy's links use it). */
export const REQUEST_FRAGMENT_PARAM = 'request';

/** Read a deep link from a URL fragment (`#request=<id>` and optionally `secret=`): the target it names, if any. */
export function targetFromFragment(hash: string): DeskTarget | undefined {
  if (hash.length <= 1) return undefined;
  const requestId = new URLSearchParams(hash.slice(1)).get(REQUEST_FRAGMENT_PARAM);
  if (requestId === null || requestId.length === 0 || requestId.length > 128) return undefined;
  return { view: 'request', requestId };
}
