/**
 * One reload for a burst of push events. A view re-reads its data on each event the core pushes;
 * a replayed burst (the event stream coming back with `Last-Event-ID`) or a busy moment delivers
 * dozens at once, and each used to start its own round of requests. Requests made while a reload
 * is scheduled are the same reload; requests made while one runs add exactly one more after it
 * (what it read may predate the event). So a burst of any size costs a view one reload, two when
 * it straddles one already running. A timer, not an animation frame: a hidden tab must still keep
 * its notifications and title count current, and browsers do not run animation frames there.
 */
export interface CoalescedReload {
  /** Ask for a reload: it runs on the next turn of the event loop, once however often asked. */
  request(): void;
  /** The view is going away: nothing scheduled runs and nothing more is scheduled. */
  cancel(): void;
}

export function coalescedReload(reload: () => Promise<unknown> | undefined | void): CoalescedReload {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let again = false;
  let cancelled = false;
  const run = async () => {
    timer = undefined;
    running = true;
    try {
      await reload();
    } catch {
      // Each view's load shows its own errors; a failed reload must not stop later ones.
    } finally {
      running = false;
      if (again && !cancelled) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    timer ??= setTimeout(() => void run(), 0);
  };
  return {
    request() {
      if (cancelled) return;
      if (running) again = true;
      else schedule();
    },
    cancel() {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
