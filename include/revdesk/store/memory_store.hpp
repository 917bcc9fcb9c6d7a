// The memory store: every record in process memory, for tests, benchmarks and fire-and-forget
// delivery without durability.
#pragma once

#include <revdesk/detail/text_hash.hpp>
#include <revdesk/store/store.hpp>

#include <asio/awaitable.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace revdesk {

/// A store that keeps its records in memory behind a mutex. Every operation completes inside the
/// `co_await` without suspending, and nothing survives the object.
///
/// The ordering and error rules are those of sqlite_store, so the two are interchangeable in
/// tests. A duplicate id, an invalid record or an unknown delivery in `record_attempt` throws
/// std::runtime_error and changes nothing.
///
/// NOTE: only purge_before removes records. Without regular calls, memory grows with every event
/// until the store is destroyed.
///
/// Thread safety: every operation may be called from any thread at the same time.
class memory_store final : public store {
public:
    memory_store() = default;
    memory_store(memory_store const&) = delete;
    memory_store& operator=(memory_store const&) = delete;

    asio::awaitable<void> insert_subscription(subscription const& s) override;

    /// Replaces the fields of the subscription. When `s.enabled` is false, it also cancels the
    /// subscription's pending deliveries.
    asio::awaitable<bool> update_subscription(subscription const& s) override;

    asio::awaitable<bool> erase_subscription(std::string_view workspace,
                                             std::string_view id) override;

    /// Returns every subscription ordered by `created_at`, then by id.
    asio::awaitable<std::vector<subscription>> load_subscriptions() override;

    asio::awaitable<void> insert_event(event const& e,
                                       std::vector<delivery> const& deliveries) override;
    asio::awaitable<std::optional<event>> find_event(std::string_view workspace,
                                                     std::string_view id) override;
    asio::awaitable<std::optional<event>>
    find_event_by_idempotency_key(std::string_view workspace, std::string_view key,
                                  unix_ms not_before) override;
    asio::awaitable<std::size_t> release_idempotency_keys(unix_ms created_before) override;
    asio::awaitable<std::vector<delivery>> list_deliveries(std::string_view event_id) override;
    asio::awaitable<void> insert_deliveries(std::vector<delivery> const& deliveries) override;
    asio::awaitable<void> record_attempt(attempt const& a, delivery const& updated) override;

    /// Returns every pending delivery with its event, ordered by `next_attempt_at`, then by
    /// insertion order.
    asio::awaitable<std::vector<pending_delivery>> load_pending() override;

    /// Returns the attempts of one subscription's deliveries ordered by `started_at`, newest
    /// first, then by insertion order, newest first.
    asio::awaitable<std::vector<attempt>> list_attempts(std::string_view subscription_id,
                                                        std::size_t limit) override;
    asio::awaitable<attempt_page>
    list_attempts_page(std::string_view subscription_id, std::size_t limit,
                       std::optional<std::string> const& cursor) override;

    asio::awaitable<void> insert_key(api_key const& key) override;
    asio::awaitable<std::vector<api_key>> load_keys() override;
    asio::awaitable<bool> revoke_key(std::string_view id) override;

    asio::awaitable<std::size_t> purge_before(unix_ms cutoff) override;

    /// Returns true.
    asio::awaitable<bool> ping() override;

private:
    struct stored_delivery {
        delivery message;
        std::int64_t sequence = 0; // Insertion order, which breaks ties in load_pending.
    };

    struct stored_attempt {
        attempt record;
        std::int64_t sequence = 0; // Insertion order, which breaks ties in list_attempts.
    };

    // Inserts every delivery and adds it to its event's list or, when an id is taken or
    // repeated, inserts none and throws.
    void emplace_new_deliveries(std::vector<delivery> const& deliveries);
    void cancel_pending(std::string_view subscription_id);
    bool has_pending(std::string const& event_id) const;
    void erase_event(std::map<std::string, event, std::less<>>::iterator it);
    // Returns a copy of one subscription's attempts in listing order, newest first. Takes mutex_
    // itself, and sorts after releasing it.
    std::vector<stored_attempt> sorted_attempts(std::string_view subscription_id);

    std::mutex mutex_; // Guards every member below.
    std::int64_t next_sequence_ = 0;
    std::map<std::string, subscription, std::less<>> subscriptions_;
    std::map<std::string, event, std::less<>> events_;
    std::unordered_map<std::string, stored_delivery, detail::text_hash, std::equal_to<>>
        deliveries_;
    // The deliveries of each event in insertion order, keyed by event id. They point into
    // deliveries_, whose nodes stay put until erase_event removes both.
    std::map<std::string, std::vector<stored_delivery*>, std::less<>> event_deliveries_;
    // Event ids keyed by idempotency_index_key(workspace, key).
    std::map<std::string, std::string, std::less<>> idempotency_keys_;
    // Keyed by subscription id, each in insertion order. A deque grows without moving the
    // attempts it contains, each with several strings.
    std::unordered_map<std::string, std::deque<stored_attempt>, detail::text_hash, std::equal_to<>>
        attempts_;
    // The attempt ids that callers chose; generated ones are unique by construction.
    std::unordered_set<std::string, detail::text_hash, std::equal_to<>> caller_attempt_ids_;
    std::map<std::string, api_key, std::less<>> keys_;
    std::set<std::string, std::less<>> key_digests_;
};

} // namespace revdesk

#include <revdesk/store/impl/memory_store.ipp>
