/**
 * "I just decided a request" within this page. A partial approval (1 of 2) carries no push event
 * (the core pushes only `pending` and `decided`), so without this the header's "waiting for you"
 * count kept the request its own approver had just decided until the next event or the 30 s
 * refresh. The views that run a ceremony announce its recorded outcome here; the notifier listens.
 */
type Listener = (requestId: string) => void;

const listeners = new Set<Listener>();

/** Called after the server recorded this person's approval or denial of `requestId`. */
export function announceOwnDecision(requestId: string): void {
  for (const listener of [...listeners]) listener(requestId);
}

/** Listen for this page's own recorded decisions; returns the unsubscribe. */
export function onOwnDecision(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
