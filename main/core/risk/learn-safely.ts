/**
 * Run a baseline update inside its own savepoint of the caller's transaction. A failure there
 * (a missing or broken baseline table) must not lose the decision it belongs to: the update is
 * rolled back alone, the agent's profile is rebuilt from the database on next use, and the
 * fault is returned so the caller records it in the audit event.
 */
import type { Db } from '../store/database.js';
import type { RiskLearner } from './risk-ports.js';

const savepoints = new WeakMap<Db, (work: () => void) => void>();

export function learnSafely(
  db: Db,
  learner: RiskLearner | undefined,
  agentId: string,
  work: (learner: RiskLearner) => void,
): string | undefined {
  if (!learner) return undefined;
  let inSavepoint = savepoints.get(db);
  if (!inSavepoint) {
    inSavepoint = db.transaction((fn: () => void) => fn());
    savepoints.set(db, inSavepoint);
  }
  try {
    inSavepoint(() => work(learner));
    return undefined;
  } catch (error) {
    learner.forget(agentId);
    return (error instanceof Error ? `${error.name}: ${error.message}` : 'the baseline update failed').slice(0, 256);
  }
}
