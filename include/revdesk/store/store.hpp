// The storage interface shared by the memory, SQLite and PostgreSQL stores.
#pragma once

#include <revdesk/store/records.hpp>

#include <asio/awaitable.hpp>

#include <string_view>
#include <vector>

namespace revdesk {

/// Durable state of a webhook server: subscriptions, events, deliveries and attempts.
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

    /// Inserts an event together with its deliveries in one transaction.
    virtual asio::awaitable<void> insert_event(event const& e,
                                               std::vector<delivery> const& deliveries) = 0;

    /// Records an attempt and stores the delivery's new state, attempt count and next attempt
    /// time from `updated`, in one transaction.
    virtual asio::awaitable<void> record_attempt(attempt const& a, delivery const& updated) = 0;

    /// Returns every delivery still pending, with its event, oldest first. A server calls this
    /// on start to resume what a previous process left, including attempts that were in flight
    /// when it stopped.
    virtual asio::awaitable<std::vector<pending_delivery>> load_pending() = 0;

    /// Returns the attempts of one subscription's deliveries, newest first, at most `limit`.
    virtual asio::awaitable<std::vector<attempt>> list_attempts(std::string_view subscription_id,
                                                                std::size_t limit) = 0;
};

} // namespace revdesk
