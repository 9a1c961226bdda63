/**
 * The UI: sign-in with a security key (the session belongs to the person whose key signed), an
 * overview (server status with loud warnings for the test key domain and for software key
 * custody, recent decisions, enrolled agents) and the approver's view (ApprovalsView: register a
 * security key, decide pending requests as the signed-in person). It knows only CountersignBridge.
 */
import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { AgentSummary, ApproverSummary, BridgeStatus, DecisionSummary } from '../../shared/bridge.js';
import type { CountersignBridge } from '../../shared/bridge-table.js';
import { toCountersignError } from '../../shared/errors.js';
import { newestAnswer } from './desk/newest-answer.js';
import type { DeskSession, DeskTarget } from './desk/desk-view.js';
import { DESK_VIEWS } from './desk/views.js';
import { NotificationControls, showAdminProposalNotice, useDeskNotifications } from './desk/desk-notifier.js';
import { AdminProposalsContext, useAdminProposals } from './desk/admin-proposals.js';
import type { DeskSessionView } from '../../shared/desk-session.js';
import { coalescedReload } from './desk/coalesced-reload.js';
import { afterQueueShown, queueShown, readSession } from './desk/first-paint.js';

// Not needed for the queue's first paint: each is its own chunk, fetched when first shown.
const ApprovalsView = lazy(async () => ({ default: (await import('./Approvals.js')).ApprovalsView }));
const FirstRunGate = lazy(async () => ({ default: (await import('./desk/first-run.js')).FirstRunGate }));

/** What shows while a view's chunk loads (a few ms on loopback). */
const VIEW_LOADING = (
  <p className="muted" data-testid="view-loading">
    Loading…
  </p>
);

export type BridgeChoice = { kind: 'ready'; transport: 'ipc' | 'http'; bridge: CountersignBridge } | { kind: 'no-secret' };

/**
 * The overview polls: most of what it shows (connections, allowed and denied calls, the tamper
 * alarm) has no push event. Pushed events (pending, decided) refresh it at once as well.
 */
const REFRESH_MS = 3_000;
const DECISION_COUNT = 100;

interface Snapshot {
  status: BridgeStatus;
  decisions: DecisionSummary[];
  agents: AgentSummary[];
  at: number;
}

interface LoadError {
  code: string;
  message: string;
}

export function App({
  choice,
  initialTarget,
  initialSession,
}: {
  choice: BridgeChoice;
  initialTarget?: DeskTarget | undefined;
  /** The session's first answer when main.tsx has it already (null: nobody signed in); undefined: read it. */
  initialSession?: DeskSessionView | null | undefined;
}) {
  if (choice.kind === 'no-secret') {
    return (
      <main className="app">
        <Header />
        <section className="notice" role="alert">
          <h2>Session link needed</h2>
          <p>
            Open the UI link that <code>countersign headless</code> printed when it started (it ends in <code>#secret=…</code>). The secret
            is kept only in this page&apos;s memory, so a reload needs the link again.
          </p>
        </section>
      </main>
    );
  }
  return <Dashboard bridge={choice.bridge} transport={choice.transport} initialTarget={initialTarget} initialSession={initialSession} />;
}

function Header({ status }: { status?: BridgeStatus | undefined }) {
  return (
    <header className="header">
      <h1>Countersign</h1>
      {status && (
        <>
          <span className="server-id">{status.serverId}</span>
          <span className={status.domain === 'test' ? 'badge badge-test' : 'badge badge-production'}>
            {status.domain === 'test' ? 'TEST domain' : 'production domain'}
          </span>
        </>
      )}
    </header>
  );
}

function Dashboard({
  bridge,
  transport,
  initialTarget,
  initialSession,
}: {
  bridge: CountersignBridge;
  transport: 'ipc' | 'http';
  initialTarget?: DeskTarget | undefined;
  initialSession?: DeskSessionView | null | undefined;
}) {
  const [snapshot, setSnapshot] = useState<Snapshot | undefined>();
  const [error, setError] = useState<LoadError | undefined>();
  const [target, setTarget] = useState<DeskTarget>(initialTarget ?? { view: 'queue' });
  const view = target.view;
  // A view the person chose (a deep link, a tab, a link, a notification) is never taken from them
  // by an answer that arrives later: the first-run check answers after the queue's first paint,
  // which on a slow machine is after the first click.
  const viewChosen = useRef(initialTarget !== undefined);
  const choose = useCallback((next: DeskTarget) => {
    viewChosen.current = true;
    setTarget(next);
  }, []);
  const setView = (id: string) => choose({ view: id });
  const session = useDeskSession(bridge, initialSession);
  const firstRun = useFirstRunOpen(bridge);
  // While no admin exists the desk opens on the setup screen (a deep link keeps its target);
  // once set up here, the tab stays for the rest of this page so the walk-through can finish.
  const [setupSeen, setSetupSeen] = useState(false);
  useEffect(() => {
    if (firstRun !== true || setupSeen) return;
    setSetupSeen(true);
    if (!viewChosen.current) setTarget({ view: SETUP_VIEW });
  }, [firstRun, setupSeen]);
  const adminProposals = useAdminProposals(bridge, session.current, (proposal) =>
    showAdminProposalNotice(proposal, () => choose({ view: 'queue' })),
  );
  const notifications = useDeskNotifications(bridge, session.current, choose, adminProposals.awaitingMe);
  // The desk did not open on the queue (nobody signed in, or another view): nothing waits for it.
  useEffect(() => {
    if (session.view === null || (session.view !== undefined && view !== 'queue')) queueShown();
  }, [session.view, view]);
  const [approvalsVisited, setApprovalsVisited] = useState(view === 'approvals');
  if (view === 'approvals' && !approvalsVisited) setApprovalsVisited(true);

  useEffect(() => {
    let active = true;
    const refresh = async () => {
      try {
        const [status, decisions, agents] = await Promise.all([
          bridge.getStatus(),
          bridge.listRecentDecisions(DECISION_COUNT),
          bridge.listAgents(),
        ]);
        if (!active) return;
        setSnapshot({ status, decisions, agents, at: Date.now() });
        setError(undefined);
      } catch (caught) {
        if (!active) return;
        const err = toCountersignError(caught);
        setError({ code: err.code, message: err.message });
      }
    };
    // Not before the queue's first paint (first-paint.ts): the 100 decisions and the agents would
    // compete with it; the header and the tamper alarm follow a moment after the queue.
    let timer: number | undefined;
    const stopWaiting = afterQueueShown(() => {
      void refresh();
      timer = window.setInterval(() => void refresh(), REFRESH_MS);
    });
    const reload = coalescedReload(refresh);
    const unsubscribe = bridge.subscribe(() => reload.request());
    return () => {
      stopWaiting();
      reload.cancel();
      active = false;
      window.clearInterval(timer);
      unsubscribe();
    };
  }, [bridge]);

  const desk = (
    <main className="app" data-desk-view={view} data-desk-request={target.requestId}>
      <Header status={snapshot?.status} />
      <AlarmBanner status={snapshot?.status} />
      {firstRun === true && view !== SETUP_VIEW && (
        <div className="banner banner-setup" role="status" data-testid="first-run-banner">
          <strong>Countersign is not set up yet:</strong> no admin exists, so no agent can be enrolled and no one can approve.{' '}
          <button type="button" className="link-button" data-testid="first-run-open" onClick={() => setView(SETUP_VIEW)}>
            Set up Countersign
          </button>
        </div>
      )}
      <nav className="tabs" role="tablist" aria-label="Views">
        {setupSeen && (
          <button
            type="button"
            role="tab"
            aria-selected={view === SETUP_VIEW}
            className={view === SETUP_VIEW ? 'tab tab-active' : 'tab'}
            data-testid="tab-setup"
            onClick={() => setView(SETUP_VIEW)}
          >
            Set up
          </button>
        )}
        <button
          type="button"
          role="tab"
          aria-selected={view === 'overview'}
          className={view === 'overview' ? 'tab tab-active' : 'tab'}
          data-testid="tab-overview"
          onClick={() => setView('overview')}
        >
          Overview
        </button>
        <button
          type="button"
          role="tab"
          aria-selected={view === 'approvals'}
          className={view === 'approvals' ? 'tab tab-active' : 'tab'}
          data-testid="tab-approvals"
          onClick={() => setView('approvals')}
        >
          Approvals
        </button>
        {session.current &&
          DESK_VIEWS.filter((row) => !row.hidden && (!row.admin || session.current?.admin)).map((row) => (
            <button
              key={row.id}
              type="button"
              role="tab"
              aria-selected={view === row.id}
              className={view === row.id ? 'tab tab-active' : 'tab'}
              data-testid={`tab-${row.id}`}
              onClick={() => setView(row.id)}
            >
              {row.label}
            </button>
          ))}
      </nav>
      {/* The first run is its own screen, loaded only while no admin exists (kept mounted so the
          walk-through survives switching views). */}
      {setupSeen && (
        <div hidden={view !== SETUP_VIEW}>
          <Suspense fallback={VIEW_LOADING}>
            <FirstRunGate bridge={bridge} onSignedIn={session.set} />
          </Suspense>
        </div>
      )}
      <SignIn bridge={bridge} state={session} />
      {!session.current && DESK_VIEWS.some((row) => row.id === view) && (
        <p className="muted" data-testid="desk-choose-person">
          Sign in with your security key to see the queue.
        </p>
      )}
      {session.current && <NotificationControls state={notifications} />}
      <Suspense fallback={VIEW_LOADING}>
        {session.current &&
          DESK_VIEWS.filter((row) => row.id === view && (!row.admin || session.current?.admin)).map(({ id, Component }) => (
            // One instance per request shown: another request opened from a notification starts
            // from nothing (no card, note or deny reason of the one before, none of its late answers).
            <Component
              key={target.requestId === undefined ? id : `${id}:${target.requestId}`}
              bridge={bridge}
              session={session.current as DeskSession}
              navigate={choose}
              requestId={target.requestId}
            />
          ))}
      </Suspense>
      {/* Mounted on its first visit, then kept (the chosen approver survives switching): it loads
          every pending request, which must not delay the queue's first paint (bench desk-paint). */}
      {approvalsVisited && (
        <div hidden={view !== 'approvals'}>
          <Suspense fallback={VIEW_LOADING}>
            <ApprovalsView bridge={bridge} session={session.current} />
          </Suspense>
        </div>
      )}
      <div hidden={view !== 'overview'}>
        {error && (
          <section className="error" role="alert">
            {error.code === 'not_authenticated'
              ? 'The session secret was not accepted (the server may have restarted). Open the new link it printed.'
              : `Could not load data: ${error.message}`}{' '}
            <code>[{error.code}]</code>
          </section>
        )}
        {snapshot && (
          <>
            <StatusPanel status={snapshot.status} transport={transport} at={snapshot.at} />
            <DecisionsTable decisions={snapshot.decisions} />
            <AgentsTable agents={snapshot.agents} />
          </>
        )}
        {!snapshot && !error && <p className="muted">Loading…</p>}
      </div>
    </main>
  );
  // The pending admin actions, read once here for every view that shows them (queue, Agents).
  return <AdminProposalsContext.Provider value={adminProposals}>{desk}</AdminProposalsContext.Provider>;
}

/** The first-run screen's view id (built into this file, like the overview and approvals). */
const SETUP_VIEW = 'setup';

/** Whether the first-run setup is open (no admin exists): read at start and again until it closes. */
function useFirstRunOpen(bridge: CountersignBridge): boolean | undefined {
  const [open, setOpen] = useState<boolean | undefined>();
  useEffect(() => {
    let active = true;
    let timer: number | undefined;
    const check = () => {
      bridge
        .getFirstRun()
        .then((state) => {
          if (!active) return;
          setOpen(state.open);
          if (state.open) timer = window.setTimeout(check, REFRESH_MS);
        })
        .catch(() => {
          if (active) timer = window.setTimeout(check, REFRESH_MS);
        });
    };
    check();
    return () => {
      active = false;
      window.clearTimeout(timer);
    };
  }, [bridge]);
  return open;
}

/** The open tamper alarm, shown above every view (the queue is the first view, not the overview). */
function AlarmBanner({ status }: { status: BridgeStatus | undefined }) {
  if (status === undefined) return null;
  return (
    <>
      {status.auditAlarm && (
        <div className="banner banner-alarm" role="alert" data-testid="audit-alarm">
          <strong>Tamper alarm {status.auditAlarm.id}:</strong> the audit log failed verification at entry {status.auditAlarm.firstBadSeq} (
          {status.auditAlarm.reason}; {status.auditAlarm.findings} finding{status.auditAlarm.findings === 1 ? '' : 's'}, raised{' '}
          {new Date(status.auditAlarm.raisedAt).toLocaleString()}). High-impact calls wait for an approver until an admin acknowledges the
          alarm with a security-key tap (admin action <code>{`{"kind":"audit.acknowledge_alarm","alarmId":${status.auditAlarm.id}}`}</code>
          ).
        </div>
      )}
    </>
  );
}

function StatusPanel({ status, transport, at }: { status: BridgeStatus; transport: 'ipc' | 'http'; at: number }) {
  return (
    <section className="panel">
      {status.domain === 'test' && (
        <p className="banner banner-test" role="status">
          TEST key domain: tokens issued here never verify where production tokens are expected.
        </p>
      )}
      {status.custody === 'software' && (
        <p className="banner banner-warning" role="alert">
          Warning: signing keys are not hardware-backed (software custody). Configure a PKCS#11 token for production use.
        </p>
      )}
      <h2>Status</h2>
      <dl className="stats">
        <dt>Policy</dt>
        <dd>
          <code title={status.policyHash}>{shortHash(status.policyHash)}</code>
        </dd>
        <dt>Key custody</dt>
        <dd className={status.custody === 'software' ? 'custody-software' : 'custody-hardware'}>
          {status.custody === 'software' ? 'software' : 'PKCS#11 (hardware)'}
        </dd>
        <dt>Agent gateway</dt>
        <dd>
          <code>{status.gatewayUrl}</code>
        </dd>
        <dt>Connections</dt>
        <dd>
          {status.connections} ({status.authenticated} authenticated)
        </dd>
        <dt>Decisions this run</dt>
        <dd>{status.decisions}</dd>
        <dt>Bridge</dt>
        <dd>
          {transport === 'ipc' ? 'desktop (IPC)' : 'headless (HTTP)'} · updated {new Date(at).toLocaleTimeString()}
        </dd>
      </dl>
    </section>
  );
}

function DecisionsTable({ decisions }: { decisions: DecisionSummary[] }) {
  return (
    <section className="panel">
      <h2>Recent decisions</h2>
      {decisions.length === 0 ? (
        <p className="muted">No calls yet.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Time</th>
              <th>Agent</th>
              <th>Tool</th>
              <th>State</th>
              <th>Reasons</th>
              <th>Policy</th>
              <th>Request</th>
            </tr>
          </thead>
          <tbody>
            {decisions.map((d) => (
              <tr key={d.requestId}>
                <td>{new Date(d.createdAt).toLocaleString()}</td>
                <td>{d.agentId}</td>
                <td>
                  <code>{d.tool}</code>
                </td>
                <td>
                  <span className={`state state-${d.state}`}>{d.state}</span>
                </td>
                <td>
                  {d.reasons.length === 0 ? (
                    <span className="muted">—</span>
                  ) : (
                    <ul className="reasons">
                      {d.reasons.map((r, i) => (
                        <li key={i}>{r}</li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  <code title={d.policyHash}>{shortHash(d.policyHash)}</code>
                </td>
                <td>
                  <code className="id">{d.requestId}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function AgentsTable({ agents }: { agents: AgentSummary[] }) {
  return (
    <section className="panel">
      <h2>Agents</h2>
      {agents.length === 0 ? (
        <p className="muted">No agents enrolled.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Agent</th>
              <th>Owner</th>
              <th>Group</th>
              <th>Status</th>
              <th>Allowed tools</th>
              <th>Keys</th>
            </tr>
          </thead>
          <tbody>
            {agents.map((a) => (
              <tr key={a.id}>
                <td>
                  <strong>{a.displayName || a.id}</strong>
                  <br />
                  <code className="id">{a.id}</code>
                </td>
                <td>{a.owner}</td>
                <td>{a.group}</td>
                <td>
                  <span className={`state state-${a.status}`}>{a.status}</span>
                </td>
                <td>
                  {a.allowedTools.map((t) => (
                    <code key={t} className="tool">
                      {t}
                    </code>
                  ))}
                </td>
                <td>
                  <ul className="keys">
                    {a.keys.map((k) => (
                      <li key={k.kid}>
                        <code title={k.kid}>{shortHash(k.kid, 12)}</code> {k.alg}{' '}
                        <span className={`state state-${k.status}`}>{k.status}</span>
                      </li>
                    ))}
                  </ul>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function shortHash(value: string, length = 19): string {
  return value.length > length ? `${value.slice(0, length)}…` : value;
}

/** The desk's session: who is signed in (from the server; the token never reaches the page). */
interface DeskSessionState {
  /** undefined while loading; null when no one is signed in. */
  view: DeskSessionView | null | undefined;
  current: DeskSession | undefined;
  refresh: () => Promise<void>;
  set: (view: DeskSessionView | null) => void;
}

function useDeskSession(bridge: CountersignBridge, initial: DeskSessionView | null | undefined): DeskSessionState {
  const [view, setView] = useState<DeskSessionView | null | undefined>(initial);
  // Read at mount unless main.tsx passed the first answer in (then the poll below reads it next).
  const [known] = useState(initial !== undefined);
  // Only the newest word on the session counts: a read answers with the server's state when it was
  // made, so one made before the person signed in or out (the poll below, on a slow machine or
  // network) or before a later read must not undo that when it arrives after it. A sign-in or
  // sign-out counts as a shown answer. Dropping every answer a newer read overtook instead would
  // show none while each read takes longer than the poll: an ended session never noticed.
  const [answers] = useState(newestAnswer);
  // The first read takes the answer main.tsx started before React rendered (first-paint.ts).
  const refresh = useCallback(async () => {
    const mayShow = answers.begin();
    let answer: DeskSessionView | null;
    try {
      answer = (await readSession(bridge)).session;
    } catch {
      answer = null;
    }
    if (mayShow()) setView(answer);
  }, [bridge, answers]);
  const set = useCallback(
    (next: DeskSessionView | null) => {
      answers.begin()();
      setView(next);
    },
    [answers],
  );
  useEffect(() => {
    if (!known) void refresh();
    // getSession does not count as activity, so polling it only notices an ended session.
    const timer = window.setInterval(() => void refresh(), REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [refresh, known]);
  // The same object while the same person is signed in, so the queue (memo) is not rendered
  // again for every change elsewhere in the desk.
  const approverId = view?.approverId;
  const displayName = view?.displayName;
  const admin = view?.admin;
  const current = useMemo<DeskSession | undefined>(
    () => (approverId === undefined || displayName === undefined || admin === undefined ? undefined : { approverId, displayName, admin }),
    [approverId, displayName, admin],
  );
  return { view, current, refresh, set };
}

/**
 * Sign-in with a security key: the approver picks themselves and taps their key
 * (navigator.credentials.get through @simplewebauthn/browser, user verification required); the
 * server verifies the assertion and the session belongs to that person. Signed in, it shows who
 * and offers sign-out.
 */
function SignIn({ bridge, state }: { bridge: CountersignBridge; state: DeskSessionState }) {
  const [approvers, setApprovers] = useState<ApproverSummary[]>([]);
  const [chosen, setChosen] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<LoadError | undefined>();
  const signedOut = state.view === null;
  useEffect(() => {
    if (!signedOut) return undefined;
    let active = true;
    const load = () =>
      bridge
        .listApprovers()
        .then((list) => active && setApprovers(list.approvers.filter((a) => a.status === 'active')))
        .catch(() => undefined);
    void load();
    // People added or registered meanwhile appear without a reload.
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    return () => {
      active = false;
      window.clearInterval(timer);
    };
  }, [bridge, signedOut]);

  const signIn = async () => {
    if (chosen === '') return;
    setBusy(true);
    setError(undefined);
    try {
      const { options } = await bridge.beginSignIn(chosen);
      // The WebAuthn client is loaded on the first sign-in, not with the queue.
      const { startAuthentication } = await import('@simplewebauthn/browser');
      const response = await startAuthentication({ optionsJSON: options });
      state.set((await bridge.finishSignIn(chosen, response)).session);
    } catch (caught) {
      const err = toCountersignError(caught);
      setError({ code: err.code, message: err.message });
    } finally {
      setBusy(false);
    }
  };
  const signOut = async () => {
    setBusy(true);
    try {
      await bridge.signOut();
    } catch {
      // Signed out or not, the page forgets the person; the server ends the session on its side.
    } finally {
      state.set(null);
      setBusy(false);
    }
  };

  if (state.view === undefined) return <p className="muted desk-session">Checking the session…</p>;
  if (state.view !== null) {
    const { view } = state;
    return (
      <section className="desk-session" data-testid="desk-session" data-approver-id={view.approverId} aria-label="Session">
        Signed in as <strong>{view.displayName}</strong> <code className="id">{view.approverId}</code>
        {view.admin && <span className="badge">admin</span>}{' '}
        <button type="button" className="secondary" data-testid="desk-sign-out" disabled={busy} onClick={() => void signOut()}>
          Sign out
        </button>
      </section>
    );
  }
  return (
    <form
      className="desk-sign-in"
      data-testid="desk-sign-in"
      aria-label="Sign in"
      onSubmit={(e) => {
        e.preventDefault();
        void signIn();
      }}
    >
      <label htmlFor="desk-sign-in-approver">Sign in as</label>{' '}
      <select
        id="desk-sign-in-approver"
        data-testid="desk-sign-in-approver"
        value={chosen}
        disabled={busy}
        onChange={(e) => setChosen(e.target.value)}
      >
        <option value="">(choose yourself)</option>
        {approvers.map((a) => (
          <option key={a.id} value={a.id}>
            {a.displayName || a.id}
          </option>
        ))}
      </select>{' '}
      <button type="submit" data-testid="desk-sign-in-submit" disabled={busy || chosen === ''}>
        {busy ? 'Touch your security key…' : 'Sign in with security key'}
      </button>
      {error && (
        <p className="error" role="alert" data-testid="desk-sign-in-error" data-code={error.code}>
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
    </form>
  );
}
