/**
 * The durable webhook outbox (table webhook_outbox, migration 15). Rows are written by an audit
 * observer, inside the transaction of the audit entry they announce: a request that becomes
 * pending and its notification commit together or not at all, and a crash loses neither. The
 * delivery loop (webhook-delivery.ts) takes due rows; after the last attempt a row is dead,
 * listed in the desk (admin), and may be put back to pending from there.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../store/database.js';
import type { AuditEventFields, AuditKind } from '../../../shared/audit-events.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import type { WebhookConfig } from '../config.js';
import { messageFor, webhookBody } from './webhook-payload.js';

export interface OutboxRow {
  readonly id: number;
  readonly deliveryId: string;
  readonly webhookId: string;
  readonly event: string;
  readonly requestId: string | null;
  readonly body: string;
  readonly attempts: number;
  readonly nextAt: number;
  readonly lastError: string | null;
  readonly createdAt: number;
  readonly finishedAt: number | null;
}

interface RawRow {
  id: number;
  delivery_id: string;
  webhook_id: string;
  event: string;
  request_id: string | null;
  body: string;
  attempts: number;
  next_at: number;
  last_error: string | null;
  created_at: number;
  finished_at: number | null;
}

const toRow = (r: RawRow): OutboxRow => ({
  id: r.id,
  deliveryId: r.delivery_id,
  webhookId: r.webhook_id,
  event: r.event,
  requestId: r.request_id,
  body: r.body,
  attempts: r.attempts,
  nextAt: r.next_at,
  lastError: r.last_error,
  createdAt: r.created_at,
  finishedAt: r.finished_at,
});

export class WebhookOutbox {
  private readonly insert;
  private readonly dueRows;
  private readonly nextDue;
  private readonly delivered;
  private readonly failed;
  private readonly deadRows;
  private readonly revive;

  constructor(
    private readonly db: Db,
    private readonly webhooks: readonly Pick<WebhookConfig, 'id' | 'events'>[],
    /** The desk's base URL for links (read at enqueue: the port is known once the server listens). */
    private readonly deskUrl: () => string,
  ) {
    this.insert = db.prepare(
      `INSERT INTO webhook_outbox (delivery_id, webhook_id, event, request_id, body, state, attempts, next_at, created_at)
       VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
    );
    this.dueRows = db.prepare<[number, number], RawRow>(
      "SELECT * FROM webhook_outbox WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
    );
    this.nextDue = db.prepare<[], { at: number | null }>("SELECT MIN(next_at) AS at FROM webhook_outbox WHERE state = 'pending'");
    this.delivered = db.prepare(
      "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, finished_at = ?, last_error = NULL WHERE id = ? AND state = 'pending'",
    );
    this.failed = db.prepare(
      "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, next_at = ?, last_error = ?, finished_at = ? WHERE id = ? AND state = 'pending'",
    );
    this.deadRows = db.prepare<[number], RawRow>(
      "SELECT * FROM webhook_outbox WHERE state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT ?",
    );
    this.revive = db.prepare(
      "UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_at = ?, finished_at = NULL WHERE delivery_id = ? AND state = 'dead'",
    );
  }

  /** The audit observer: queue one delivery per subscribed webhook (runs inside the append's transaction); true when it queued one. */
  readonly observe = <K extends AuditKind>(kind: K, at: number, event: AuditEventFields<K>): boolean => {
    if (this.webhooks.length === 0) return false;
    const message = messageFor(kind, event);
    if (message === undefined) return false;
    let queued = false;
    for (const hook of this.webhooks) {
      if (!hook.events.includes(message.event)) continue;
      const deliveryId = randomUUID();
      this.insert.run(deliveryId, hook.id, message.event, message.requestId, webhookBody(message, deliveryId, this.deskUrl(), at), at, at);
      queued = true;
    }
    return queued;
  };

  due(now: number, limit: number): OutboxRow[] {
    return this.dueRows.all(now, limit).map(toRow);
  }

  /** When the earliest pending row falls due, if any. */
  nextDueAt(): number | undefined {
    return this.nextDue.get()?.at ?? undefined;
  }

  markDelivered(id: number, now: number): void {
    this.delivered.run(now, id);
  }

  /** One failed attempt: back off to `retryAt`, or dead when `retryAt` is undefined. */
  markFailed(id: number, error: string, now: number, retryAt: number | undefined): void {
    if (retryAt === undefined) this.failed.run('dead', now, error.slice(0, 500), now, id);
    else this.failed.run('pending', retryAt, error.slice(0, 500), null, id);
  }

  deadLetters(limit = 200): OutboxRow[] {
    return this.deadRows.all(limit).map(toRow);
  }

  /** Put a dead delivery back in the queue, due now, with a fresh attempt budget. */
  retry(deliveryId: string, now: number): void {
    const changed = this.db.transaction(() => this.revive.run(now, deliveryId).changes).immediate();
    if (changed === 0)
      throw new CountersignError('webhook_dead_letter_unknown', `no dead-lettered webhook delivery has the id ${quote(deliveryId)}`);
  }
}
