/**
 * Reads whose answers may arrive out of order. A view reads again on a push event, a timer, a
 * button, a person's new filter or another request to show; on a slow machine or network a later
 * read can answer first, and an older answer arriving after it would put back what the person had
 * moved past (rows of the previous search, a decided request, another request's card). With this,
 * an answer is shown only when no read started after it has been shown already: the screen never
 * goes back to an older state, and no read is starved (each newer answer is always shown).
 */
export interface NewestAnswer {
  /** A read starts: call the returned function when its answer (or failure) arrives; false means drop it. */
  begin(): () => boolean;
}

export function newestAnswer(): NewestAnswer {
  let started = 0;
  let shown = 0;
  return {
    begin() {
      const mine = ++started;
      return () => {
        if (mine < shown) return false;
        shown = mine;
        return true;
      };
    },
  };
}
