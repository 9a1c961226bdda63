/**
 * Group commit: decisions that arrive in the same event-loop turn share one durable COMMIT
 * (one WAL fsync under synchronous=FULL) instead of paying one each. Each unit of work runs in
 * its own SAVEPOINT, so a unit that throws is rolled back alone and the others still commit.
 * Nobody is answered before the COMMIT that holds their rows has returned: a result is only
 * ever released once it is durable. If the COMMIT itself fails, every unit in it fails.
 */
import type Database from 'better-sqlite3';
import type { Db } from './database.js';

interface Unit {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Most units in one transaction (bounds the latency one COMMIT adds). */
  maxBatch?: number;
}

export class GroupCommitter {
  private queue: Unit[] = [];
  private scheduled = false;
  private readonly maxBatch: number;
  /** Runs one unit; called inside the group transaction it becomes a SAVEPOINT. */
  private readonly inSavepoint: (work: () => unknown) => unknown;
  /** The group: every unit of a batch, each in its savepoint, then one COMMIT. */
  private readonly group: Database.Transaction<(batch: Unit[], outcomes: Outcome[]) => void>;

  constructor(
    private readonly db: Db,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256);
    this.inSavepoint = db.transaction((work: () => unknown) => work());
    this.group = db.transaction((batch: Unit[], outcomes: Outcome[]) => {
      for (const unit of batch) {
        try {
          outcomes.push({ ok: true, value: this.inSavepoint(unit.work) });
        } catch (error) {
          outcomes.push({ ok: false, error });
        }
      }
    });
  }

  /** Run `work` inside the next group transaction; resolves after that transaction commits. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) setImmediate(() => this.flush());
    else this.scheduled = false;
    const outcomes: Outcome[] = [];
    try {
      this.group.immediate(batch, outcomes);
    } catch (error) {
      for (const unit of batch) unit.reject(error);
      return;
    }
    batch.forEach((unit, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) unit.resolve(outcome.value);
      else unit.reject(outcome.error);
    });
  }
}
