/**
 * The queue's first paint comes first. With 1,000 pending, a fresh desk spent its first second on
 * work that is not the queue: the notifier's read of up to 500 pending requests (~0.5 MB to parse
 * and validate), the overview's 100 recent decisions and the agents, all competing with the
 * queue's own read for the page's one thread and the core's. And the queue's read waited for the
 * session to be known, though it needs only the transport's secret.
 *
 * So: `prefetchQueue` starts the queue's first read (the page and the approvers) as soon as the
 * bridge exists, before React renders, and the queue view takes that answer for its first load
 * (over HTTP the bridge takes the requests renderer/src/boot.ts sent even earlier);
 * `prefetchSession` does the same for the session read the queue view waits for (it is mounted
 * only once the desk knows who is signed in), which otherwise began only after React's first
 * render and commit, one round trip and one validation later than it could. The desk's first
 * session answer is handed over once the queue's prefetched read has settled too, so the queue
 * view mounts with its rows (`settledQueue`) in the same render, instead of mounting empty and
 * rendering, committing and painting again one effect later;
 * work that can wait (`afterQueueShown`) starts once the queue has shown its first answer, or at
 * once when the desk does not open on the queue (nobody signed in, another view), and at the
 * latest after `GATE_TIMEOUT_MS`, so nothing waits on a queue that is never shown.
 */
import type { ApproverSummary } from '../../../shared/bridge.js';
import type { DeskSessionView } from '../../../shared/desk-session.js';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import { DESK_QUEUE_PAGE } from '../../../shared/desk-boot-reads.js';

/** The queue's page size (queue-view.tsx reads the same; the boot script reads the first page of it). */
export const QUEUE_PAGE = DESK_QUEUE_PAGE;
const GATE_TIMEOUT_MS = 3_000;
/** A prefetched answer older than this is read again rather than shown. */
const PREFETCH_FRESH_MS = 5_000;

export interface QueueAnswer {
  page: Awaited<ReturnType<CountersignBridge['listQueue']>>;
  approvers: ApproverSummary[];
}

let prefetched: { bridge: CountersignBridge; at: number; answer: Promise<QueueAnswer>; settled?: QueueAnswer } | undefined;

/** Start the queue's first read now (its answer is kept for the queue view's first load only). */
export function prefetchQueue(bridge: CountersignBridge): void {
  const answer = Promise.all([bridge.listQueue(QUEUE_PAGE), bridge.listApprovers()]).then(([page, list]) => ({
    page,
    approvers: list.approvers,
  }));
  const entry: NonNullable<typeof prefetched> = { bridge, at: Date.now(), answer };
  // Kept as a value too, so the queue view can mount with it (settledQueue).
  answer.then(
    (value) => {
      entry.settled = value;
    },
    // A failed prefetch is read again by the view, which shows that error: none is lost here.
    () => undefined,
  );
  prefetched = entry;
}

/** Settles (never rejects) once the queue's prefetched read has, or at once when there is none. */
function queuePrefetchSettled(bridge: CountersignBridge): Promise<void> {
  const pending = prefetched;
  if (pending === undefined || pending.bridge !== bridge) return Promise.resolve();
  return pending.answer.then(
    () => undefined,
    () => undefined,
  );
}

/**
 * The prefetched answer when it has arrived (and is this bridge's and fresh), taken once: the
 * queue view's first state. Otherwise undefined, and the view reads (readQueue) as before.
 */
export function settledQueue(bridge: CountersignBridge): QueueAnswer | undefined {
  const taken = prefetched;
  if (taken?.settled === undefined || taken.bridge !== bridge || Date.now() - taken.at >= PREFETCH_FRESH_MS) return undefined;
  prefetched = undefined;
  return taken.settled;
}

/** The queue's read: the prefetched answer once, when it is this bridge's and fresh, else a new read. */
export function readQueue(bridge: CountersignBridge): Promise<QueueAnswer> {
  const taken = prefetched;
  prefetched = undefined;
  if (taken !== undefined && taken.bridge === bridge && Date.now() - taken.at < PREFETCH_FRESH_MS)
    return taken.answer.catch(() => readQueue(bridge));
  return Promise.all([bridge.listQueue(QUEUE_PAGE), bridge.listApprovers()]).then(([page, list]) => ({
    page,
    approvers: list.approvers,
  }));
}

let prefetchedSession: { bridge: CountersignBridge; at: number; answer: Promise<{ session: DeskSessionView | null }> } | undefined;

/** Start the session's first read now (its answer is kept for the desk's first session read only). */
export function prefetchSession(bridge: CountersignBridge): void {
  const answer = bridge.getSession();
  // A failed prefetch is read again by the desk, which handles that error: none is lost here.
  answer.catch(() => undefined);
  prefetchedSession = { bridge, at: Date.now(), answer };
}

/** The session's read: the prefetched answer once, when it is this bridge's and fresh, else a new read. */
export function readSession(bridge: CountersignBridge): Promise<{ session: DeskSessionView | null }> {
  const taken = prefetchedSession;
  prefetchedSession = undefined;
  if (taken !== undefined && taken.bridge === bridge && Date.now() - taken.at < PREFETCH_FRESH_MS) {
    const session = taken.answer.catch(() => bridge.getSession());
    // The first session answer waits for the queue's prefetch (a few ms at most: both started
    // together), so the queue view mounts with its rows; a failed queue read does not hold it.
    return Promise.all([session, queuePrefetchSettled(bridge)]).then(([answer]) => answer);
  }
  return bridge.getSession();
}

let release: () => void = () => undefined;
const shown = new Promise<void>((resolve) => {
  release = resolve;
});
setTimeout(() => release(), GATE_TIMEOUT_MS);

/** The queue showed its first answer (or the desk opened elsewhere): deferred work may start. */
export function queueShown(): void {
  release();
}

/** Run `work` once the queue has shown its first answer (see above); cancel with the returned function. */
export function afterQueueShown(work: () => void): () => void {
  let cancelled = false;
  void shown.then(() => {
    if (!cancelled) work();
  });
  return () => {
    cancelled = true;
  };
}
