// The SQLite schema as an ordered list of migrations.
#pragma once

#include <array>

namespace revdesk::detail {

/// Step N (counting from 1) moves a database from `PRAGMA user_version` N-1 to N. Each step runs
/// in its own transaction together with the update of `user_version`. Released steps never
/// change, so a schema change appends a new step.
///
/// Tables are STRICT, so SQLite rejects a value of the wrong type instead of converting it.
/// Scope columns are NULL when the scope is absent. Event types and delivery states are stored by
/// name so that reordering an enumeration never changes stored data.
inline constexpr std::array<char const*, 5> sqlite_migrations{
    // Version 1: the initial schema.
    R"sql(
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    webhook_url TEXT NOT NULL,
    event_type TEXT NOT NULL,
    workflow_id TEXT,
    workflow_id_is_number INTEGER NOT NULL,
    campaign_id TEXT,
    campaign_id_is_number INTEGER NOT NULL,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload BLOB NOT NULL,
    workflow_id TEXT,
    workflow_id_is_number INTEGER NOT NULL,
    campaign_id TEXT,
    campaign_id_is_number INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    subscription_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL
) STRICT;

-- Serves load_pending: only pending rows, in next_attempt_at order. The implicit rowid at the end
-- of the key orders ties by insertion.
CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE state = 'pending';

-- Serves the cancellation of a deleted subscription's deliveries.
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id);

-- subscription_id is copied from the delivery so that list_attempts reads one index range.
CREATE TABLE attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    subscription_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    response_body BLOB NOT NULL
) STRICT;

-- Serves list_attempts: scanned backwards, it yields newest first (ties by insertion, newest
-- first).
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, started_at);
)sql",

    // Version 2: API keys, idempotency keys, secret rotation, attempt ids and purging.
    R"sql(
ALTER TABLE subscriptions ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE subscriptions ADD COLUMN previous_secret_expires_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE subscriptions SET updated_at = created_at;

-- idempotency_key is NULL when the producer sent none.
ALTER TABLE events ADD COLUMN idempotency_key TEXT;
ALTER TABLE events ADD COLUMN response TEXT NOT NULL DEFAULT '';

-- Holds one event per key and workspace, and serves find_event_by_idempotency_key.
CREATE UNIQUE INDEX events_by_idempotency_key ON events (workspace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Serves release_idempotency_keys, which only looks at events that still hold a key.
CREATE INDEX events_holding_keys ON events (created_at) WHERE idempotency_key IS NOT NULL;

-- Serves purge_before.
CREATE INDEX events_by_created_at ON events (created_at);

-- Serves list_deliveries and purge_before.
CREATE INDEX deliveries_by_event ON deliveries (event_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL
) STRICT;

-- The attempts table is rebuilt because SQLite cannot add a primary key to a table. sequence is
-- the rowid made explicit: VACUUM may renumber an implicit rowid, which would move the positions
-- that page cursors hold, and AUTOINCREMENT keeps purged values from being used again. Existing
-- attempts keep their rowid as sequence and get the id that the store generates from it.
CREATE TABLE attempts_v2 (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    response_body BLOB NOT NULL
) STRICT;

INSERT INTO attempts_v2 (sequence, id, delivery_id, subscription_id, event_id, number,
                         started_at, duration_ms, status, error, response_body)
SELECT a.rowid, printf('att_%016x', a.rowid), a.delivery_id, a.subscription_id,
       coalesce(d.event_id, ''), a.number, a.started_at, a.duration_ms, a.status, a.error,
       a.response_body
FROM attempts AS a LEFT JOIN deliveries AS d ON d.id = a.delivery_id
ORDER BY a.rowid;

DROP TABLE attempts;
ALTER TABLE attempts_v2 RENAME TO attempts;

-- Serves list_attempts and list_attempts_page: scanned backwards, it yields newest first, ties
-- by sequence (the rowid at the end of every index entry), newest first.
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, started_at);

-- Serves purge_before.
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
)sql",

    // Version 3: the index that serves cancellation keeps pending deliveries only.
    R"sql(
-- Serves the cancellation of a deleted or disabled subscription's deliveries, which only looks at
-- pending ones. A delivery leaves the index when it is no longer pending, so the index stays
-- small, and a write touches a few hot pages instead of one page per subscription.
DROP INDEX deliveries_by_subscription;
CREATE INDEX deliveries_pending_by_subscription ON deliveries (subscription_id)
    WHERE state = 'pending';
)sql",

    // Version 4: the deliveries table checks its state with comparisons.
    R"sql(
-- SQLite evaluates `state IN (...)` with four or more values by building a temporary b-tree of
-- the values, for every row that a statement inserts or updates. The comparisons below accept
-- the same values without that. SQLite cannot change a CHECK constraint in place, so the table
-- is rebuilt. Rows keep their rowid, which orders ties in deliveries_pending. migrate() turns
-- foreign key enforcement off around the steps, because with it SQLite refuses to drop a table
-- that attempts refer to. The copy changes no key, so the references hold afterwards.
CREATE TABLE deliveries_v4 (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id),
    subscription_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'delivered' OR state = 'failed'
                               OR state = 'cancelled'),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL
) STRICT;

INSERT INTO deliveries_v4 (rowid, id, event_id, subscription_id, event_type, state, attempts,
                           next_attempt_at)
SELECT rowid, id, event_id, subscription_id, event_type, state, attempts, next_attempt_at
FROM deliveries ORDER BY rowid;

DROP TABLE deliveries;
ALTER TABLE deliveries_v4 RENAME TO deliveries;

CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_pending_by_subscription ON deliveries (subscription_id)
    WHERE state = 'pending';
)sql",

    // Version 5: attempts join attempts_by_subscription in batches.
    R"sql(
-- With one attempt per subscription in a commit, each insert into attempts_by_subscription
-- wrote a leaf of its own. A new attempt now has listed = 0 and goes into attempts_unlisted
-- instead, whose entries are in insertion order, so that inserts share its last page. The store
-- lists a few thousand attempts at a time in one statement, which writes each leaf once for
-- many attempts. Listings read both indexes. Existing attempts are listed already.
ALTER TABLE attempts ADD COLUMN listed INTEGER NOT NULL DEFAULT 1
    CHECK (listed = 0 OR listed = 1);
DROP INDEX attempts_by_subscription;
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, started_at) WHERE listed = 1;
CREATE INDEX attempts_unlisted ON attempts (listed) WHERE listed = 0;
)sql",
};

} // namespace revdesk::detail
