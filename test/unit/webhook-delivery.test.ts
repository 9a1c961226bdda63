/**
 * The webhook delivery loop over a real SQLite outbox and a real group committer: after the
 * committer's write-ahead-log sync has failed (store_failed: nothing more is acknowledged until a
 * restart), the loop stops instead of retrying the same due rows every few milliseconds. A
 * failing fdatasync cannot be produced by a healthy disk on demand: it is injected here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Db } from '../../main/core/store/database.js';
import { GroupCommitter, type FileSync } from '../../main/core/store/group-commit.js';
import { WebhookOutbox } from '../../main/core/notify/webhook-outbox.js';
import { WebhookDelivery } from '../../main/core/notify/webhook-delivery.js';

let dir: string;
let db: Db;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'countersign-webhook-delivery-'));
  db = openStore(join(dir, 'countersign.db'));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('webhook delivery', () => {
  it('stops after the store could not make a commit durable, logging it once instead of spinning on the due row', async () => {
    const failing: FileSync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const committer = new GroupCommitter(db, { syncFile: failing });
    const outbox = new WebhookOutbox(db, [{ id: 'ops', events: ['approval.pending'] }], () => 'http://127.0.0.1:1/ui/');
    const logs: string[] = [];
    const delivery = new WebhookDelivery(
      outbox,
      [{ id: 'ops', url: 'http://127.0.0.1:1/hook', secret: 'whsec-test' }],
      { maxAttempts: 3, initialBackoffMs: 1_000, maxBackoffMs: 10_000, timeoutMs: 1_000 },
      { now: Date.now, log: (m) => logs.push(m), durable: () => committer.durable() },
    );
    // A row queued by a group whose sync then fails: committed in the process, never durable.
    const queued = committer.run(() =>
      db
        .prepare(
          `INSERT INTO webhook_outbox (delivery_id, webhook_id, event, request_id, body, state, attempts, next_at, created_at)
           VALUES ('d-1', 'ops', 'approval.pending', NULL, '{}', 'pending', 0, 0, 0)`,
        )
        .run(),
    );
    delivery.kick();
    await expect(queued).rejects.toMatchObject({ code: 'store_failed' });
    await new Promise((r) => setTimeout(r, 300));
    await delivery.stop();
    // Nothing was attempted (the row is as queued) and the loop said so once.
    expect(db.prepare("SELECT state, attempts FROM webhook_outbox WHERE delivery_id = 'd-1'").get()).toEqual({
      state: 'pending',
      attempts: 0,
    });
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/^webhook delivery stopped until countersign restarts .*write-ahead log durable/);
  });
});
