/**
 * The History view: decided requests, newest decision first, with filters (state, tool, agent,
 * decided between) and a search (request id, agent, tool, payee), paged by the core's cursor; one
 * request opened shows its call, approvals (who, which key, when, verdict, reason), token id and
 * audit entries, and the page itself checks the entries' inclusion proof against the log's signed
 * checkpoint (shared/desk-records.ts verifyHistoryEntryProof). A selection exports as one JSON file
 * with the proofs and what the page concluded about each.
 */
import { useCallback, useEffect, useState } from 'react';
import { newestAnswer } from './newest-answer.js';
import type { DeskViewProps } from './desk-view.js';
import { toCountersignError } from '../../../shared/bridge.js';
import {
  historyExportDocument,
  verifyHistoryEntryProof,
  type HistoryEntry,
  type HistoryQuery,
  type HistoryRow,
  type HistoryState,
  type ProofCheck,
} from '../../../shared/desk-records.js';

const PAGE = 25;
const STATES: readonly HistoryState[] = ['approved', 'denied', 'allowed', 'expired'];

interface Filters {
  state: '' | HistoryState;
  tool: string;
  agentId: string;
  since: string;
  until: string;
  text: string;
}
const NO_FILTERS: Filters = { state: '', tool: '', agentId: '', since: '', until: '', text: '' };

const at = (ms: number | null): string =>
  ms === null
    ? '—'
    : new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC');

/** The query the filters name (empty fields left out; dates as the start or end of that day, UTC). */
function queryOf(f: Filters): HistoryQuery {
  const q: HistoryQuery = { limit: PAGE };
  if (f.state !== '') q.states = [f.state];
  if (f.tool.trim() !== '') q.tool = f.tool.trim();
  if (f.agentId.trim() !== '') q.agentId = f.agentId.trim();
  if (f.since !== '') q.since = Date.parse(`${f.since}T00:00:00Z`);
  if (f.until !== '') q.until = Date.parse(`${f.until}T23:59:59.999Z`);
  if (f.text.trim() !== '') q.text = f.text.trim();
  return q;
}

interface Problem {
  code: string;
  message: string;
}
const problemOf = (caught: unknown): Problem => {
  const e = toCountersignError(caught);
  return { code: e.code, message: e.message };
};

export function HistoryView({ bridge }: DeskViewProps): React.JSX.Element {
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [applied, setApplied] = useState<Filters>(NO_FILTERS);
  const [rows, setRows] = useState<HistoryRow[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<Problem | null>(null);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [openId, setOpenId] = useState<string | null>(null);
  const [exportNote, setExportNote] = useState<string | null>(null);

  // The view's first search waits for the full bridge; a person who applies a filter meanwhile
  // must not get the unfiltered rows back when that first answer arrives after theirs.
  const [answers] = useState(newestAnswer);
  const load = useCallback(
    async (f: Filters, after: string | null) => {
      const mayShow = answers.begin();
      setLoading(true);
      setError(null);
      try {
        const q = queryOf(f);
        if (after !== null) q.cursor = after;
        const page = await bridge.searchHistory(q);
        if (!mayShow()) return;
        setRows((previous) => (after === null ? page.rows : [...previous, ...page.rows]));
        setCursor(page.nextCursor);
        setLoading(false);
      } catch (caught) {
        if (!mayShow()) return;
        setError(problemOf(caught));
        setLoading(false);
      }
    },
    [bridge, answers],
  );

  useEffect(() => {
    void load(applied, null);
  }, [applied, load]);

  const toggle = (id: string) =>
    setSelected((previous) => {
      const next = new Set(previous);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const exportSelection = async () => {
    setExportNote('Preparing the export…');
    try {
      const entries: HistoryEntry[] = [];
      const checks = new Map<string, ProofCheck>();
      for (const id of selected) {
        const entry = await bridge.getHistoryEntry(id);
        entries.push(entry);
        checks.set(id, await verifyHistoryEntryProof(entry));
      }
      const doc = historyExportDocument(entries, checks, Date.now());
      const url = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `countersign-history-${entries.length}-requests.json`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setExportNote(`Exported ${entries.length} request${entries.length === 1 ? '' : 's'} with their proofs.`);
    } catch (caught) {
      const p = problemOf(caught);
      setExportNote(`The export failed: ${p.message} [${p.code}]`);
    }
  };

  const field = (name: keyof Filters, label: string, type = 'text', extra: Record<string, string> = {}) => (
    <label className="history-field">
      <span>{label}</span>
      <input
        type={type}
        value={filters[name]}
        data-testid={`history-filter-${name}`}
        onChange={(e) => setFilters({ ...filters, [name]: e.target.value })}
        {...extra}
      />
    </label>
  );

  return (
    <section className="panel desk-admin" aria-labelledby="history-title" data-testid="history-view">
      <h2 id="history-title">History</h2>
      <form
        className="history-filters"
        role="search"
        aria-label="Filter and search decided requests"
        onSubmit={(e) => {
          e.preventDefault();
          setSelected(new Set());
          setApplied(filters);
        }}
      >
        {field('text', 'Search (request id, agent, tool, payee; 3 characters or more)', 'search', { minLength: '3' })}
        <label className="history-field">
          <span>State</span>
          <select
            value={filters.state}
            data-testid="history-filter-state"
            onChange={(e) => setFilters({ ...filters, state: e.target.value as Filters['state'] })}
          >
            <option value="">any decided state</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        {field('tool', 'Tool')}
        {field('agentId', 'Agent')}
        {field('since', 'Decided from (UTC day)', 'date')}
        {field('until', 'Decided until (UTC day)', 'date')}
        <div className="history-buttons">
          <button type="submit" data-testid="history-apply">
            Apply
          </button>
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setFilters(NO_FILTERS);
              setSelected(new Set());
              setApplied(NO_FILTERS);
            }}
          >
            Clear
          </button>
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
      <div className="history-toolbar">
        <span aria-live="polite" data-testid="history-count">
          {loading
            ? 'Loading…'
            : `${rows.length} request${rows.length === 1 ? '' : 's'} shown${cursor === null ? '' : ' (more available)'}`}
        </span>
        <button type="button" data-testid="history-export" disabled={selected.size === 0} onClick={() => void exportSelection()}>
          Export selected ({selected.size})
        </button>
      </div>
      {exportNote && (
        <p className="notice" role="status" data-testid="history-export-note">
          {exportNote}
        </p>
      )}
      <ul className="history-list" aria-label="Decided requests">
        {rows.map((row) => (
          <li key={row.requestId} className="history-row" data-testid="history-row" data-request-id={row.requestId}>
            <input
              type="checkbox"
              aria-label={`Select ${row.requestId} for export`}
              checked={selected.has(row.requestId)}
              data-testid="history-select"
              onChange={() => toggle(row.requestId)}
            />
            <div className="history-summary">
              <button
                type="button"
                className="link"
                aria-expanded={openId === row.requestId}
                data-testid="history-open"
                onClick={() => setOpenId(openId === row.requestId ? null : row.requestId)}
              >
                <code className="id">{row.requestId}</code>
              </button>
              <span className={`state state-${row.state}`}>{row.state}</span>
              <span>
                <code className="tool">{row.tool}</code> by <code>{row.agentId}</code>
              </span>
              {row.payee !== null && <span>payee {row.payee}</span>}
              <span className="muted">decided {at(row.decidedAt)}</span>
              <span className="muted">
                {row.approvals} approval{row.approvals === 1 ? '' : 's'}
              </span>
            </div>
            {openId === row.requestId && <HistoryDetail bridge={bridge} requestId={row.requestId} />}
          </li>
        ))}
      </ul>
      {!loading && rows.length === 0 && !error && <p className="muted">No decided request matches.</p>}
      {cursor !== null && (
        <button
          type="button"
          className="secondary"
          data-testid="history-more"
          disabled={loading}
          onClick={() => void load(applied, cursor)}
        >
          Show more
        </button>
      )}
    </section>
  );
}

function recordKind(record: string): string {
  try {
    const value = JSON.parse(record) as { kind?: unknown };
    return typeof value.kind === 'string' ? value.kind : 'entry';
  } catch {
    return 'entry';
  }
}

function HistoryDetail({ bridge, requestId }: { bridge: DeskViewProps['bridge']; requestId: string }): React.JSX.Element {
  const [entry, setEntry] = useState<HistoryEntry | null>(null);
  const [check, setCheck] = useState<ProofCheck | null>(null);
  const [error, setError] = useState<Problem | null>(null);

  useEffect(() => {
    let active = true;
    void (async () => {
      try {
        const got = await bridge.getHistoryEntry(requestId);
        if (!active) return;
        setEntry(got);
        const verdict = await verifyHistoryEntryProof(got);
        if (active) setCheck(verdict);
      } catch (caught) {
        if (active) setError(problemOf(caught));
      }
    })();
    return () => {
      active = false;
    };
  }, [bridge, requestId]);

  if (error)
    return (
      <p className="error" role="alert">
        {error.message} <code>[{error.code}]</code>
      </p>
    );
  if (!entry) return <p className="muted">Loading…</p>;
  return (
    <div className="history-detail" data-testid="history-detail">
      <dl className="history-facts">
        <dt>Token id</dt>
        <dd>
          <code data-testid="history-token-id">{entry.tokenId ?? 'no token was issued'}</code>
        </dd>
        <dt>Call digest</dt>
        <dd>
          <code>{entry.callSha256}</code>
        </dd>
        <dt>Policy set</dt>
        <dd>
          <code>{entry.policyHash}</code>
        </dd>
        <dt>Determining policies</dt>
        <dd>{entry.determiningPolicies.length === 0 ? '—' : entry.determiningPolicies.join(', ')}</dd>
        <dt>Reasons</dt>
        <dd>{entry.reasons.join('; ') || '—'}</dd>
        <dt>Created</dt>
        <dd>{at(entry.createdAt)}</dd>
      </dl>
      <h4>Call</h4>
      <pre className="history-json">{JSON.stringify(entry.call, null, 2)}</pre>
      <h4>Approvals</h4>
      {entry.approvals.length === 0 ? (
        <p className="muted">No approver decided this request.</p>
      ) : (
        <table className="history-approvals" data-testid="history-approvals">
          <thead>
            <tr>
              <th scope="col">Who</th>
              <th scope="col">Verdict</th>
              <th scope="col">When</th>
              <th scope="col">Key</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {entry.approvals.map((a) => (
              <tr key={`${a.approverId}-${a.at}`}>
                <td>
                  {a.displayName} <code>({a.approverId})</code>
                </td>
                <td className={a.verdict === 'approve' ? 'outcome-approved' : 'outcome-denied'}>{a.verdict}</td>
                <td>{at(a.at)}</td>
                <td>
                  <code className="wrap">{a.credentialId}</code>
                </td>
                <td>{a.reason ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h4>Audit entries</h4>
      <ProofStatus check={check} />
      {entry.proof && (
        <ol className="history-audit">
          {entry.proof.entries.map((e) => (
            <li key={e.seq}>
              entry {e.seq}: <code>{recordKind(e.record)}</code>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}

function ProofStatus({ check }: { check: ProofCheck | null }): React.JSX.Element {
  if (check === null)
    return (
      <p className="muted" data-testid="history-proof" data-status="checking" role="status">
        Checking the inclusion proof in this page…
      </p>
    );
  if (check.ok)
    return (
      <p className="proof-ok" data-testid="history-proof" data-status="verified" role="status">
        Verified in this page: {check.entries} audit entr{check.entries === 1 ? 'y is' : 'ies are'} included in the signed checkpoint of{' '}
        {check.treeSize} entries (root <code className="wrap">{check.rootHash}</code>).
      </p>
    );
  return (
    <p className="proof-failed" data-testid="history-proof" data-status="failed" role="alert">
      The inclusion proof FAILED in this page: {check.reason} <code>[{check.code}]</code>
    </p>
  );
}
