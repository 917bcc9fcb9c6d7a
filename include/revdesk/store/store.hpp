// The storage interface shared by the memory, SQLite and PostgreSQL stores.
#pragma once

#include <revdesk/store/records.hpp>

#include <asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace revdesk {

/// Thrown by store::insert_event when the workspace already has an event with the same
/// idempotency key. Nothing of the rejected event is stored. `existing_event_id()` names the
/// event that carries the key, so a caller can read it with store::find_event and send its
/// stored response.
class duplicate_key_error : public std::runtime_error {
public:
    duplicate_key_error(std::string const& message, std::string existing_event_id)
        : std::runtime_error(message)
        , existing_event_id_(std::move(existing_event_id)) {}

    /// The id of the stored event that carries the key.
    std::string const& existing_event_id() const noexcept { return existing_event_id_; }

private:
    std::string existing_event_id_;
};

/// One page of store::list_attempts_page.
struct attempt_page {
    std::vector<attempt> items; ///< Newest first.
    /// The cursor of the next page, or nothing when this page is the last one.
    std::optional<std::string> next_cursor;
};

class shared_queue;

/// Durable state of a webhook server: subscriptions, events, deliveries, attempts and API keys.
///
/// Every operation is an awaitable that completes on the caller's executor. A write has been
/// committed when its awaitable returns, so a crash after that point loses nothing. Operations
/// report failures by throwing `std::system_error` (I/O) or `std::runtime_error` (the store's own
/// errors, with its message).
///
/// Thread safety: an implementation may be used from several coroutines at once; each operation
/// is atomic with respect to the others.
class store {
public:
    virtual ~store() = default;

    /// Inserts a new subscription. Its id is unique.
    virtual asio::awaitable<void> insert_subscription(subscription const& s) = 0;

    /// Replaces the stored fields of an existing subscription with those of `s` (same id and
    /// workspace). Returns false when no such subscription exists in that workspace.
    virtual asio::awaitable<bool> update_subscription(subscription const& s) = 0;

    /// Deletes a subscription of `workspace` and cancels its pending deliveries. Returns false
    /// when the id is unknown or belongs to another workspace.
    virtual asio::awaitable<bool> erase_subscription(std::string_view workspace,
                                                     std::string_view id) = 0;

    /// Returns every subscription, enabled or not.
    virtual asio::awaitable<std::vector<subscription>> load_subscriptions() = 0;

    /// Inserts an event together with its deliveries in one transaction, with the event's
    /// `idempotency_key` and `response`. Throws duplicate_key_error when another event of the same
    /// workspace carries that idempotency key, however old it is, until release_idempotency_keys
    /// or purge_before removes the key.
    virtual asio::awaitable<void> insert_event(event const& e,
                                               std::vector<delivery> const& deliveries) = 0;

    /// Returns the event `id` of `workspace`, or nothing when the id is unknown or belongs to
    /// another workspace.
    virtual asio::awaitable<std::optional<event>> find_event(std::string_view workspace,
                                                             std::string_view id) = 0;

    /// Returns the event of `workspace` that carries the idempotency key `key`, or nothing when
    /// no event carries it or that event was created before `not_before`.
    virtual asio::awaitable<std::optional<event>>
    find_event_by_idempotency_key(std::string_view workspace, std::string_view key,
                                  unix_ms not_before) = 0;

    /// Removes the idempotency key and the stored response of every event created before
    /// `created_before`, so that each key can be used again. Returns the number of events
    /// changed. A server calls it with the end of its idempotency window.
    virtual asio::awaitable<std::size_t> release_idempotency_keys(unix_ms created_before) = 0;

    /// Returns the deliveries of one event in insertion order, with their current state.
    virtual asio::awaitable<std::vector<delivery>> list_deliveries(std::string_view event_id) = 0;

    /// Inserts new deliveries of events that are already stored (a redelivery), in one
    /// transaction. Throws std::runtime_error and stores nothing when a delivery names an unknown
    /// event or its id exists already.
    virtual asio::awaitable<void> insert_deliveries(std::vector<delivery> const& deliveries) = 0;

    /// Records an attempt and stores the delivery's new state, attempt count and next attempt
    /// time from `updated`, in one transaction. The stored attempt takes its `subscription_id`
    /// and `event_id` from the stored delivery; non-empty values in `a` that differ throw
    /// std::runtime_error. An empty `a.id` is replaced by a generated one (`att_` and 16 lowercase
    /// hex digits). A caller's id of that form, or one that exists already, throws. In a shared
    /// store (see shared()) it also releases this node's lease on the delivery, and a delivery
    /// that another node cancelled meanwhile keeps the state `cancelled`.
    /// NOTE: the SQLite and PostgreSQL stores generate ids that count up over all workspaces, so
    /// a workspace can estimate the server's attempt volume from the ids it reads.
    virtual asio::awaitable<void> record_attempt(attempt const& a, delivery const& updated) = 0;

    /// Returns every delivery still pending, with its event, oldest first. A server calls this
    /// on start to resume what a previous process left, including attempts that were in flight
    /// when it stopped.
    virtual asio::awaitable<std::vector<pending_delivery>> load_pending() = 0;

    /// Returns the attempts of one subscription's deliveries, newest first, at most `limit`.
    virtual asio::awaitable<std::vector<attempt>> list_attempts(std::string_view subscription_id,
                                                                std::size_t limit) = 0;

    /// Returns up to `limit` attempts of one subscription's deliveries in the order of
    /// list_attempts, starting after the position that `cursor` encodes (from the start without
    /// one). The cursor is an opaque string from an earlier page's `next_cursor`. It stays valid
    /// while attempts are added or purged, because it encodes a position in the order rather than
    /// a row. A later page never repeats an attempt. Throws std::invalid_argument naming the
    /// cursor when it is not one that a store produced, and when `limit` is 0.
    virtual asio::awaitable<attempt_page>
    list_attempts_page(std::string_view subscription_id, std::size_t limit,
                       std::optional<std::string> const& cursor) = 0;

    /// Inserts an API key. Throws std::runtime_error when its id or digest exists already.
    virtual asio::awaitable<void> insert_key(api_key const& key) = 0;

    /// Returns every API key, revoked ones included, ordered by `created_at`, then by id.
    virtual asio::awaitable<std::vector<api_key>> load_keys() = 0;

    /// Marks the API key `id` as revoked. Returns false when the id is unknown. Revoking a
    /// revoked key again returns true.
    virtual asio::awaitable<bool> revoke_key(std::string_view id) = 0;

    /// Deletes every event created before `cutoff` that has no pending delivery, together with
    /// its deliveries and their attempts, and returns the number of events deleted. Without it,
    /// a store grows with every event. An attempt recorded afterwards for a deleted delivery
    /// throws like one for an unknown delivery, so `cutoff` should lie further back than the
    /// longest retry schedule.
    virtual asio::awaitable<std::size_t> purge_before(unix_ms cutoff) = 0;

    /// Returns true when the store can run a query now, false when it cannot (for example, after
    /// it was closed). Never throws a store error.
    virtual asio::awaitable<bool> ping() = 0;

    /// Returns the shared queue of a store that several servers use at once, or nullptr for a
    /// store that one process owns. A dispatcher on a shared queue claims due deliveries from
    /// the store instead of keeping its own queue (see shared_queue).
    virtual shared_queue* shared() noexcept { return nullptr; }
};

/// A change that another process (or this one) committed to a shared store.
struct store_change {
    enum class kind : std::uint8_t {
        work,         ///< New deliveries may be due: claim again.
        subscription, ///< The subscription `subscription_id` was created, changed or deleted.
        resync,       ///< Notifications may have been missed: reload every subscription.
    };
    kind what = kind::work;
    std::string subscription_id;
};

/// The queue of deliveries that several servers share through one database.
///
/// A delivery is attempted by the server that holds its lease. A server claims due, pending
/// deliveries without a live lease (none, or an expired one), renews the leases of those it still
/// holds, and gives a lease up by recording an attempt (store::record_attempt) or by releasing it.
/// When a server dies, its leases expire and another server claims the deliveries again, so
/// every delivery is attempted at least once and never by two live servers at the same time.
///
/// The lease owner is the store's node id, fixed when the store is opened.
class shared_queue {
public:
    virtual ~shared_queue() = default;

    /// The name that this process's leases carry.
    virtual std::string const& node_id() const noexcept = 0;

    /// Claims up to `limit` pending deliveries of enabled subscriptions whose `next_attempt_at`
    /// is at or before `now` and that no live lease holds, oldest first, and leases them to this
    /// node until `lease_until`. Concurrent claims from several nodes never return the same
    /// delivery.
    virtual asio::awaitable<std::vector<pending_delivery>>
    claim_due(unix_ms now, std::size_t limit, unix_ms lease_until) = 0;

    /// Extends this node's leases on `delivery_ids` to `lease_until`. Returns the ids whose lease
    /// this node no longer holds (expired and claimed by another node, or no longer pending).
    /// The caller must not start attempts of those.
    virtual asio::awaitable<std::vector<std::string>>
    renew_leases(std::vector<std::string> const& delivery_ids, unix_ms lease_until) = 0;

    /// Gives up this node's leases on `delivery_ids`, so that any node may claim them at once.
    virtual asio::awaitable<void> release_leases(std::vector<std::string> const& delivery_ids) = 0;

    /// Returns the subscription `id` as stored now, or nothing when it no longer exists.
    virtual asio::awaitable<std::optional<subscription>> find_subscription(std::string_view id) = 0;

    /// Calls `on_change` for each change that any node commits from now on: new work, a changed
    /// subscription, or `resync` after the store lost its notification channel and got it back.
    /// It is called on the executor of the store. One watcher at a time; a new call replaces it.
    virtual void watch(std::function<void(store_change const&)> on_change) = 0;
};

} // namespace revdesk
