/**
 * The desk's notification rules, pure (no DOM, no clock of its own): which pending requests need
 * the person signed in at this desk, when to notify them (a new request once, a reminder once
 * before it expires), how a burst of new requests is coalesced into one notice, and the window
 * title's pending count. The renderer (renderer/src/desk/desk-notifier.ts) feeds it the pending
 * list and `now`, shows what it returns and sleeps until `nextWakeAt`. A notice only ever opens
 * the request: approving still needs the key tap in the request view.
 */
import type { ApprovalRequest } from './bridge.js';
import { countsTowards, samePerson } from './quorum.js';

/** The person at this desk as the rules see them: who, and their groups (from the directory). */
export interface NotifyPerson {
  readonly approverId: string;
  readonly groups: readonly string[];
}

export interface NotifySettings {
  /** How long before expiry the reminder fires (ms). */
  readonly reminderLeadMs: number;
  /** More new requests than this in one update become ONE summary notice (not a burst). */
  readonly coalesceAbove: number;
}

export const DEFAULT_NOTIFY_SETTINGS: NotifySettings = { reminderLeadMs: 2 * 60_000, coalesceAbove: 3 };

/** What the renderer shows: a title, a body, and the request a click opens. */
export interface DeskNotice {
  readonly kind: 'new' | 'reminder' | 'summary';
  /** The request a click opens (for a summary: the most urgent of the batch). */
  readonly requestId: string;
  /** Lets the platform replace an earlier notice for the same request instead of stacking. */
  readonly tag: string;
  readonly title: string;
  readonly body: string;
}

/** What the rules remember between updates: ids already notified and already reminded. */
export interface NotifyMemory {
  readonly notified: ReadonlySet<string>;
  readonly reminded: ReadonlySet<string>;
}

export const EMPTY_NOTIFY_MEMORY: NotifyMemory = { notified: new Set(), reminded: new Set() };

export interface NotifyPlan {
  readonly notices: DeskNotice[];
  readonly memory: NotifyMemory;
  /** Pending requests that need this person (the title and tray count). */
  readonly count: number;
  /** When the next reminder falls due (epoch ms), if any: update again then. */
  readonly nextWakeAt: number | undefined;
}

/**
 * Whether `request` waits for `person`: still pending and not expired, the agent's owner is known,
 * the person is not excluded (owner, requester, policy), has not already answered it, and is in
 * a group the requirement counts (anyone when it names no groups).
 */
export function needsPerson(request: ApprovalRequest, person: NotifyPerson, now: number): boolean {
  if (request.state !== 'pending' || request.expiresAt <= now) return false;
  if (request.ownerUnresolved === true) return false;
  if ((request.excludedApprovers ?? []).some((e) => samePerson(e.approverId, person.approverId))) return false;
  if (request.approvals.some((a) => samePerson(a.approverId, person.approverId))) return false;
  return countsTowards(request.obligation, person.groups);
}

/** "in 4 min", "in 45 s": how long until `at`, for a notice body. */
export function timeLeft(at: number, now: number): string {
  const seconds = Math.max(0, Math.round((at - now) / 1000));
  if (seconds < 90) return `in ${seconds} s`;
  return `in ${Math.round(seconds / 60)} min`;
}

function noticeFor(kind: 'new' | 'reminder', request: ApprovalRequest, now: number): DeskNotice {
  const who = request.agentDisplayName ?? request.agentId;
  const title = kind === 'new' ? `Approval needed: ${request.tool}` : `Expiring soon: ${request.tool}`;
  const count = request.count !== undefined && request.count > 1 ? ` (${request.count} identical calls)` : '';
  return {
    kind,
    requestId: request.requestId,
    tag: `countersign-${request.requestId}`,
    title,
    body: `${who} · risk ${request.risk.score} · expires ${timeLeft(request.expiresAt, now)}${count}. Open it to review; approving needs your security key.`,
  };
}

/**
 * One update: the pending list as the desk sees it now. Returns what to show, the new memory
 * (pruned to requests still waiting), the count and when to wake for the next reminder.
 * Most urgent first: notices and the summary's target follow expiry order.
 */
export function planNotifications(
  pending: readonly ApprovalRequest[],
  person: NotifyPerson,
  now: number,
  memory: NotifyMemory,
  settings: NotifySettings = DEFAULT_NOTIFY_SETTINGS,
): NotifyPlan {
  const mine = pending.filter((r) => needsPerson(r, person, now)).sort((a, b) => a.expiresAt - b.expiresAt || a.createdAt - b.createdAt);
  const notified = new Set<string>();
  const reminded = new Set<string>();
  const fresh: ApprovalRequest[] = [];
  const reminders: DeskNotice[] = [];
  let nextWakeAt: number | undefined;
  for (const request of mine) {
    const remindAt = request.expiresAt - settings.reminderLeadMs;
    notified.add(request.requestId);
    if (!memory.notified.has(request.requestId)) {
      fresh.push(request);
      // First seen inside the lead: the new-request notice already says how little time is left.
      if (remindAt <= now) reminded.add(request.requestId);
    } else if (memory.reminded.has(request.requestId)) {
      reminded.add(request.requestId);
    } else if (remindAt <= now) {
      reminders.push(noticeFor('reminder', request, now));
      reminded.add(request.requestId);
    }
    if (!reminded.has(request.requestId) && (nextWakeAt === undefined || remindAt < nextWakeAt)) nextWakeAt = remindAt;
  }
  const notices: DeskNotice[] = [];
  if (fresh.length > settings.coalesceAbove) {
    const first = fresh[0]!;
    notices.push({
      kind: 'summary',
      requestId: first.requestId,
      tag: 'countersign-summary',
      title: `${fresh.length} requests need your approval`,
      body: `The most urgent (${first.tool}) expires ${timeLeft(first.expiresAt, now)}. Open it to review; approving needs your security key.`,
    });
  } else {
    for (const request of fresh) notices.push(noticeFor('new', request, now));
  }
  notices.push(...reminders);
  return { notices, memory: { notified, reminded }, count: mine.length, nextWakeAt };
}

/** The window (and tray) title with the pending count in front: "(3) Countersign". */
export function titleWithCount(base: string, count: number): string {
  return count > 0 ? `(${count > 99 ? '99+' : count}) ${base}` : base;
}
