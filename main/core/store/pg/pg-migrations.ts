/**
 * Numbered PostgreSQL schema migrations for team mode (index i upgrades version i to i+1; never
 * edit a shipped one), the same spirit as the SQLite ones (../migrations.ts): the decision tables,
 * the audit log as an append-only Merkle log, and its signed checkpoints. The database enforces
 * what must hold across hubs: unique nonces, one token per request, states that only move
 * forward, audit rows that are never changed. Applied under a transaction-scoped advisory lock,
 * so hubs starting together apply each step once.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: decisions, nonces, tokens, the audit submissions queue, the sequenced log, checkpoints
  `
  CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

  CREATE TABLE seen_nonces (
    agent_id text NOT NULL,
    nonce text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (agent_id, nonce)
  );
  CREATE INDEX seen_nonces_by_expiry ON seen_nonces(expires_at);

  CREATE TABLE requests (
    id text PRIMARY KEY,
    agent_id text NOT NULL,
    kid text NOT NULL,
    tool text NOT NULL,
    call_json text NOT NULL,
    call_sha256 text NOT NULL,
    envelope_nonce text NOT NULL,
    state text NOT NULL CHECK (state IN ('allowed', 'denied', 'pending', 'approved', 'expired')),
    policy_hash text NOT NULL,
    determining_policies text NOT NULL,
    reasons text NOT NULL,
    risk text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint,
    decided_at bigint,
    decided_by_hub text
  );
  CREATE INDEX requests_pending ON requests(expires_at) WHERE state = 'pending';

  -- States move forward only: pending -> approved | denied | expired, once; nothing else changes.
  CREATE FUNCTION requests_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF OLD.state <> 'pending' OR NEW.state NOT IN ('approved', 'denied', 'expired') THEN
      RAISE EXCEPTION 'request % cannot move from % to %', OLD.id, OLD.state, NEW.state USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER requests_forward_only BEFORE UPDATE OF state ON requests FOR EACH ROW EXECUTE FUNCTION requests_forward_only();
  CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
  END $$;
  CREATE TRIGGER requests_no_delete BEFORE DELETE ON requests FOR EACH ROW EXECUTE FUNCTION append_only();

  CREATE TABLE tokens (
    jti text PRIMARY KEY,
    request_id text NOT NULL UNIQUE REFERENCES requests(id),
    kid text NOT NULL,
    token text NOT NULL,
    issued_at bigint NOT NULL,
    expires_at bigint NOT NULL
  );
  CREATE TRIGGER tokens_no_update BEFORE UPDATE OR DELETE ON tokens FOR EACH ROW EXECUTE FUNCTION append_only();

  -- Audit events submitted by any hub in the transaction of the state they record; the leader
  -- moves them into audit_log in id order, assigning seq (ADR 0012).
  CREATE TABLE audit_submissions (
    id bigserial PRIMARY KEY,
    at bigint NOT NULL,
    kind text NOT NULL,
    fields text NOT NULL,             -- JSON of the event fields (the record is made at sequencing)
    request_id text,
    hub text NOT NULL
  );

  CREATE TABLE audit_log (
    seq bigint PRIMARY KEY CHECK (seq >= 1),
    at bigint NOT NULL,
    kind text NOT NULL,
    record text NOT NULL,             -- JCS of the event record: the leaf's data
    request_id text,
    leaf bytea NOT NULL,              -- RFC 9162 leaf hash of record
    sequenced_by text NOT NULL
  );
  CREATE INDEX audit_log_by_request ON audit_log(request_id) WHERE request_id IS NOT NULL;
  CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION append_only();

  CREATE TABLE audit_checkpoints (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL,
    at bigint NOT NULL,
    note text NOT NULL,
    signed_by_hub text NOT NULL
  );
  CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION append_only();
  `,
  // 2: what the engine stores with a held call (ADR 0012: the decision service on the seam): its
  // approval requirement, the conflicted approvers, the group an identical call joined, the seal.
  `
  ALTER TABLE requests ADD COLUMN obligation text;
  ALTER TABLE requests ADD COLUMN conflicted_approvers text NOT NULL DEFAULT '[]';
  ALTER TABLE requests ADD COLUMN group_id text;
  ALTER TABLE requests ADD COLUMN sealed_at bigint;
  CREATE INDEX requests_pending_by_agent ON requests(agent_id) WHERE state = 'pending';
  CREATE INDEX requests_group ON requests(group_id) WHERE group_id IS NOT NULL;
  `,
  // 3: one directory for all hubs (ADR 0013, store/pg/pg-directory.ts): the authoritative agents,
  // keys, approvers, handles and credentials, and the sequenced change log every hub's SQLite
  // replica applies in order. `row` is the replica's row image; the other columns are what the
  // database itself must check (uniqueness, an agent's status inside a decision's transaction).
  `
  CREATE TABLE directory_changes (
    seq bigint PRIMARY KEY CHECK (seq >= 1),
    at bigint NOT NULL,
    hub text NOT NULL,
    kind text NOT NULL,
    ops text NOT NULL                 -- JSON: the replica operations, in order
  );
  CREATE TRIGGER directory_changes_append_only BEFORE UPDATE OR DELETE ON directory_changes FOR EACH ROW EXECUTE FUNCTION append_only();
  INSERT INTO meta (key, value) VALUES ('directory_id', md5(random()::text || clock_timestamp()::text));

  CREATE TABLE directory_agents (
    id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('active', 'revoked')),
    row text NOT NULL
  );
  CREATE TABLE directory_agent_keys (
    kid text PRIMARY KEY,
    agent_id text NOT NULL REFERENCES directory_agents(id),
    status text NOT NULL CHECK (status IN ('active', 'retiring', 'revoked')),
    not_after bigint,
    row text NOT NULL
  );
  CREATE INDEX directory_agent_keys_by_agent ON directory_agent_keys(agent_id);

  CREATE TABLE directory_approvers (
    id text PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('active', 'disabled')),
    row text NOT NULL
  );
  -- Every handle of every person (the id lowercased, and each alias): a handle names one person.
  CREATE TABLE directory_handles (
    handle text PRIMARY KEY,
    approver_id text NOT NULL REFERENCES directory_approvers(id),
    is_alias boolean NOT NULL
  );
  CREATE TABLE directory_credentials (
    credential_id text PRIMARY KEY,
    approver_id text NOT NULL REFERENCES directory_approvers(id),
    status text NOT NULL CHECK (status IN ('active', 'suspect', 'removed')),
    row text NOT NULL
  );
  CREATE TABLE directory_registration_codes (
    code_hash text PRIMARY KEY,
    approver_id text NOT NULL REFERENCES directory_approvers(id),
    expires_at bigint NOT NULL,
    used_at bigint,
    row text NOT NULL
  );
  `,
  // 4: the team's custody keys (ADR 0014): one key set for every hub of the database. A key is
  // published (in every hub's JWKS) before any hub may sign with it, becomes active no earlier
  // than its sign_from, and stays published while retiring until the tokens it signed expired.
  `
  CREATE TABLE team_signing_keys (
    kid text PRIMARY KEY,
    domain text NOT NULL CHECK (domain IN ('production', 'test')),
    alg text NOT NULL,
    public_jwk text NOT NULL,
    token_label text NOT NULL,
    key_label text NOT NULL,
    key_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('published', 'active', 'retiring', 'retired')),
    published_at bigint NOT NULL,
    published_by text NOT NULL,
    sign_from bigint NOT NULL,
    activated_at bigint,
    activated_by text,
    published_until bigint,
    retired_at bigint,
    retired_by text,
    CHECK (activated_at IS NULL OR activated_at >= sign_from),
    CHECK (state = 'published' OR activated_at IS NOT NULL),
    CHECK (state NOT IN ('retiring', 'retired') OR published_until IS NOT NULL)
  );
  CREATE UNIQUE INDEX team_signing_keys_one_active ON team_signing_keys(domain) WHERE state = 'active';
  CREATE UNIQUE INDEX team_signing_keys_one_waiting ON team_signing_keys(domain) WHERE state = 'published';
  CREATE FUNCTION team_signing_keys_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.kid <> OLD.kid OR NEW.domain <> OLD.domain OR NEW.alg <> OLD.alg OR NEW.public_jwk <> OLD.public_jwk
       OR NEW.token_label <> OLD.token_label OR NEW.key_label <> OLD.key_label OR NEW.key_id <> OLD.key_id
       OR NEW.published_at <> OLD.published_at OR NEW.sign_from <> OLD.sign_from THEN
      RAISE EXCEPTION 'the key % cannot change', OLD.kid USING ERRCODE = 'check_violation';
    END IF;
    IF NOT ((OLD.state = 'published' AND NEW.state = 'active') OR (OLD.state = 'active' AND NEW.state = 'retiring')
            OR (OLD.state = 'retiring' AND NEW.state = 'retired')) THEN
      RAISE EXCEPTION 'the key % cannot move from % to %', OLD.kid, OLD.state, NEW.state USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER team_signing_keys_forward_only BEFORE UPDATE ON team_signing_keys FOR EACH ROW EXECUTE FUNCTION team_signing_keys_forward_only();
  CREATE TRIGGER team_signing_keys_no_delete BEFORE DELETE ON team_signing_keys FOR EACH ROW EXECUTE FUNCTION append_only();

  -- Which hub serves which key in its JWKS, and since when (written when the hub learns of it).
  CREATE TABLE team_signing_key_hubs (
    kid text NOT NULL REFERENCES team_signing_keys(kid),
    hub text NOT NULL,
    serving_since bigint NOT NULL,
    PRIMARY KEY (kid, hub)
  );
  `,
  // 5: approvals on hubs (ADR 0015): the approvals of held calls, one per approver and
  // request, never changed; the desk's queue and the approval history read in index order.
  `
  CREATE TABLE approvals (
    request_id text NOT NULL REFERENCES requests(id),
    approver_id text NOT NULL,
    credential_id text NOT NULL,
    verdict text NOT NULL CHECK (verdict IN ('approve', 'deny')),
    reason text,
    assertion text NOT NULL,          -- JCS of the assertion as carried in the token
    at bigint NOT NULL,
    hub text NOT NULL,                -- the hub whose desk recorded it
    PRIMARY KEY (request_id, approver_id)
  );
  CREATE TRIGGER approvals_append_only BEFORE UPDATE OR DELETE ON approvals FOR EACH ROW EXECUTE FUNCTION append_only();
  CREATE INDEX requests_queue_by_expiry ON requests(expires_at, id COLLATE "C") WHERE state = 'pending' AND group_id IS NULL;
  CREATE INDEX requests_queue_by_age ON requests(created_at, id COLLATE "C") WHERE state = 'pending' AND group_id IS NULL;
  CREATE INDEX requests_approval_history ON requests(decided_at DESC, id COLLATE "C") WHERE obligation IS NOT NULL AND state <> 'pending' AND group_id IS NULL;
  `,
  // 6: the desk's History and recent activity on hubs read every hub's requests (ui/history-reader.ts,
  // store/pg/pg-request-reads.ts): keyed pages of decided requests by decision time, with the
  // SQLite filters (state, tool, agent; the agent one also finds the calls a revocation ended),
  // the newest requests, and the History search: a trigram index (pg_trgm, trusted since
  // PostgreSQL 13) over the searched text, so a substring search (ILIKE) reads the index.
  `
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE INDEX requests_decided ON requests(decided_at DESC, id COLLATE "C") WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_state ON requests(state, decided_at DESC, id COLLATE "C") WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_tool ON requests(tool, decided_at DESC, id COLLATE "C") WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_agent ON requests(agent_id, decided_at DESC, id COLLATE "C") WHERE state <> 'pending';
  CREATE INDEX requests_recent ON requests(created_at DESC, id COLLATE "C");
  CREATE FUNCTION request_search_text(id text, agent_id text, tool text, call_json text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN id || ' ' || agent_id || ' ' || tool || ' ' || coalesce(call_json::jsonb #>> '{params,payee}', '');
  CREATE INDEX requests_search ON requests USING gin (request_search_text(id, agent_id, tool, call_json) gin_trgm_ops) WHERE state <> 'pending';
  `,
  // 7: a call's text as jsonb without failing: jsonb refuses the escape \u0000, which canonical
  // JSON writes for U+0000 in any string of a call, so migration 6's search index made every
  // request holding one impossible to decide, deny or end (a revocation of its agent failed).
  // request_call_jsonb reads it with each \u0000 escape (one not itself escaped: an even run of
  // backslashes before it) as \ufffd; the search text and the History's payee read through it.
  String.raw`
  DROP INDEX requests_search;
  CREATE FUNCTION request_call_jsonb(call_json text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (CASE WHEN strpos(call_json, '\u0000') = 0 THEN call_json
      ELSE regexp_replace(call_json, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g') END)::jsonb;
  CREATE OR REPLACE FUNCTION request_search_text(id text, agent_id text, tool text, call_json text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN id || ' ' || agent_id || ' ' || tool || ' ' || coalesce(request_call_jsonb(call_json) #>> '{params,payee}', '');
  CREATE INDEX requests_search ON requests USING gin (request_search_text(id, agent_id, tool, call_json) gin_trgm_ops) WHERE state <> 'pending';
  `,
  // 8: approvers in the team directory (ADR 0013): each security key's signature counter and last
  // use, kept here for every hub and advanced inside the commit of the tap that moved it, so a
  // counter that goes backwards is caught whichever hub the key was last used on.
  `
  ALTER TABLE directory_credentials ADD COLUMN sign_count bigint NOT NULL DEFAULT 0 CHECK (sign_count >= 0);
  ALTER TABLE directory_credentials ADD COLUMN last_used_at bigint;
  `,
  // 9: audit proofs on every hub (pg-audit-proofs.ts): the complete subtrees of the team audit
  // tree above its leaves (the leaves are audit_log.leaf), written by the leader in the
  // transaction that sequences the leaves completing them, so an inclusion proof reads O(log n)
  // rows; and every key that signed a team checkpoint, recorded before its first checkpoint, so
  // any hub's desk can check a checkpoint another hub's leader signed.
  `
  CREATE TABLE audit_nodes (
    level smallint NOT NULL CHECK (level >= 1),
    idx bigint NOT NULL CHECK (idx >= 0),
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
  );
  CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes FOR EACH ROW EXECUTE FUNCTION append_only();
  CREATE TABLE audit_checkpoint_keys (
    kid text PRIMARY KEY,
    public_jwk text NOT NULL,
    hub text NOT NULL,
    first_at bigint NOT NULL
  );
  CREATE TRIGGER audit_checkpoint_keys_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint_keys FOR EACH ROW EXECUTE FUNCTION append_only();
  `,
  // 10: one origin, any hub (docs/team-mode.md): WebAuthn ceremony challenges kept for the team
  // (store/pg/pg-challenges.ts), so a ceremony begun on one hub is finished on another; a row is
  // spent once for the whole team (used_at set by one UPDATE .. WHERE used_at IS NULL).
  `
  CREATE TABLE ceremony_challenges (
    purpose text NOT NULL CHECK (purpose IN ('approval', 'admin', 'registration', 'sign_in')),
    challenge text NOT NULL,
    user_id text NOT NULL,
    request_id text,
    verdict text,
    record text,
    offered text NOT NULL,
    expires_at bigint NOT NULL,
    issued_by_hub text NOT NULL,
    issued_at bigint NOT NULL,
    used_at bigint,
    used_by_hub text,
    PRIMARY KEY (purpose, challenge)
  );
  CREATE INDEX ceremony_challenges_by_expiry ON ceremony_challenges(expires_at);
  CREATE INDEX ceremony_challenges_pending_sign_ins ON ceremony_challenges(expires_at) WHERE purpose = 'sign_in' AND used_at IS NULL;
  `,
  // 11: admin quorum proposals for the team (store/pg/pg-admin-proposals.ts): made on one hub,
  // listed and decided on any; a proposal leaves 'pending' once (UPDATE .. WHERE state = 'pending').
  `
  CREATE TABLE admin_proposals (
    id text PRIMARY KEY,
    action text NOT NULL,
    proposed_by text NOT NULL,
    proposer_credential text NOT NULL,
    proposer_evidence text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'executed', 'rejected')),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    proposed_on_hub text NOT NULL,
    decided_by text,
    decided_at bigint,
    decided_on_hub text
  );
  CREATE INDEX admin_proposals_pending ON admin_proposals(created_at, id COLLATE "C") WHERE state = 'pending';
  `,
  // 12: risk baselines for the team (risk/risk-engine.ts, risk/pg-risk-log.ts): every event a
  // baseline learns from (a call submitted, a held call settled), written in the transaction of
  // the decision it comes from, so a rolled-back decision teaches no hub. Each hub reads an
  // agent's events committed since its last read (xid against the snapshot of that read).
  `
  CREATE TABLE risk_log (
    id bigserial PRIMARY KEY,
    agent_id text NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    hub text NOT NULL,
    event text NOT NULL               -- JSON of the learner event (risk-ports.ts RiskEvent)
  );
  CREATE INDEX risk_log_by_agent ON risk_log(agent_id, xid);
  CREATE TRIGGER risk_log_append_only BEFORE UPDATE OR DELETE ON risk_log FOR EACH ROW EXECUTE FUNCTION append_only();
  `,
  // 13: risk snapshots and the import of hubs' SQLite baselines (risk/pg-risk-log.ts). One
  // snapshot per agent (its baseline as of `position`), so a hub's first read of an agent replays
  // only what came after it; the events the previous snapshot covered (`pruned`) are deleted, so
  // risk_log may now lose rows (never change them). risk_imports: each hub imports once.
  `
  CREATE TABLE risk_baselines (
    agent_id text PRIMARY KEY,
    position pg_snapshot NOT NULL,
    pruned pg_snapshot,
    events bigint NOT NULL,           -- events folded into it since the first snapshot
    state text NOT NULL               -- JSON of the baseline (risk/profile-state.ts ProfileState)
  );
  CREATE TABLE risk_imports (
    hub text PRIMARY KEY,
    agents integer NOT NULL DEFAULT 0,
    imported_at timestamptz NOT NULL DEFAULT now()
  );
  DROP TRIGGER risk_log_append_only ON risk_log;
  CREATE TRIGGER risk_log_no_update BEFORE UPDATE ON risk_log FOR EACH ROW EXECUTE FUNCTION append_only();
  `,
  // 14: a desk on any hub (docs/team-mode.md "One origin, any hub", store/pg/pg-desk-sessions.ts):
  // desk sessions for the team (the id only as its SHA-256; sign-out or an end found on one hub
  // ends it on all); the desk's bearer secret, one for the team (made by the first hub to start);
  // pending sign-ins bounded per hub and per client address (client_address), not only team-wide.
  `
  CREATE TABLE desk_sessions (
    id_hash text PRIMARY KEY,
    approver_id text NOT NULL,
    credential_id text NOT NULL,
    groups text NOT NULL,             -- JSON array: the groups in the team directory at sign-in
    ref text NOT NULL,                -- the audit reference (a second hash's prefix)
    signed_in_at bigint NOT NULL,
    last_seen_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    signed_in_on_hub text NOT NULL
  );
  CREATE INDEX desk_sessions_by_expiry ON desk_sessions(expires_at);
  CREATE TABLE team_desk_secret (
    id smallint PRIMARY KEY CHECK (id = 1),
    secret text NOT NULL,
    created_at bigint NOT NULL,
    created_by_hub text NOT NULL
  );
  ALTER TABLE ceremony_challenges ADD COLUMN client_address text;
  DROP INDEX ceremony_challenges_pending_sign_ins;
  CREATE INDEX ceremony_challenges_pending_sign_ins ON ceremony_challenges(issued_by_hub, expires_at) WHERE purpose = 'sign_in' AND used_at IS NULL;
  `,
  // 15: stateless desk sign-in challenges (ADR 0019, ui/sign-in-challenge.ts): a begin stores
  // nothing (its challenge carries an HMAC under the team's sign-in key, made once by the first
  // hub); a sign-in records its challenge's digest in the transaction that opens the session
  // (single use), so rows come only from genuine key taps. Pending sign-in rows are gone.
  `
  CREATE TABLE team_sign_in_key (
    id smallint PRIMARY KEY CHECK (id = 1),
    key text NOT NULL,                -- base64url of 32 random bytes; never logged
    created_at bigint NOT NULL,
    created_by_hub text NOT NULL
  );
  CREATE TABLE sign_in_challenges_used (
    challenge_hash text PRIMARY KEY,  -- base64url SHA-256 of the challenge
    approver_id text NOT NULL,
    expires_at bigint NOT NULL,
    used_at bigint NOT NULL,
    used_by_hub text NOT NULL
  );
  CREATE INDEX sign_in_challenges_used_by_expiry ON sign_in_challenges_used(expires_at);
  DROP INDEX ceremony_challenges_pending_sign_ins;
  DELETE FROM ceremony_challenges WHERE purpose = 'sign_in';
  ALTER TABLE ceremony_challenges DROP COLUMN client_address;
  `,
  // 16: the desks' push events for every hub (store/pg/pg-desk-events.ts): a row per request or
  // proposal event, written by triggers in the transaction that moved it (a call held, an approval
  // or denial recorded, a held call ended, a proposal made or decided), whatever code path wrote
  // it, with one NOTIFY per transaction. Each hub reads the rows committed since its last read (xid
  // against the snapshot of that read), on each NOTIFY and after each listener (re)connect, so an
  // event a hub's listener missed is pushed once it is back. Old rows are pruned by time.
  `
  CREATE TABLE desk_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    name text NOT NULL CHECK (name IN ('pending', 'approvalRecorded', 'decided', 'adminProposal')),
    subject text NOT NULL,            -- the request or proposal id
    detail text,                      -- pending: the agent id; decided, adminProposal: the state
    at bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
  );
  CREATE INDEX desk_events_by_xid ON desk_events(xid);
  CREATE INDEX desk_events_by_time ON desk_events(at);
  CREATE FUNCTION desk_event() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_TABLE_NAME = 'requests' AND TG_OP = 'INSERT' THEN
      INSERT INTO desk_events (name, subject, detail) VALUES ('pending', NEW.id, NEW.agent_id);
    ELSIF TG_TABLE_NAME = 'requests' THEN
      INSERT INTO desk_events (name, subject, detail) VALUES ('decided', NEW.id, NEW.state);
    ELSIF TG_TABLE_NAME = 'approvals' THEN
      INSERT INTO desk_events (name, subject) VALUES ('approvalRecorded', NEW.request_id);
    ELSE
      INSERT INTO desk_events (name, subject, detail) VALUES ('adminProposal', NEW.id, NEW.state);
    END IF;
    PERFORM pg_notify('countersign_desk_events', '');
    RETURN NULL;
  END $$;
  CREATE TRIGGER requests_held_desk_event AFTER INSERT ON requests FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION desk_event();
  CREATE TRIGGER requests_ended_desk_event AFTER UPDATE OF state ON requests FOR EACH ROW
    WHEN (OLD.state = 'pending' AND NEW.state <> 'pending') EXECUTE FUNCTION desk_event();
  CREATE TRIGGER approvals_desk_event AFTER INSERT ON approvals FOR EACH ROW EXECUTE FUNCTION desk_event();
  CREATE TRIGGER admin_proposals_made_desk_event AFTER INSERT ON admin_proposals FOR EACH ROW EXECUTE FUNCTION desk_event();
  CREATE TRIGGER admin_proposals_decided_desk_event AFTER UPDATE OF state ON admin_proposals FOR EACH ROW
    WHEN (NEW.state IS DISTINCT FROM OLD.state) EXECUTE FUNCTION desk_event();
  `,
  // 17: autovacuum for audit_submissions, a queue: every decision inserts a row and the audit
  // leader deletes it a moment later, so the table is small but leaves a dead row per decision.
  // PostgreSQL's default waits for 50 + 20% of the table's last counted rows to be dead; after a
  // backlog (a leader away for a while: millions of rows, counted when vacuumed) that is hundreds
  // of thousands of dead rows the leader's index scan walks past once the queue is empty again.
  // A fixed threshold (no share of the table) vacuums it at each autovacuum round that finds 1,000
  // dead rows, whatever its size was, and unthrottled (cost delay 0): a vacuum of a small table is
  // short, and throttled it holds its worker while dead rows pile up. Analyze alike, so the planner
  // sees the queue's current size. docs/team-mode.md "Database settings".
  `
  ALTER TABLE audit_submissions SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
  );
  `,
];
