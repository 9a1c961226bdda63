/** Numbered schema migrations: index i upgrades version i to i+1. Never edit a shipped one. */
export const MIGRATIONS: readonly string[] = [
  // 1: identity, replay protection, decisions, tokens, hash-chained audit
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;

  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    owner TEXT NOT NULL,
    group_name TEXT NOT NULL,
    allowed_tools TEXT NOT NULL,      -- JSON array of tool names
    data_classes TEXT NOT NULL,       -- JSON array
    jurisdictions TEXT NOT NULL,      -- JSON array
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_reason TEXT
  ) STRICT;

  CREATE TABLE agent_keys (
    kid TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    alg TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256')),
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'retiring', 'revoked')),
    created_at INTEGER NOT NULL,
    not_after INTEGER,                -- end of the rotation overlap window
    revoked_at INTEGER
  ) STRICT;
  CREATE INDEX agent_keys_by_agent ON agent_keys(agent_id);

  CREATE TABLE seen_nonces (
    agent_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, nonce)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX seen_nonces_by_expiry ON seen_nonces(expires_at);

  CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    tool TEXT NOT NULL,
    call_json TEXT NOT NULL,          -- JCS of the tool call as signed
    call_sha256 TEXT NOT NULL,
    envelope_nonce TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('allowed', 'denied', 'pending', 'approved', 'expired')),
    policy_hash TEXT NOT NULL,
    determining_policies TEXT NOT NULL,
    reasons TEXT NOT NULL,
    obligation TEXT,                  -- JSON approval requirement for pending requests
    risk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,               -- pending requests expire
    decided_at INTEGER
  ) STRICT;
  CREATE INDEX requests_by_agent ON requests(agent_id, created_at);
  CREATE INDEX requests_pending ON requests(state, expires_at) WHERE state = 'pending';

  CREATE TABLE tokens (
    jti TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES requests(id),
    kid TEXT NOT NULL,
    token TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,             -- JCS of the event record
    prev_hash TEXT NOT NULL,          -- hex SHA-256 of the previous entry (64 zeros for the first)
    hash TEXT NOT NULL                -- hex SHA-256 over prev_hash || record
  ) STRICT;
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
  // 2: pinned custody signing keys per key domain (software or PKCS#11), with rotation overlap
  `
  CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,             -- RFC 7638 thumbprint of the public key (the pin)
    domain TEXT NOT NULL CHECK (domain IN ('production', 'test')),
    custody TEXT NOT NULL CHECK (custody IN ('software', 'pkcs11')),
    alg TEXT NOT NULL CHECK (alg IN ('ES256', 'EdDSA')),
    public_jwk TEXT NOT NULL,
    token_label TEXT,                 -- PKCS#11: the token it lives on
    key_label TEXT,                   -- PKCS#11: CKA_LABEL
    key_id TEXT,                      -- PKCS#11: CKA_ID (hex)
    status TEXT NOT NULL CHECK (status IN ('active', 'retiring', 'retired')),
    created_at INTEGER NOT NULL,
    not_after INTEGER,                -- retiring: published in the JWKS until then
    retired_at INTEGER
  ) STRICT;
  CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(domain) WHERE status = 'active';
  `,
  // 3: approvers, their WebAuthn credentials, approval ceremonies and recorded approvals
  `
  CREATE TABLE approvers (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    groups_json TEXT NOT NULL,        -- JSON array of group names
    virtual INTEGER NOT NULL CHECK (virtual IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at INTEGER NOT NULL,
    disabled_at INTEGER
  ) STRICT;

  CREATE TABLE approver_credentials (
    credential_id TEXT PRIMARY KEY,   -- base64url
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    public_key TEXT NOT NULL,         -- base64url COSE public key
    public_jwk TEXT NOT NULL,         -- the same key as a JWK (for the published directory)
    sign_count INTEGER NOT NULL,
    aaguid TEXT NOT NULL,
    attestation_fmt TEXT NOT NULL,
    attestation_object TEXT NOT NULL, -- base64url, kept as evidence
    transports TEXT NOT NULL,         -- JSON array
    status TEXT NOT NULL CHECK (status IN ('active', 'suspect', 'removed')),
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
  ) STRICT;
  CREATE INDEX approver_credentials_by_approver ON approver_credentials(approver_id);

  CREATE TABLE webauthn_challenges (
    challenge TEXT PRIMARY KEY,       -- base64url; single use
    purpose TEXT NOT NULL CHECK (purpose IN ('registration', 'approval')),
    approver_id TEXT NOT NULL,
    request_id TEXT,                  -- approval ceremonies
    verdict TEXT CHECK (verdict IN ('approve', 'deny')),
    record TEXT,                      -- JCS of the bound approval record
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  ) STRICT;

  CREATE TABLE approvals (
    request_id TEXT NOT NULL REFERENCES requests(id),
    approver_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'deny')),
    reason TEXT,
    assertion TEXT NOT NULL,          -- JSON: the assertion as carried in the token
    at INTEGER NOT NULL,
    PRIMARY KEY (request_id, approver_id)
  ) STRICT;
  `,
  // 4: admin actions confirmed by an admin's security key
  `
  CREATE TABLE admin_challenges (
    challenge TEXT PRIMARY KEY,       -- base64url SHA-256 of the JCS action record; single use
    admin_id TEXT NOT NULL,
    record TEXT NOT NULL,             -- JCS of {typ, adminId, action, nonce, expiresAt}
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  ) STRICT;
  `,
  // 5: single-use registration codes: a key is registered only with a code an admin issued
  `
  CREATE TABLE registration_codes (
    code_hash TEXT PRIMARY KEY,       -- hex SHA-256 of the code; the code itself is never stored
    approver_id TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  ) STRICT;
  `,
  // 6: approvers a policy names as conflicted for a held request (separation of duties)
  `
  ALTER TABLE requests ADD COLUMN conflicted_approvers TEXT NOT NULL DEFAULT '[]';
  `,
  // 7: risk baselines per agent, learned from executed calls only; enrolled model and version
  `
  ALTER TABLE agents ADD COLUMN model TEXT;
  ALTER TABLE agents ADD COLUMN agent_version TEXT;

  -- Destinations (payee, account, host, repository, environment, ...) an executed call used.
  CREATE TABLE risk_known (
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kind, value)
  ) STRICT, WITHOUT ROWID;

  -- Amounts of executed calls per series (tool and currency), for the agent's median.
  CREATE TABLE risk_amounts (
    agent_id TEXT NOT NULL,
    series TEXT NOT NULL,
    at INTEGER NOT NULL,
    amount REAL NOT NULL
  ) STRICT;
  CREATE INDEX risk_amounts_by_agent ON risk_amounts(agent_id, series, at);

  -- Counters of executed calls: hour of day, minute, tool, tool transition, data class, jurisdiction.
  CREATE TABLE risk_counts (
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kind, key)
  ) STRICT, WITHOUT ROWID;
  `,
  // 8: the audit log becomes an RFC 9162 Merkle log: entries (leaf i = seq - 1), the hashes of
  // every complete subtree, and signed checkpoints. The hash chain columns go; entries written
  // before this migration become leaves as they are (audit-log.ts computes their hashes on open).
  `
  DROP TRIGGER audit_log_no_update;
  DROP TRIGGER audit_log_no_delete;
  CREATE TABLE audit_entries (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,             -- JCS of the event record: the leaf's data
    request_id TEXT                   -- the request an event is about, for proofs by request
  ) STRICT;
  INSERT INTO audit_entries (seq, at, kind, record, request_id)
    SELECT seq, at, kind, record, json_extract(record, '$.requestId') FROM audit_log ORDER BY seq;
  DROP TABLE audit_log;
  ALTER TABLE audit_entries RENAME TO audit_log;
  CREATE INDEX audit_log_by_request ON audit_log(request_id) WHERE request_id IS NOT NULL;
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

  -- Hash of every complete subtree: level 0 holds leaf hashes; (level, idx) covers leaves
  -- [idx * 2^level, (idx + 1) * 2^level).
  CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
  ) STRICT, WITHOUT ROWID;
  CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;

  -- Signed checkpoints (C2SP tlog-checkpoint signed notes).
  CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    at INTEGER NOT NULL,
    note TEXT NOT NULL
  ) STRICT;
  `,
  // 9: identical held calls merge into one approval group (docs/approvals.md "Identical calls"):
  // a follower names its group's primary request; the primary is sealed once a ceremony starts
  // (no member joins after an approver began deciding, so every challenge covers a fixed list).
  `
  ALTER TABLE requests ADD COLUMN group_id TEXT REFERENCES requests(id);
  ALTER TABLE requests ADD COLUMN sealed_at INTEGER;
  CREATE INDEX requests_by_group ON requests(group_id) WHERE group_id IS NOT NULL;
  CREATE INDEX requests_open_groups ON requests(agent_id, call_sha256) WHERE state = 'pending' AND group_id IS NULL AND sealed_at IS NULL;
  `,
  // 10: tamper alarms raised by continuous audit verification; open until an admin acknowledges
  // one with a security-key tap (audit/tamper-alarm.ts). `findings` is JSON [{kind, seq, reason}].
  `
  CREATE TABLE audit_alarms (
    id INTEGER PRIMARY KEY,
    raised_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    first_bad_seq INTEGER NOT NULL,
    findings TEXT NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT
  ) STRICT;
  CREATE INDEX audit_alarms_open ON audit_alarms(id) WHERE acknowledged_at IS NULL;
  `,
  // 11: people have aliases (emails, other handles); an agent's owner is a person's approver id.
  // Owners enrolled as free text before this are resolved by the code on the next open
  // (identity/agent-registry.ts migrateFreeTextOwners): 'unchecked' until then, and an owner that
  // names no person holds the agent for review (the gateway refuses it) instead of being trusted.
  `
  CREATE TABLE approver_aliases (
    alias TEXT PRIMARY KEY,           -- trimmed, lowercase; unique across people and their ids
    approver_id TEXT NOT NULL REFERENCES approvers(id),
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX approver_aliases_by_approver ON approver_aliases(approver_id);
  ALTER TABLE agents ADD COLUMN owner_state TEXT NOT NULL DEFAULT 'unchecked' CHECK (owner_state IN ('unchecked', 'resolved', 'held_for_review'));
  ALTER TABLE agents ADD COLUMN owner_entered TEXT;  -- the owner as first entered, when it was free text
  ALTER TABLE agents ADD COLUMN review_reason TEXT;  -- why the agent is held for review
  UPDATE agents SET owner_entered = owner;
  `,
  // 12: data-flow provenance (risk/data-flow.ts): what each agent session read, as value digests
  // only (never the text), kept for the risk scorer's recent window.
  `
  CREATE TABLE risk_reads (
    agent_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    trusted INTEGER NOT NULL CHECK (trusted IN (0, 1)),
    what TEXT NOT NULL,             -- source and origin, for the factor's sentence
    digests TEXT NOT NULL           -- space-separated value digests
  ) STRICT;
  CREATE INDEX risk_reads_by_agent ON risk_reads(agent_id, at);
  `,
  // 13: the keys each assertion ceremony offered (approvals/ceremony.ts): only those may answer
  // it, across restarts too. A row without them (issued before this) offers nothing: start again.
  `
  ALTER TABLE webauthn_challenges ADD COLUMN offered TEXT;  -- JSON array of credential ids
  ALTER TABLE admin_challenges ADD COLUMN offered TEXT;     -- JSON array of credential ids
  `,
  // 14: the desk's history (ui/history-reader.ts): decided requests paged by (decided_at, id) through
  // partial indexes per filter, and a trigram full-text index over request id, agent, tool and
  // payee for the search box (substring match without a scan). The search rows are written by a
  // trigger in the same transaction as the request row; rows already stored are indexed here.
  `
  CREATE INDEX requests_decided ON requests(decided_at, id) WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_state ON requests(state, decided_at, id) WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_tool ON requests(tool, decided_at, id) WHERE state <> 'pending';
  CREATE INDEX requests_decided_by_agent ON requests(agent_id, decided_at, id) WHERE state <> 'pending';
  CREATE VIRTUAL TABLE request_search USING fts5(body, tokenize = 'trigram');
  CREATE TRIGGER request_search_insert AFTER INSERT ON requests BEGIN
    INSERT INTO request_search (rowid, body)
      VALUES (new.rowid, new.id || ' ' || new.agent_id || ' ' || new.tool || ' ' || COALESCE(json_extract(new.call_json, '$.params.payee'), ''));
  END;
  INSERT INTO request_search (rowid, body)
    SELECT rowid, id || ' ' || agent_id || ' ' || tool || ' ' || COALESCE(json_extract(call_json, '$.params.payee'), '') FROM requests;
  `,
  // 15: the webhook outbox (notify/webhook-outbox.ts): one row per delivery, written in the
  // transaction whose audit entry it announces, sent with retries, dead after the last attempt.
  `
  CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,  -- random; sent as countersign-delivery for receivers to dedupe
    webhook_id TEXT NOT NULL,          -- notifications.webhooks[].id
    event TEXT NOT NULL,               -- approval.pending, approval.approved, ...
    request_id TEXT,
    body TEXT NOT NULL,                -- the JSON body exactly as sent (signed afresh at each attempt)
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
  ) STRICT;
  CREATE INDEX webhook_outbox_due ON webhook_outbox(next_at) WHERE state = 'pending';
  CREATE INDEX webhook_outbox_dead ON webhook_outbox(finished_at) WHERE state = 'dead';
  `,
  // 16: the desk's queue stays flat however much waits (bench BENCH_ONLY=desk-queue): the prompts
  // (pending, not a follower) are paged in queue order (soonest to expire) and oldest first through
  // partial indexes that end in the tie-breaking id, so a page reads its rows in order and stops
  // (no sort of every pending row); and their number is kept by triggers in the same transaction as
  // the row, so counting reads one row plus the few prompts already past expiry but not yet swept.
  `
  CREATE INDEX requests_queue_by_expiry ON requests(expires_at, id) WHERE state = 'pending' AND group_id IS NULL;
  CREATE INDEX requests_queue_by_age ON requests(created_at, id) WHERE state = 'pending' AND group_id IS NULL;
  CREATE TABLE queue_counts (
    name TEXT PRIMARY KEY CHECK (name = 'prompts'),
    n INTEGER NOT NULL CHECK (n >= 0)
  ) STRICT;
  INSERT INTO queue_counts (name, n)
    SELECT 'prompts', COUNT(*) FROM requests WHERE state = 'pending' AND group_id IS NULL;
  CREATE TRIGGER queue_counts_insert AFTER INSERT ON requests
    WHEN new.state = 'pending' AND new.group_id IS NULL
  BEGIN
    UPDATE queue_counts SET n = n + 1 WHERE name = 'prompts';
  END;
  CREATE TRIGGER queue_counts_update AFTER UPDATE OF state, group_id ON requests
    WHEN (old.state = 'pending' AND old.group_id IS NULL) IS NOT (new.state = 'pending' AND new.group_id IS NULL)
  BEGIN
    UPDATE queue_counts SET n = n + (CASE WHEN new.state = 'pending' AND new.group_id IS NULL THEN 1 ELSE -1 END) WHERE name = 'prompts';
  END;
  CREATE TRIGGER queue_counts_delete AFTER DELETE ON requests
    WHEN old.state = 'pending' AND old.group_id IS NULL
  BEGIN
    UPDATE queue_counts SET n = n - 1 WHERE name = 'prompts';
  END;
  `,
  // 17: the admin quorum (approvals/admin-actions.ts): a first admin's tapped action waits here
  // until a second admin confirms or rejects it; the state moves once, out of 'pending' only.
  `
  CREATE TABLE admin_proposals (
    id TEXT PRIMARY KEY,               -- random, shown to the admins
    action TEXT NOT NULL,              -- canonical JSON of the action the proposer's key signed
    proposed_by TEXT NOT NULL,
    proposer_credential TEXT NOT NULL,
    proposer_evidence TEXT NOT NULL,   -- JSON: the proposer's assertion (authenticatorData, clientDataJSON, signature)
    state TEXT NOT NULL CHECK (state IN ('pending', 'executed', 'rejected')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER
  ) STRICT;
  CREATE INDEX admin_proposals_pending ON admin_proposals(created_at) WHERE state = 'pending';
  `,
  // 18: the decision path's two reads of an agent's pending requests (the per-agent cap, and the
  // waiting group an identical held call joins) each read that agent's pending rows only: without
  // an index led by the agent, SQLite walked every pending request of every agent per held call.
  `
  CREATE INDEX requests_pending_by_agent ON requests(agent_id) WHERE state = 'pending';
  `,
  // 19: the History search index is filled outside the decision transaction (issue #12;
  // store/request-search-index.ts): in batches after the commit and before every search, from
  // the requests above the highest rowid it holds. The trigger indexed each row inside its
  // decision's savepoint, where FTS5 flushes a segment per savepoint (~45 µs per decision).
  `
  DROP TRIGGER request_search_insert;
  `,
  // 20: the audit tree's hashes are keyed by where their leaves end, then level (issue #12): the
  // leaf an append hashes and every subtree it completes share one key prefix, so one commit's
  // hashes go to the table's last page or two. Keyed (level, idx), they spread over one page per
  // level, which nearly doubled the WAL bytes of a commit of 100 appends. Same rows, same hashes.
  `
  CREATE TABLE audit_tree (
    end_leaf INTEGER NOT NULL,        -- the subtree covers leaves [end_leaf - 2^level, end_leaf)
    level INTEGER NOT NULL,           -- 0: a leaf hash
    hash BLOB NOT NULL,
    PRIMARY KEY (end_leaf, level)
  ) STRICT, WITHOUT ROWID;
  INSERT INTO audit_tree (end_leaf, level, hash) SELECT (idx + 1) << level, level, hash FROM audit_nodes ORDER BY (idx + 1) << level, level;
  DROP TABLE audit_nodes;
  CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
  // 21: each entry's leaf hash moves into its own row (issue #12, ADR 0007): an append writes one
  // row with its leaf instead of two (audit_log and a level-0 audit_tree row), and audit_tree
  // keeps only the subtrees above the leaves. The leaf is NULL until hashed (entries syncTree
  // has not reached); it may be set once and never changed. Level-0 rows of entries that do not
  // exist are kept: they are planted hashes, and the start-up check refuses them as before.
  `
  ALTER TABLE audit_log ADD COLUMN leaf BLOB;  -- RFC 9162 leaf hash of record; NULL until hashed
  DROP TRIGGER audit_log_no_update;
  UPDATE audit_log SET leaf = (SELECT hash FROM audit_tree WHERE end_leaf = audit_log.seq AND level = 0);
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF seq, at, kind, record, request_id ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_log_leaf_once BEFORE UPDATE OF leaf ON audit_log WHEN OLD.leaf IS NOT NULL BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  DROP TRIGGER audit_tree_no_delete;
  DELETE FROM audit_tree WHERE level = 0 AND end_leaf <= (SELECT COALESCE(MAX(seq), 0) FROM audit_log);
  CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
  // 22: an append writes one row (issue #12): the hashes of the subtrees an entry's leaf completes
  // move from audit_tree into the entry's own row (`subtrees`: level 1 first, 32 bytes each; NULL
  // when it completes none or is not hashed yet), and the by-request index is keyed by an integer
  // (store/request-id.ts requestKey, registered as countersign_request_key) instead of the
  // 38-character id; a look-up compares the record's own requestId, which the key only narrows.
  // audit_tree keeps only rows for entries that do not exist (planted: the start-up check refuses
  // them as before). Leaf and subtrees are set once, together (syncTree), never changed.
  `
  ALTER TABLE audit_log ADD COLUMN subtrees BLOB;
  UPDATE audit_log SET subtrees = (
      SELECT CAST(group_concat(hash, x'' ORDER BY level) AS BLOB) FROM audit_tree WHERE end_leaf = audit_log.seq AND level > 0)
    WHERE seq IN (SELECT end_leaf FROM audit_tree WHERE level > 0);
  DROP TRIGGER audit_tree_no_delete;
  DELETE FROM audit_tree WHERE level > 0 AND end_leaf <= (SELECT COALESCE(MAX(seq), 0) FROM audit_log);
  CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  ALTER TABLE audit_log ADD COLUMN request_key INTEGER;
  UPDATE audit_log SET request_key = countersign_request_key(request_id) WHERE request_id IS NOT NULL;
  DROP INDEX audit_log_by_request;
  DROP TRIGGER audit_log_no_update;
  DROP TRIGGER audit_log_leaf_once;
  ALTER TABLE audit_log DROP COLUMN request_id;
  CREATE INDEX audit_log_by_request ON audit_log(request_key) WHERE request_key IS NOT NULL;
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF seq, at, kind, record, request_key ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_log_leaf_once BEFORE UPDATE OF leaf, subtrees ON audit_log WHEN OLD.leaf IS NOT NULL BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
  // 23: two indexes of requests that every decision wrote go (issue #12), each read served as
  // fast by the indexes that stay (docs/adr/0022-fewer-b-trees-per-decision.md):
  // - requests_by_agent (agent_id, created_at): the risk profile's window of an agent's requests
  //   (RequestRepository.recentOf) reads its decided rows through requests_decided_by_agent
  //   (decided no earlier than created, so decided within the window) and its pending rows
  //   through requests_pending_by_agent; a decided row whose decided_at is before its created_at
  //   (the clock stepped back) or missing is read through requests_decided_out_of_order, a
  //   partial index no ordinary decision writes.
  // - requests_decided (decided_at, id): the History's pages without a state filter read
  //   requests_decided_by_state for each of the four decided states (one ordered range each);
  //   the approvals listing of decided held requests reads requests_held_decided, a partial
  //   index written only when a held request is decided (never by an automatic decision).
  `
  DROP INDEX requests_by_agent;
  DROP INDEX requests_decided;
  CREATE INDEX requests_decided_out_of_order ON requests(agent_id, created_at) WHERE state <> 'pending' AND (decided_at IS NULL OR decided_at < created_at);
  CREATE INDEX requests_held_decided ON requests(decided_at, id) WHERE obligation IS NOT NULL AND state <> 'pending' AND group_id IS NULL;
  `,
];
