// The PostgreSQL store: one database shared by several servers (`postgres:CONNINFO`).
#pragma once

#include <revdesk/store/detail/pg_connection.hpp>
#include <revdesk/store/store.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk {

/// Settings of a postgres_store.
struct postgres_options {
    /// A libpq connection string: `host=... port=... dbname=... user=...` or a
    /// `postgresql://` URI. Fields it leaves out come from libpq's environment variables
    /// (PGHOST, PGPASSWORD, ...) and `~/.pgpass`. The store never logs it and never puts its
    /// password into an error message.
    std::string conninfo;

    /// The number of connections that run queries, at least 1. The store opens one more
    /// connection that listens for notifications.
    std::size_t pool_size = 4;

    /// The name that this process's leases carry (shared_queue::node_id). Every server on one
    /// database needs its own; empty generates `HOSTNAME-PID-RANDOM`.
    std::string node_id;

    /// How long opening one connection may take before it fails.
    std::chrono::milliseconds connect_timeout{10'000};

    /// The wait before a new connection attempt after a failed one. It doubles after each
    /// further failure up to `max_reconnect_delay`. Operations that need a new connection during
    /// the wait fail at once with the last connection error.
    std::chrono::milliseconds reconnect_delay{100};
    std::chrono::milliseconds max_reconnect_delay{5'000};

    /// The maximum number of insert_event calls, and of record_attempt calls, that one
    /// transaction commits together, at least 1.
    std::size_t max_batch_writes = 512;
};

/// The schema versions before and after postgres_store::migrate.
struct postgres_migration_result {
    int previous_version = 0; ///< The schema version found.
    int current_version = 0;  ///< The schema version now, postgres_store::schema_version().
};

/// A store in a PostgreSQL database (version 12 or later) that several servers share. It is also
/// the shared_queue of those servers: they claim due deliveries with leases and learn of each
/// other's changes through LISTEN/NOTIFY. docs/storage.md describes the schema, the leases, the
/// notifications and the durability promise.
///
/// A write has been committed when its awaitable returns; PostgreSQL's default
/// `synchronous_commit = on` makes that commit durable (flushed to its write-ahead log).
///
/// Threading: all of the store's state lives on the executor given to the constructor, which must
/// not run handlers on two threads at once (an io_context run by one thread, or a strand). No
/// thread ever blocks on a query: libpq's non-blocking API is driven from asio, waiting on each
/// connection's socket. Operations may be awaited from coroutines on any executor: each one runs
/// on the store's executor and resumes the caller on the caller's executor. watch() callbacks run
/// on the store's executor.
///
/// Connections: a pool of `pool_size` connections, each with its own prepared statements, and one
/// more connection that LISTENs on the channels `revdesk_work` and `revdesk_subscriptions`. When
/// a connection breaks (the server restarts, the network fails), the operation that used it
/// throws, and later operations open new connections, waiting `reconnect_delay` (doubling) after
/// each failed attempt. The listening connection reconnects by itself and then reports
/// store_change::kind::resync, because notifications sent meanwhile are lost.
///
/// Group commit: insert_event calls that queue while a transaction runs are committed together in
/// the next transaction, each inside its own savepoint, so a write that fails (such as a duplicate
/// idempotency key) fails alone while the others commit. record_attempt calls queue the same way
/// on a queue of their own: one transaction locks the deliveries of a batch, updates them and
/// inserts the attempts with one statement each. A call that would fail (an unknown delivery, an
/// attempt that names another subscription or event, an attempt id that exists) fails alone. When
/// the batch statement itself fails, every call of the batch runs again in its own transaction, so
/// each one gets its own result.
///
/// Errors: database failures throw postgres_error (a std::runtime_error with the SQLSTATE),
/// including a duplicate id and a lost connection. When a connection breaks during COMMIT, the
/// write may have been committed or not. An idempotency key that another event carries throws
/// duplicate_key_error, and an invalid page cursor std::invalid_argument. Invalid records, an
/// unknown delivery in `record_attempt`, an unknown event in `insert_deliveries` and any operation
/// after `close` throw std::runtime_error.
///
/// Lifetimes: the store must outlive every operation started on it, and it must be destroyed on
/// its executor's thread, or after close() has completed, or once its executor no longer runs.
/// Operations copy their arguments when they start, at the first `co_await`.
///
/// Cancellation: not supported. An operation runs to completion once started.
class postgres_store final : public store, public shared_queue {
public:
    /// Prepares a store on `executor` without connecting (open() connects). Throws
    /// std::invalid_argument when `options.pool_size` or `options.max_batch_writes` is 0.
    postgres_store(asio::any_io_executor executor, postgres_options options);

    /// Closes every connection (see the lifetime rules in the class comment).
    ~postgres_store() override;

    postgres_store(postgres_store const&) = delete;
    postgres_store& operator=(postgres_store const&) = delete;

    /// Connects, applies the migrations that the database has not seen yet (see migrate) and
    /// starts listening for notifications. Throws postgres_error naming the server (host, port,
    /// database and user, never the password) when it cannot connect, and when the database has
    /// a newer schema version than this build supports. Call it once, before any operation.
    asio::awaitable<void> open();

    /// Stops listening and closes every connection once the operations in flight have finished
    /// with them. Operations started afterwards throw std::runtime_error. Calling it again does
    /// nothing.
    asio::awaitable<void> close();

    /// Applies the migrations that the database at `options.conninfo` has not seen yet, on one
    /// connection, and closes it. Each step runs in its own transaction under a transaction-level
    /// advisory lock, so servers that migrate at the same time apply each step once. open() does
    /// the same; this function serves a separate migration step before servers start.
    static asio::awaitable<postgres_migration_result> migrate(asio::any_io_executor executor,
                                                              postgres_options options);

    /// Returns the schema version that this build migrates a database to.
    static int schema_version() noexcept;

    /// Returns the number of insert_event transactions committed since the store opened.
    /// Together with the number of calls it shows how well group commit batches.
    std::uint64_t commit_count() const noexcept { return commit_count_; }

    /// Returns the number of record_attempt transactions committed since the store opened: one
    /// for each batch that wrote an attempt, and one for each call committed in a transaction of
    /// its own.
    std::uint64_t attempt_commit_count() const noexcept { return attempt_commit_count_; }

    /// The connection string's server, database and user, without the password.
    std::string const& target() const noexcept { return target_; }

    asio::awaitable<void> insert_subscription(subscription const& s) override;

    /// Replaces the fields of the subscription. When `s.enabled` is false, it also cancels the
    /// subscription's pending deliveries, leased ones included, in the same transaction.
    asio::awaitable<bool> update_subscription(subscription const& s) override;

    /// Deletes the subscription and cancels its pending deliveries, leased ones included, in one
    /// transaction.
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

    /// Records the attempt and releases this node's lease. The delivery changes only while this
    /// node or no node holds its lease, and a cancelled delivery stays cancelled. Calls are
    /// committed in call order, several in one transaction (see group commit).
    asio::awaitable<void> record_attempt(attempt const& a, delivery const& updated) override;

    /// Returns every pending delivery with its event, leased or not, ordered by
    /// `next_attempt_at`, then by insertion order.
    asio::awaitable<std::vector<pending_delivery>> load_pending() override;

    asio::awaitable<std::vector<attempt>> list_attempts(std::string_view subscription_id,
                                                        std::size_t limit) override;
    asio::awaitable<attempt_page>
    list_attempts_page(std::string_view subscription_id, std::size_t limit,
                       std::optional<std::string> const& cursor) override;

    asio::awaitable<void> insert_key(api_key const& key) override;
    asio::awaitable<std::vector<api_key>> load_keys() override;
    asio::awaitable<bool> revoke_key(std::string_view id) override;
    asio::awaitable<std::size_t> purge_before(unix_ms cutoff) override;

    /// Runs `SELECT 1` on a pool connection. Returns false when that fails, when the store is
    /// closed, and while it waits before reconnecting.
    asio::awaitable<bool> ping() override;

    shared_queue* shared() noexcept override { return this; }

    std::string const& node_id() const noexcept override { return node_id_; }
    asio::awaitable<std::vector<pending_delivery>> claim_due(unix_ms now, std::size_t limit,
                                                             unix_ms lease_until) override;
    asio::awaitable<std::vector<std::string>>
    renew_leases(std::vector<std::string> const& delivery_ids, unix_ms lease_until) override;
    asio::awaitable<void> release_leases(std::vector<std::string> const& delivery_ids) override;
    asio::awaitable<std::optional<subscription>> find_subscription(std::string_view id) override;

    /// Sets the watcher. It may be called from any thread, and it takes effect on the store's
    /// executor before any operation started afterwards.
    void watch(std::function<void(store_change const&)> on_change) override;

private:
    struct listen_state;
    struct write_job;
    struct attempt_job;
    class pooled;

    template <typename T>
    asio::awaitable<T> on_store(asio::awaitable<T> op);
    template <typename T, typename Body>
    asio::awaitable<T> transaction(Body body);
    template <typename T, typename Body>
    asio::awaitable<T> single(Body body);

    asio::awaitable<pooled> acquire();
    void give_back(std::unique_ptr<detail::pg_connection> connection);
    void wake_one_waiter();
    void check_open() const;

    asio::awaitable<void> open_on_store();
    asio::awaitable<void> close_on_store();
    asio::awaitable<void> insert_event_on_store(event e, std::vector<delivery> deliveries);
    asio::awaitable<void> run_writer();
    asio::awaitable<void> commit_batch(detail::pg_connection& connection,
                                       std::vector<std::shared_ptr<write_job>> const& batch);
    asio::awaitable<void> record_attempt_on_store(attempt a, delivery updated);
    asio::awaitable<void> run_attempt_writer();
    asio::awaitable<void> commit_attempts(detail::pg_connection& connection,
                                          std::vector<std::shared_ptr<attempt_job>> const& batch);
    asio::awaitable<void> record_alone(detail::pg_connection& connection, attempt_job& job);
    asio::awaitable<bool> ping_on_store();
    void stop_listener() noexcept;

    asio::any_io_executor executor_;
    postgres_options options_;
    std::string node_id_;
    std::string target_;
    bool opened_ = false;
    bool closed_ = false;
    std::uint64_t commit_count_ = 0;
    std::uint64_t attempt_commit_count_ = 0;

    // The pool. open_count_ counts the connections that exist or are being opened.
    std::vector<std::unique_ptr<detail::pg_connection>> idle_;
    std::size_t open_count_ = 0;
    std::deque<std::shared_ptr<asio::steady_timer>> waiters_;
    std::chrono::steady_clock::time_point retry_after_{};
    std::chrono::milliseconds next_delay_{0};
    std::optional<postgres_error> last_connect_error_;

    // Group commit.
    std::deque<std::shared_ptr<write_job>> write_queue_;
    bool writer_running_ = false;
    std::deque<std::shared_ptr<attempt_job>> attempt_queue_;
    bool attempt_writer_running_ = false;

    std::shared_ptr<listen_state> listener_;

    // Points to this store until the destructor clears it. Each lent connection keeps a copy,
    // so that one given back after the store is gone (by a coroutine frame that the io_context
    // destroys later) leaves the store alone.
    std::shared_ptr<postgres_store*> self_ = std::make_shared<postgres_store*>(this);
};

} // namespace revdesk

#include <revdesk/store/impl/postgres_store.ipp>
