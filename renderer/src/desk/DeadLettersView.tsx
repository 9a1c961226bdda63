/**
 * The admin's webhook dead letters: deliveries that failed their last attempt (why, when, for
 * which request), each with a Retry button that puts it back in the outbox queue. Webhooks only
 * ever link to the desk, so retrying one never approves anything.
 */
import { useCallback, useEffect, useState } from 'react';
import type { WebhookDeadLetter } from '../../../shared/bridge.js';
import { toCountersignError } from '../../../shared/bridge.js';
import type { DeskViewProps } from './desk-view.js';

export function DeadLettersView({ bridge, navigate }: DeskViewProps) {
  const [letters, setLetters] = useState<WebhookDeadLetter[] | undefined>();
  const [message, setMessage] = useState<{ kind: 'error' | 'status'; text: string } | undefined>();

  const load = useCallback(async () => {
    try {
      setLetters((await bridge.listWebhookDeadLetters()).deadLetters);
    } catch (caught) {
      const err = toCountersignError(caught);
      setMessage({ kind: 'error', text: `${err.message} [${err.code}]` });
    }
  }, [bridge]);

  useEffect(() => {
    void load();
  }, [load]);

  const retry = async (deliveryId: string) => {
    try {
      await bridge.retryWebhookDeadLetter(deliveryId);
      setMessage({ kind: 'status', text: `Delivery ${deliveryId} is queued again.` });
      await load();
    } catch (caught) {
      const err = toCountersignError(caught);
      setMessage({ kind: 'error', text: `${err.message} [${err.code}]` });
    }
  };

  return (
    <section className="panel webhook-dead-letters" aria-labelledby="dead-letters-title">
      <h2 id="dead-letters-title">Webhook dead letters</h2>
      <p className="muted">
        Deliveries that failed every attempt. Retry sends the same signed notification again; it never approves anything.
      </p>
      {message && (
        <p role={message.kind === 'error' ? 'alert' : 'status'} className={message.kind === 'error' ? 'error' : 'muted'}>
          {message.text}
        </p>
      )}
      <button type="button" onClick={() => void load()} data-testid="dead-letters-refresh">
        Refresh
      </button>
      {letters === undefined ? (
        <p className="muted">Loading…</p>
      ) : letters.length === 0 ? (
        <p className="muted" data-testid="dead-letters-empty">
          No dead letters.
        </p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Failed</th>
              <th>Webhook</th>
              <th>Event</th>
              <th>Request</th>
              <th>Attempts</th>
              <th>Last error</th>
              <th>Action</th>
            </tr>
          </thead>
          <tbody>
            {letters.map((d) => (
              <tr key={d.deliveryId} data-testid="dead-letter" data-delivery-id={d.deliveryId}>
                <td>{new Date(d.failedAt).toLocaleString()}</td>
                <td>{d.webhookId}</td>
                <td>
                  <code>{d.event}</code>
                </td>
                <td>
                  {d.requestId === null ? (
                    '—'
                  ) : (
                    <button type="button" className="link" onClick={() => navigate({ view: 'request', requestId: d.requestId ?? '' })}>
                      <code className="id">{d.requestId}</code>
                    </button>
                  )}
                </td>
                <td>{d.attempts}</td>
                <td>{d.lastError ?? '—'}</td>
                <td>
                  <button type="button" data-testid="dead-letter-retry" onClick={() => void retry(d.deliveryId)}>
                    Retry
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
