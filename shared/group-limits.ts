/**
 * How large a merged group of identical calls may grow. Without zod, so the desk's first paint
 * can check a queue page's `count` and `followers` by hand (shared/desk-first-answers.ts);
 * shared/approvals.ts re-exports it for everyone else.
 */

/**
 * Most followers one merged group holds (one primary plus this many). Every assertion in a token
 * repeats the list, so it is kept small enough for a quorum's assertions to fit a token.
 */
export const MAX_GROUP_FOLLOWERS = 31;
