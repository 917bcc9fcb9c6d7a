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
inline constexpr std::array<char const*, 1> sqlite_migrations{
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
};

} // namespace revdesk::detail
