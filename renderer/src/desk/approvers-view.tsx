/**
 * Approvers and keys (admin): people with their groups and aliases, their security keys with make
 * and model (from the AAGUID, shared/authenticators.ts), attestation format and transports, suspect
 * keys highlighted; add a person, issue a registration code, disable a person, disable a key. Every
 * change is an admin action confirmed by the admin's key tap. The "Security keys" section explains
 * which authenticators are accepted.
 */
import { useCallback, useEffect, useId, useState } from 'react';
import type { DeskViewProps } from './desk-view.js';
import type { ApproverDetail, ApproverKey } from '../../../shared/bridge-admin.js';
import type { AdminAction } from '../../../shared/admin-actions.js';
import { authenticatorLabel, describeAuthenticator } from '../../../shared/authenticators.js';
import { runAdminAction, shownError, type ShownError } from './admin-ceremony.js';
import { StatusLine, type Status } from './status-line.js';

/** Which authenticators are accepted, in words (shown here and in the first run). */
export function SecurityKeysExplained() {
  return (
    <section className="panel" aria-labelledby="security-keys-title" data-testid="security-keys-help">
      <h2 id="security-keys-title">Security keys</h2>
      <p>
        Approvals and admin actions are signed with a <strong>roaming security key</strong>: a FIDO2 key you carry and plug in or tap (USB,
        NFC or Bluetooth), such as a YubiKey 5, Google Titan, Feitian ePass or SoloKeys Solo. It must support user verification (a PIN or
        fingerprint on the key) and uses P-256 (ES256).
      </p>
      <p>
        <strong>Built-in platform authenticators are refused</strong> (Windows Hello, Touch ID, a phone&apos;s screen lock, or a passkey
        synced by a password manager): they stay on one device or sync between devices, so they cannot prove the person was there with their
        own key. If the browser offers one, the desk refuses it at once, and your registration code stays valid for a security key.
      </p>
    </section>
  );
}

function KeyRow({ k, onDisable }: { k: ApproverKey; onDisable: (() => void) | undefined }) {
  const model = describeAuthenticator(k.aaguid);
  return (
    <li
      className={k.status === 'suspect' ? 'key-row key-suspect' : 'key-row'}
      data-testid="approver-key"
      data-status={k.status}
      data-aaguid={k.aaguid}
    >
      {/* The details wrap within their own box (a long key id breaks anywhere) and the button keeps
          its own place beside them, or below them when the row is narrow: they never run together. */}
      <div className="key-details">
        <strong>{authenticatorLabel(k.aaguid)}</strong> {model?.kind === 'test' && <span className="badge badge-test">test only</span>}{' '}
        <span className={`state state-${k.status === 'active' ? 'active' : 'revoked'}`}>{k.status}</span>
        {k.status === 'suspect' && <span className="suspect-note"> — its signature counter went backwards (a cloned key?): refused</span>}
        <br />
        <span className="muted">
          attestation {k.attestationFmt}
          {k.transports.length > 0 ? ` · ${k.transports.join(', ')}` : ''} · registered {new Date(k.createdAt).toLocaleDateString()}
          {k.lastUsedAt !== undefined ? ` · last used ${new Date(k.lastUsedAt).toLocaleString()}` : ''}
        </span>{' '}
        <code className="id" title={k.credentialId} data-testid="key-fingerprint">
          {k.credentialId.slice(0, 12)}…
        </code>
      </div>
      {onDisable && k.status !== 'removed' && (
        <button type="button" className="danger" data-testid="disable-key" onClick={onDisable}>
          Disable key (key tap)
        </button>
      )}
    </li>
  );
}

export function ApproversView({ bridge, session }: DeskViewProps) {
  const ids = useId();
  const [people, setPeople] = useState<ApproverDetail[] | undefined>();
  const [error, setError] = useState<ShownError | undefined>();
  const [status, setStatus] = useState<Status | undefined>();
  const [issued, setIssued] = useState<{ approverId: string; code: string } | undefined>();
  const [newId, setNewId] = useState('');
  const [newName, setNewName] = useState('');
  const [newGroups, setNewGroups] = useState('');
  const reload = useCallback(() => {
    bridge
      .listApproverDirectory()
      .then((list) => {
        setPeople(list.approvers);
        setError(undefined);
      })
      .catch((caught: unknown) => setError(shownError(caught)));
  }, [bridge]);
  useEffect(reload, [reload]);

  const act = async (what: string, action: AdminAction) => {
    setStatus({ kind: 'working', text: `Touch your security key to confirm: ${what}…` });
    setIssued(undefined);
    try {
      const outcome = await runAdminAction(bridge, session.approverId, action);
      // A new person or a re-issued code comes back once: show it now, it is never shown again.
      const registration = (outcome.result.registration ?? outcome.result) as { code?: unknown };
      if ((action.kind === 'approver.add' || action.kind === 'approver.issue_registration_code') && typeof registration.code === 'string')
        setIssued({ approverId: action.id, code: registration.code });
      setStatus({ kind: 'done', text: `Done: ${what}.` });
      reload();
    } catch (caught) {
      setStatus({ kind: 'error', ...shownError(caught) });
    }
  };

  return (
    <div className="admin-view" data-testid="approvers-view">
      <section className="panel" aria-labelledby="approvers-view-title">
        <h2 id="approvers-view-title">Approvers and keys</h2>
        <StatusLine status={status} testId="approvers-status" />
        {issued && (
          <p className="success" role="status" data-testid="issued-code">
            Registration code for <strong>{issued.approverId}</strong> (shown once, valid 24 hours, single use): <code>{issued.code}</code>
          </p>
        )}
        <form
          className="admin-form"
          aria-label="Add an approver"
          onSubmit={(e) => {
            e.preventDefault();
            const groups = newGroups
              .split(',')
              .map((g) => g.trim())
              .filter((g) => g.length > 0);
            void act(`add ${newId.trim()}`, { kind: 'approver.add', id: newId.trim(), displayName: newName.trim(), groups });
          }}
        >
          <h3>Add a person</h3>
          <div className="field-grid">
            <label htmlFor={`${ids}-id`}>Id (for example an email)</label>
            <input id={`${ids}-id`} data-testid="approver-new-id" value={newId} onChange={(e) => setNewId(e.target.value)} />
            <label htmlFor={`${ids}-name`}>Name</label>
            <input id={`${ids}-name`} data-testid="approver-new-name" value={newName} onChange={(e) => setNewName(e.target.value)} />
            <label htmlFor={`${ids}-groups`}>Groups (comma separated)</label>
            <input
              id={`${ids}-groups`}
              data-testid="approver-new-groups"
              value={newGroups}
              onChange={(e) => setNewGroups(e.target.value)}
            />
          </div>
          <button type="submit" data-testid="approver-add" disabled={newId.trim().length === 0 || newName.trim().length === 0}>
            Add (key tap)
          </button>
        </form>
        {error && (
          <p className="error" role="alert">
            {error.message} <code>[{error.code}]</code>
          </p>
        )}
        <ul className="admin-list">
          {people?.map((person) => {
            const suspect = person.keys.some((k) => k.status === 'suspect');
            return (
              <li
                key={person.id}
                className={suspect ? 'admin-card admin-card-suspect' : 'admin-card'}
                data-testid="approver-card"
                data-approver-id={person.id}
              >
                <h3>
                  {person.displayName} <code className="id">{person.id}</code>{' '}
                  <span className={`state state-${person.status === 'active' ? 'active' : 'revoked'}`}>{person.status}</span>
                  {person.virtual && <span className="badge badge-test">virtual</span>}
                </h3>
                <p>
                  Groups: {person.groups.length === 0 ? <span className="muted">none</span> : person.groups.join(', ')}
                  {person.aliases.length > 0 && <> · Aliases: {person.aliases.join(', ')}</>}
                </p>
                {person.keys.length === 0 ? (
                  <p className="muted">No security key registered yet.</p>
                ) : (
                  <ul className="key-list" aria-label={`Security keys of ${person.displayName}`}>
                    {person.keys.map((k) => (
                      <KeyRow
                        key={k.credentialId}
                        k={k}
                        onDisable={() =>
                          void act(`disable a key of ${person.id}`, { kind: 'credential.remove', credentialId: k.credentialId })
                        }
                      />
                    ))}
                  </ul>
                )}
                {person.status === 'active' && (
                  <div className="actions">
                    <button
                      type="button"
                      data-testid="issue-code"
                      onClick={() =>
                        void act(`issue a registration code for ${person.id}`, { kind: 'approver.issue_registration_code', id: person.id })
                      }
                    >
                      Issue registration code (key tap)
                    </button>
                    {person.id !== session.approverId && (
                      <button
                        type="button"
                        className="danger"
                        data-testid="disable-approver"
                        onClick={() => void act(`disable ${person.id}`, { kind: 'approver.disable', id: person.id })}
                      >
                        Disable person (key tap)
                      </button>
                    )}
                  </div>
                )}
              </li>
            );
          })}
        </ul>
      </section>
      <SecurityKeysExplained />
    </div>
  );
}
