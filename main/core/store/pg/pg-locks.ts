/**
 * Every PostgreSQL advisory lock key the team database uses, in one table, so no two features
 * share a key by accident: a shared key makes unrelated writers wait for each other (the team key
 * set once took the directory's key). The one-key locks share PostgreSQL's bigint key space;
 * `heldCalls` is the first key of the two-key form (the agent id's hash is the second), which
 * PostgreSQL keeps in a space of its own. test/unit/pg-locks.test.ts keeps the keys distinct.
 */
export const PG_LOCKS = {
  /** Migrations run once, whichever hub comes first (pg-decision-store.ts). */
  migrations: 0x435301,
  /** Held by the hub that sequences the team audit log (audit/pg-audit-leader.ts). */
  auditLeader: 0x435302,
  /** With the agent id's hash: an agent's held calls are written one at a time (pending cap, merging). */
  heldCalls: 0x435303,
  /** Directory writes take the next change-log sequence number under it (pg-directory.ts). */
  directory: 0x435304,
  /** Changes of the team's signing key set (keys/team-key-set.ts). */
  teamKeys: 0x435305,
} as const;
