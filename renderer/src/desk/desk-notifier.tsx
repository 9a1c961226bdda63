/**
 * The desk's notifications: desktop notices (the Web Notifications API, which the Electron shell
 * turns into native ones) when a request needs the signed-in person, a reminder before it
 * expires, and the pending count in the window title (the shell reads the title for its tray).
 * The rules are shared/desk-notifications.ts; this file only fetches, shows and schedules.
 * A click opens the request view; approving there still needs the security-key tap.
 */
import { useEffect, useRef, useState } from 'react';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import {
  DEFAULT_NOTIFY_SETTINGS,
  EMPTY_NOTIFY_MEMORY,
  planNotifications,
  titleWithCount,
  type DeskNotice,
  type NotifyMemory,
} from '../../../shared/desk-notifications.js';
import type { DeskSession, DeskTarget } from './desk-view.js';
import type { AdminProposal } from '../../../shared/bridge-admin.js';
import { adminActionHeadline } from './admin-proposals.js';
import { coalescedReload } from './coalesced-reload.js';
import { afterQueueShown } from './first-paint.js';
import { newestAnswer } from './newest-answer.js';
import { onOwnDecision } from './own-decisions.js';

const BASE_TITLE = 'Countersign';
/** A fallback for what no event carries (an event stream down for longer than its replay): look again this often. */
const FALLBACK_REFRESH_MS = 30_000;
const PAGE = 500;
const LEAD_KEY = 'countersign.reminderLeadMinutes';
export const REMINDER_LEAD_CHOICES = [1, 2, 5, 10] as const;

type Permission = NotificationPermission | 'unsupported';

function currentPermission(): Permission {
  return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
}

function storedLeadMinutes(): number {
  try {
    const value = Number(window.localStorage.getItem(LEAD_KEY));
    return (REMINDER_LEAD_CHOICES as readonly number[]).includes(value) ? value : DEFAULT_NOTIFY_SETTINGS.reminderLeadMs / 60_000;
  } catch {
    return DEFAULT_NOTIFY_SETTINGS.reminderLeadMs / 60_000;
  }
}

function show(notice: DeskNotice, open: (requestId: string) => void): void {
  if (currentPermission() !== 'granted') return;
  try {
    const shown = new Notification(notice.title, { body: notice.body, tag: notice.tag });
    shown.onclick = () => {
      window.focus();
      open(notice.requestId);
      shown.close();
    };
  } catch {
    // Some platforms only allow notifications from a service worker: the title count still shows.
  }
}

/** A desktop notice that another admin's action waits for this admin's key (the queue lists it first). */
export function showAdminProposalNotice(proposal: AdminProposal, open: () => void): void {
  if (currentPermission() !== 'granted') return;
  try {
    const shown = new Notification('An admin action waits for your key', {
      body: `${adminActionHeadline(proposal.action)}, proposed by ${proposal.proposedBy}. Confirm or reject it in the queue.`,
      tag: `admin-proposal:${proposal.id}`,
    });
    shown.onclick = () => {
      window.focus();
      open();
      shown.close();
    };
  } catch {
    // As for requests: the count in the title still shows.
  }
}

export interface DeskNotifications {
  /** Requests waiting for this person. */
  readonly count: number;
  /** Admin actions another admin proposed, waiting for this admin (counted in the title too). */
  readonly adminActions: number;
  readonly permission: Permission;
  readonly leadMinutes: number;
  readonly requestPermission: () => void;
  readonly setLeadMinutes: (minutes: number) => void;
}

export function useDeskNotifications(
  bridge: CountersignBridge,
  session: DeskSession | undefined,
  navigate: (target: DeskTarget) => void,
  adminActions = 0,
): DeskNotifications {
  const [count, setCount] = useState(0);
  const [permission, setPermission] = useState<Permission>(currentPermission);
  const [leadMinutes, setLead] = useState(storedLeadMinutes);
  const memory = useRef<NotifyMemory>(EMPTY_NOTIFY_MEMORY);
  const navigateRef = useRef(navigate);
  navigateRef.current = navigate;

  useEffect(() => {
    document.title = titleWithCount(BASE_TITLE, count + adminActions);
  }, [count, adminActions]);

  useEffect(() => {
    memory.current = EMPTY_NOTIFY_MEMORY;
    if (session === undefined) {
      setCount(0);
      return;
    }
    let active = true;
    let wake: number | undefined;
    let groups: readonly string[] | undefined;
    const settings = { ...DEFAULT_NOTIFY_SETTINGS, reminderLeadMs: leadMinutes * 60_000 };
    const open = (requestId: string) => navigateRef.current({ view: 'request', requestId });
    // The event reads are coalesced, but the fallback timer and a reminder's wake-up read beside
    // them: an older read answering after a newer one would set an older count and title (and plan
    // notices and the next wake-up from an older list) until the next read.
    const answers = newestAnswer();
    const update = async () => {
      const mayShow = answers.begin();
      try {
        if (groups === undefined) {
          const list = await bridge.listApprovers();
          groups = list.approvers.find((a) => a.id === session.approverId)?.groups ?? [];
        }
        const { pending } = await bridge.listPendingApprovals(PAGE);
        if (!active || !mayShow()) return;
        const plan = planNotifications(pending, { approverId: session.approverId, groups }, Date.now(), memory.current, settings);
        memory.current = plan.memory;
        setCount(plan.count);
        for (const notice of plan.notices) show(notice, open);
        if (wake !== undefined) window.clearTimeout(wake);
        wake =
          plan.nextWakeAt === undefined
            ? undefined
            : window.setTimeout(() => void update(), Math.max(0, plan.nextWakeAt - Date.now()) + 50);
      } catch {
        // The queue shows load errors; notifications try again on the next event or refresh.
      }
    };
    // Its read of up to 500 pending requests waits for the queue's first paint (first-paint.ts).
    let timer: number | undefined;
    const stopWaiting = afterQueueShown(() => {
      void update();
      timer = window.setInterval(() => void update(), FALLBACK_REFRESH_MS);
    });
    const reload = coalescedReload(update);
    const unsubscribe = bridge.subscribe((event) => {
      if (event.name !== 'adminProposal') reload.request();
    });
    // A partial approval of one's own has no push event: count again as soon as it is recorded.
    const stopListening = onOwnDecision(() => reload.request());
    return () => {
      stopListening();
      stopWaiting();
      reload.cancel();
      active = false;
      window.clearInterval(timer);
      if (wake !== undefined) window.clearTimeout(wake);
      unsubscribe();
    };
  }, [bridge, session?.approverId, leadMinutes]);

  return {
    count,
    adminActions,
    permission,
    leadMinutes,
    requestPermission: () => {
      if (typeof Notification === 'undefined') return;
      void Notification.requestPermission().then(setPermission);
    },
    setLeadMinutes: (minutes) => {
      setLead(minutes);
      try {
        window.localStorage.setItem(LEAD_KEY, String(minutes));
      } catch {
        // Storage refused (private mode): the choice lasts for this page.
      }
    },
  };
}

function waitingText(requests: number, adminActions: number): string {
  const total = requests + adminActions;
  if (total === 0) return 'Nothing waits for you';
  if (adminActions === 0) return `${total} waiting for you`;
  return `${total} waiting for you (${adminActions} admin action${adminActions === 1 ? '' : 's'})`;
}

/** The desk's notification controls: the pending count, turning notices on, the reminder lead. */
export function NotificationControls({ state }: { state: DeskNotifications }) {
  return (
    <div className="desk-notify" role="group" aria-label="Notifications">
      <span className="desk-notify-count" data-testid="desk-pending-count" aria-live="polite">
        {waitingText(state.count, state.adminActions)}
      </span>
      {state.permission === 'default' && (
        <button type="button" data-testid="desk-notify-enable" onClick={state.requestPermission}>
          Turn on notifications
        </button>
      )}
      {state.permission === 'denied' && <span className="muted">Notifications are blocked in this browser.</span>}
      <label>
        Remind me{' '}
        <select
          data-testid="desk-notify-lead"
          value={state.leadMinutes}
          onChange={(event) => state.setLeadMinutes(Number(event.target.value))}
        >
          {REMINDER_LEAD_CHOICES.map((m) => (
            <option key={m} value={m}>
              {m} min
            </option>
          ))}
        </select>{' '}
        before a request expires
      </label>
    </div>
  );
}
