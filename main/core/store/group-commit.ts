/**
 * Group commit: decisions that arrive in the same event-loop turn share one durable COMMIT
 * (one WAL fsync under synchronous=FULL) instead of paying one each. Each unit of work runs in
 * its own SAVEPOINT, so a unit that throws is rolled back alone and the others still commit.
 * Nobody is answered before the COMMIT that holds their rows has returned: a result is only
 * ever released once it is durable. If the COMMIT itself fails, every unit in it fails.
 */
import type { Db } from './database.js';

interface Unit {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitOptions {
  /** Most units in one transaction (bounds the latency one COMMIT adds). */
  maxBatch?: number;
}

export class GroupCommitter {
  private queue: Unit[] = [];
  private scheduled = false;
  private readonly maxBatch: number;

  constructor(private readonly db: Db, options: GroupCommitOptions = {}) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256);
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
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db.transaction(() => {
        for (const unit of batch) {
          try {
            // A transaction function called inside a transaction runs as a SAVEPOINT.
            outcomes.push({ ok: true, value: this.db.transaction(unit.work)() });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      }).immediate();
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
