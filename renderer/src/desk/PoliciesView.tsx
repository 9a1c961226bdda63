/**
 * The Policies view: the active policy set (hash, policies with file:line and what they demand,
 * the files' text), the last hot reload's outcome with each problem's file:line, and "test a
 * call": choose an agent and build (or paste) a call, and see the decision, the risk factors and
 * the approvals it would need. The core evaluates it as a dry run: nothing is stored or audited.
 */
import { useCallback, useEffect, useState } from 'react';
import type { DeskViewProps } from './desk-view.js';
import { toCountersignError, type AgentSummary } from '../../../shared/bridge.js';
import type { PolicyOverview, PolicyTestResult } from '../../../shared/desk-records.js';

interface Problem {
  code: string;
  message: string;
}
const problemOf = (caught: unknown): Problem => {
  const e = toCountersignError(caught);
  return { code: e.code, message: e.message };
};

const EXAMPLE_PARAMS = '{\n  "amount": "48000.00",\n  "currency": "USD",\n  "payee": "Northwind Traders",\n  "memo": "invoice 2231"\n}';

export function PoliciesView({ bridge }: DeskViewProps): React.JSX.Element {
  const [overview, setOverview] = useState<PolicyOverview | null>(null);
  const [agents, setAgents] = useState<AgentSummary[]>([]);
  const [error, setError] = useState<Problem | null>(null);

  const refresh = useCallback(async () => {
    try {
      const [o, a] = await Promise.all([bridge.getPolicyOverview(), bridge.listAgents()]);
      setOverview(o);
      setAgents(a);
      setError(null);
    } catch (caught) {
      setError(problemOf(caught));
    }
  }, [bridge]);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  return (
    <section className="panel desk-admin" aria-labelledby="policies-title" data-testid="policies-view">
      <div className="panel-title">
        <h2 id="policies-title">Policies</h2>
        <button type="button" className="secondary" data-testid="policies-refresh" onClick={() => void refresh()}>
          Refresh
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
      {overview && (
        <>
          <dl className="history-facts">
            <dt>Active set</dt>
            <dd>
              <code className="wrap" data-testid="policies-hash">
                {overview.hash}
              </code>
            </dd>
            <dt>Directory</dt>
            <dd>
              <code className="wrap">{overview.dir}</code>
            </dd>
          </dl>
          <ReloadStatus reload={overview.lastReload} />
          <TestCall bridge={bridge} agents={agents} tools={overview.tools.map((t) => t.name)} />
          <h3>Policies ({overview.policies.length})</h3>
          <table className="policy-table">
            <thead>
              <tr>
                <th scope="col">Policy</th>
                <th scope="col">Effect</th>
                <th scope="col">Where</th>
                <th scope="col">Approvals</th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {overview.policies.map((p) => (
                <tr key={p.id}>
                  <td>
                    <code className="wrap">{p.id}</code>
                  </td>
                  <td>{p.effect}</td>
                  <td>
                    <code>
                      {p.file}:{p.line}
                    </code>
                  </td>
                  <td>{p.approvals ?? '—'}</td>
                  <td>{p.reason ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {overview.warnings.length > 0 && (
            <>
              <h3>Warnings</h3>
              <ul>
                {overview.warnings.map((w) => (
                  <li key={w}>{w}</li>
                ))}
              </ul>
            </>
          )}
          <h3>Files</h3>
          {overview.files.map((f) => (
            <details key={f.file} className="policy-file">
              <summary>
                <code>{f.file}</code>
              </summary>
              <pre className="history-json">{f.text}</pre>
            </details>
          ))}
        </>
      )}
    </section>
  );
}

function ReloadStatus({ reload }: { reload: PolicyOverview['lastReload'] }): React.JSX.Element {
  if (reload === null)
    return (
      <p className="muted" data-testid="policy-reload" data-status="none">
        No reload since start: the set loaded at start is in force.
      </p>
    );
  if (reload.ok)
    return (
      <p className="proof-ok" data-testid="policy-reload" data-status="ok">
        Last reload at {new Date(reload.at).toISOString()} succeeded.
      </p>
    );
  return (
    <div className="banner banner-alarm" role="alert" data-testid="policy-reload" data-status="failed">
      <strong>The last reload failed</strong> at {new Date(reload.at).toISOString()}; the previous set stays in force.
      <ul>
        {reload.errors.map((e, i) => (
          <li key={i} data-testid="policy-reload-error">
            {e.file !== null && (
              <code>
                {e.file}
                {e.line === null ? '' : `:${e.line}`}
              </code>
            )}{' '}
            {e.message}
          </li>
        ))}
      </ul>
    </div>
  );
}

function TestCall({
  bridge,
  agents,
  tools,
}: {
  bridge: DeskViewProps['bridge'];
  agents: AgentSummary[];
  tools: string[];
}): React.JSX.Element {
  const [agentId, setAgentId] = useState('');
  const [tool, setTool] = useState('');
  const [params, setParams] = useState(EXAMPLE_PARAMS);
  const [dataClass, setDataClass] = useState('financial');
  const [jurisdiction, setJurisdiction] = useState('US');
  const [provenance, setProvenance] = useState('user');
  const [pasted, setPasted] = useState('');
  const [result, setResult] = useState<PolicyTestResult | null>(null);
  const [error, setError] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const chosenAgent = agentId || agents[0]?.id || '';
  const chosenTool = tool || tools[0] || '';

  const run = async () => {
    setError(null);
    setResult(null);
    let call: unknown;
    try {
      if (pasted.trim() !== '') {
        call = JSON.parse(pasted);
      } else {
        call = {
          tool: chosenTool,
          params: JSON.parse(params) as unknown,
          dataClass,
          jurisdiction,
          provenance: provenance
            .split(',')
            .map((p) => p.trim())
            .filter((p) => p !== ''),
        };
      }
    } catch (caught) {
      setError({
        code: 'json_invalid',
        message: `the ${pasted.trim() !== '' ? 'pasted call' : 'parameters'} are not valid JSON: ${String(caught)}`,
      });
      return;
    }
    setBusy(true);
    try {
      setResult(await bridge.testPolicyCall(chosenAgent, call as Parameters<typeof bridge.testPolicyCall>[1]));
    } catch (caught) {
      setError(problemOf(caught));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="policy-test"
      aria-labelledby="policy-test-title"
      onSubmit={(e) => {
        e.preventDefault();
        void run();
      }}
    >
      <h3 id="policy-test-title">Test a call</h3>
      <p className="muted">A dry run: the real engine decides, and nothing is stored, audited or signed.</p>
      <label className="history-field">
        <span>Agent</span>
        <select value={chosenAgent} data-testid="policy-test-agent" onChange={(e) => setAgentId(e.target.value)}>
          {agents.map((a) => (
            <option key={a.id} value={a.id}>
              {a.id}
            </option>
          ))}
        </select>
      </label>
      <label className="history-field">
        <span>Tool</span>
        <select value={chosenTool} data-testid="policy-test-tool" onChange={(e) => setTool(e.target.value)}>
          {tools.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </label>
      <label className="history-field wide">
        <span>Parameters (JSON object)</span>
        <textarea rows={6} value={params} data-testid="policy-test-params" onChange={(e) => setParams(e.target.value)} />
      </label>
      <label className="history-field">
        <span>Data class</span>
        <input type="text" value={dataClass} data-testid="policy-test-dataclass" onChange={(e) => setDataClass(e.target.value)} />
      </label>
      <label className="history-field">
        <span>Jurisdiction</span>
        <input type="text" value={jurisdiction} data-testid="policy-test-jurisdiction" onChange={(e) => setJurisdiction(e.target.value)} />
      </label>
      <label className="history-field">
        <span>Provenance (comma separated)</span>
        <input type="text" value={provenance} onChange={(e) => setProvenance(e.target.value)} />
      </label>
      <label className="history-field wide">
        <span>Or paste a whole call (JSON; used instead of the fields above when not empty)</span>
        <textarea rows={3} value={pasted} data-testid="policy-test-paste" onChange={(e) => setPasted(e.target.value)} />
      </label>
      <div className="history-buttons">
        <button type="submit" data-testid="policy-test-run" disabled={busy || chosenAgent === ''}>
          Test the call
        </button>
      </div>
      {error && (
        <p className="error" role="alert" data-testid="policy-test-error">
          {error.message} <code>[{error.code}]</code>
        </p>
      )}
      {result && <TestResult result={result} />}
    </form>
  );
}

function TestResult({ result }: { result: PolicyTestResult }): React.JSX.Element {
  const label = result.outcome === 'allow' ? 'allowed automatically' : result.outcome === 'deny' ? 'denied' : 'held for approval';
  return (
    <div className="policy-result" role="status" data-testid="policy-test-result" data-outcome={result.outcome}>
      <p>
        <strong>Decision: {label}</strong> (dry run; policy set <code className="wrap">{result.policyHash}</code>)
      </p>
      {result.obligation && (
        <p data-testid="policy-test-approvals">
          Needs {result.obligation.approvals} approval{result.obligation.approvals === 1 ? '' : 's'}
          {result.obligation.groups.length > 0 && <> from {result.obligation.groups.map((g) => g.join(' or ')).join(', and ')}</>}, within{' '}
          {Math.round(result.obligation.ttlSeconds / 60)} min, user verification {result.obligation.userVerification}
          {result.conflicted.length > 0 && <>; not by {result.conflicted.join(', ')}</>}.
        </p>
      )}
      <p>Determining policies: {result.determiningPolicies.length === 0 ? 'none' : result.determiningPolicies.join(', ')}</p>
      {result.reasons.length > 0 && (
        <ul>
          {result.reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      )}
      {result.errors.length > 0 && (
        <ul className="error">
          {result.errors.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      )}
      <p>Risk score {result.risk.score} of 100</p>
      <ul data-testid="policy-test-risk">
        {result.risk.factors.map((f) => (
          <li key={f.name}>
            <code>{f.name}</code> (+{f.points}): {f.explanation}
          </li>
        ))}
      </ul>
    </div>
  );
}
