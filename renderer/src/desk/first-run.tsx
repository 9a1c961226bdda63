/**
 * First run: while no admin exists, the desk walks whoever started the app through creating the
 * first admin (name and id), registering that admin's security key with the code the server
 * issues (shown, and kept in this page only), signing the new admin in with that key (admin actions
 * need the signed-in admin, ADR 0010), and enrolling a first agent from its enrollment request file
 * with the new admin's key tap. The server opens this only while no admin exists
 * (first-run.ts); a second desk racing this one is refused with first_run_closed.
 */
import { useEffect, useId, useState } from 'react';
import { startAuthentication } from '@simplewebauthn/browser';
import type { CountersignBridge } from '../../../shared/bridge-table.js';
import type { FirstAdmin } from '../../../shared/bridge-admin.js';
import { authenticatorLabel } from '../../../shared/authenticators.js';
import { registerSecurityKey, shownError } from './admin-ceremony.js';
import { EnrollAgentForm } from './agents-view.js';
import { StatusLine, type Status } from './status-line.js';
import { SecurityKeysExplained } from './approvers-view.js';
import type { DeskSessionView } from '../../../shared/desk-session.js';

type Step =
  | { kind: 'closed' }
  | { kind: 'admin' }
  | { kind: 'key'; admin: FirstAdmin }
  | { kind: 'signin'; admin: FirstAdmin; keyLabel: string }
  | { kind: 'agent'; admin: FirstAdmin; keyLabel: string }
  | { kind: 'done'; agentId: string };

/**
 * Shown above the desk's views; renders nothing once an admin exists (unless this desk is mid-setup).
 * onSignedIn receives the new admin's desk session once their key has signed them in.
 */
export function FirstRunGate({
  bridge,
  onSignedIn,
}: {
  bridge: CountersignBridge;
  onSignedIn?: ((session: DeskSessionView) => void) | undefined;
}) {
  const ids = useId();
  const [step, setStep] = useState<Step>({ kind: 'closed' });
  const [adminId, setAdminId] = useState('');
  const [name, setName] = useState('');
  const [status, setStatus] = useState<Status | undefined>();

  useEffect(() => {
    let active = true;
    bridge
      .getFirstRun()
      .then((state) => {
        if (active && state.open) setStep((now) => (now.kind === 'closed' ? { kind: 'admin' } : now));
      })
      .catch(() => undefined);
    return () => {
      active = false;
    };
  }, [bridge]);

  if (step.kind === 'closed') return null;

  const createAdmin = async () => {
    setStatus({ kind: 'working', text: 'Creating the first admin…' });
    try {
      const admin = await bridge.createFirstAdmin(adminId.trim(), name.trim());
      setStatus(undefined);
      setStep({ kind: 'key', admin });
    } catch (caught) {
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };

  const registerKey = async (admin: FirstAdmin) => {
    setStatus({ kind: 'working', text: 'Touch your security key (insert it first if needed)…' });
    try {
      const key = await registerSecurityKey(bridge, admin.approverId, admin.code);
      const keyLabel = authenticatorLabel(key.aaguid);
      setStep({ kind: 'signin', admin, keyLabel });
      await signIn(admin, keyLabel);
    } catch (caught) {
      // A refused or cancelled attempt leaves the code valid: the same button tries again.
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };

  // Admin actions need the signed-in admin: the key just registered signs them in (a second tap).
  const signIn = async (admin: FirstAdmin, keyLabel: string) => {
    setStatus({ kind: 'working', text: 'Touch your security key again to sign in…' });
    try {
      const { options } = await bridge.beginSignIn(admin.approverId);
      const response = await startAuthentication({ optionsJSON: options });
      const { session } = await bridge.finishSignIn(admin.approverId, response);
      onSignedIn?.(session);
      setStatus(undefined);
      setStep({ kind: 'agent', admin, keyLabel });
    } catch (caught) {
      // The key is stored; a failed sign-in is retried with the sign-in button (not the used code).
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };

  return (
    <section className="panel first-run" aria-labelledby="first-run-title" data-testid="first-run" data-step={step.kind}>
      <h2 id="first-run-title">Set up Countersign</h2>
      <ol className="first-run-steps" aria-label="Setup steps">
        <li aria-current={step.kind === 'admin' ? 'step' : undefined}>Create the first admin</li>
        <li aria-current={step.kind === 'key' ? 'step' : undefined}>Register their security key</li>
        <li aria-current={step.kind === 'agent' ? 'step' : undefined}>Enroll a first agent</li>
      </ol>
      {step.kind === 'admin' && (
        <form
          className="admin-form"
          aria-label="Create the first admin"
          onSubmit={(e) => {
            e.preventDefault();
            void createAdmin();
          }}
        >
          <p>No admin exists yet. The first admin is created here, on this machine; every later change needs their security key.</p>
          <div className="field-grid">
            <label htmlFor={`${ids}-id`}>Your id (for example your email)</label>
            <input
              id={`${ids}-id`}
              data-testid="first-admin-id"
              autoComplete="username"
              value={adminId}
              onChange={(e) => setAdminId(e.target.value)}
            />
            <label htmlFor={`${ids}-name`}>Your name</label>
            <input
              id={`${ids}-name`}
              data-testid="first-admin-name"
              autoComplete="name"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
          </div>
          <button
            type="submit"
            data-testid="first-admin-create"
            disabled={adminId.trim().length === 0 || name.trim().length === 0 || status?.kind === 'working'}
          >
            Create admin
          </button>
        </form>
      )}
      {step.kind === 'key' && (
        <div>
          <p>
            Admin <strong>{step.admin.approverId}</strong> created. Their registration code (single use, valid until{' '}
            {new Date(step.admin.expiresAt).toLocaleString()}) is <code data-testid="first-admin-code">{step.admin.code}</code>. It is used
            only when a key is stored: if the browser offers a built-in authenticator it is refused and the code stays valid.
          </p>
          <button
            type="button"
            data-testid="first-admin-register"
            disabled={status?.kind === 'working'}
            onClick={() => void registerKey(step.admin)}
          >
            Register my security key
          </button>
        </div>
      )}
      {step.kind === 'signin' && (
        <div>
          <p className="success" role="status" data-testid="first-admin-key">
            Security key registered: {step.keyLabel}.
          </p>
          <p>Sign in with it to continue: admin changes are made by the signed-in admin.</p>
          <button
            type="button"
            data-testid="first-admin-sign-in"
            disabled={status?.kind === 'working'}
            onClick={() => void signIn(step.admin, step.keyLabel)}
          >
            Sign in with my security key
          </button>
        </div>
      )}
      {step.kind === 'agent' && (
        <div>
          <p className="success" role="status" data-testid="first-admin-key">
            Security key registered: {step.keyLabel}. Signed in as <strong>{step.admin.approverId}</strong>.
          </p>
          <p>
            Now enroll a first agent. On the agent&apos;s machine, <code>countersign keygen --agent-id ID</code> (or the agent SDK) writes
            an enrollment request file; drop it below and choose what the agent may do. Confirm with a tap of your key.
          </p>
          <EnrollAgentForm
            bridge={bridge}
            adminId={step.admin.approverId}
            defaultOwner={step.admin.approverId}
            onEnrolled={(agentId) => setStep({ kind: 'done', agentId })}
          />
        </div>
      )}
      {step.kind === 'done' && (
        <p className="success" role="status" data-testid="first-run-done">
          Setup complete: agent <strong>{step.agentId}</strong> is enrolled. You are signed in as the admin; more agents and people are
          added from the Agents and Approvers views.
        </p>
      )}
      <StatusLine status={status} testId="first-run-status" />
      {(step.kind === 'admin' || step.kind === 'key') && <SecurityKeysExplained />}
    </section>
  );
}
