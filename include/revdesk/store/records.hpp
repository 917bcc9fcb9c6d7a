// The records that every store keeps: subscriptions, events, deliveries, attempts and API keys.
#pragma once

#include <revdesk/catalog.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace revdesk {

/// Milliseconds since the Unix epoch, UTC. Every timestamp in a record uses this unit.
using unix_ms = std::int64_t;

/// A scope value (`workflow_id` or `campaign_id`) as the API received it. Identifiers never pass
/// through a double: an integer keeps its decimal digits in `text` and remembers that it was a
/// number, so it is echoed back with its JSON type. Matching compares `text` only, so the scope
/// `42` matches an event scoped with `"42"`.
struct scope_id {
    std::string text;
    bool is_number = false;

    friend bool operator==(scope_id const&, scope_id const&) = default;
};

/// A webhook subscription: one URL receiving one event type of one workspace.
struct subscription {
    std::string id; ///< `whk_` followed by at least 128 random bits.
    std::string workspace;
    std::string webhook_url;
    event_type type{};
    std::optional<scope_id> workflow_id;
    std::optional<scope_id> campaign_id;
    std::string secret;  ///< `whsec_` followed by base64 of the key bytes; signs every attempt.
    bool enabled = true; ///< False once a receiver answered `410 Gone`.
    unix_ms created_at = 0;

    /// The secret that `secret` replaced, or empty. It is kept so that attempts can carry a
    /// signature with each secret until `previous_secret_expires_at`, which lets receivers switch
    /// without a gap.
    std::string previous_secret;
    unix_ms previous_secret_expires_at = 0; ///< 0 when there is no previous secret.
    unix_ms updated_at = 0;                 ///< The time of the last change; `created_at` at first.
};

/// A published event. `payload` contains the exact bytes delivered as the request body on every
/// attempt; they are fixed at publish time and never re-serialized.
struct event {
    std::string id; ///< `evt_...`
    std::string workspace;
    event_type type{}; ///< The type the producer published, such as `call_completed`.
    std::string payload;
    std::optional<scope_id> workflow_id;
    std::optional<scope_id> campaign_id;
    unix_ms created_at = 0;

    /// The `Idempotency-Key` that the producer sent with the publish request, if any. A store
    /// keeps at most one event per key and workspace (see store::insert_event).
    std::optional<std::string> idempotency_key;
    /// The JSON body of the response to the first publish request, sent again when a request
    /// repeats the key.
    std::string response;
};

/// The state of a delivery.
enum class delivery_state : std::uint8_t {
    pending,   ///< Waiting for its next attempt at `next_attempt_at`.
    delivered, ///< A receiver answered 2xx.
    failed,    ///< Attempts are exhausted or the receiver rejected the message for good.
    cancelled, ///< The subscription was deleted or disabled before the message was delivered.
};

/// One message to one subscription. Its id is the `webhook-id` of every attempt, so receivers can
/// drop duplicates.
struct delivery {
    std::string id; ///< `msg_...`
    std::string event_id;
    std::string subscription_id;
    event_type type{}; ///< The type this subscription receives, such as `call_voicemail`.
    delivery_state state = delivery_state::pending;
    std::uint32_t attempts = 0; ///< Attempts made so far.
    unix_ms next_attempt_at = 0;
};

/// The record of one attempt.
struct attempt {
    std::string delivery_id;
    std::uint32_t number = 0; ///< 1 for the first attempt.
    unix_ms started_at = 0;
    std::int64_t duration_ms = 0;
    int status = 0;    ///< The HTTP status, or 0 when no response arrived.
    std::string error; ///< Empty on a response; otherwise the error class, such as `timeout`.
    std::string response_body; ///< A capped prefix of the response body.

    /// A unique, opaque handle. store::record_attempt generates `att_` followed by 16 lowercase
    /// hex digits when it is empty, and rejects an id of that form from the caller.
    std::string id;
    /// The subscription and event of the delivery. store::record_attempt fills them from the
    /// stored delivery when they are empty.
    std::string subscription_id;
    std::string event_id;
};

/// A key that authenticates API requests of one workspace. The store keeps only a digest of the
/// secret key, so a leaked database does not leak usable keys.
struct api_key {
    std::string
        id; ///< `key_` followed by random characters. The public handle for listing and revoking.
    std::string workspace;
    std::string digest; ///< Lowercase hex SHA-256 of the secret key.
    std::string hint;   ///< The first 8 characters of the secret key, to tell keys apart in lists.
    unix_ms created_at = 0;
    bool revoked = false;
};

/// A pending delivery with everything needed to attempt it again, as loaded on start.
struct pending_delivery {
    delivery message;
    event source;
};

} // namespace revdesk
