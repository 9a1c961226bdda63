/**
 * The one-line status of an admin step (working, done, or a coded error) shown on the card that
 * started it. Its own module so the queue's pending admin actions (loaded with the first view) do
 * not pull the Agents view into the first chunk.
 */
import type { ShownError } from './admin-ceremony.js';

export type Status = { kind: 'working'; text: string } | { kind: 'done'; text: string } | ({ kind: 'error' } & ShownError);

export function StatusLine({ status, testId }: { status: Status | undefined; testId: string }) {
  if (status === undefined) return null;
  if (status.kind === 'error')
    return (
      <p className="error" role="alert" data-testid={testId} data-code={status.code}>
        {status.message} <code>[{status.code}]</code>
      </p>
    );
  return (
    <p className={status.kind === 'done' ? 'success' : 'muted'} role="status" data-testid={testId} data-state={status.kind}>
      {status.text}
    </p>
  );
}
