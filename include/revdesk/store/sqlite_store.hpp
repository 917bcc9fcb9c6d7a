// The SQLite store: the default, durable store of a single server (`sqlite:PATH`).
#pragma once

#include <revdesk/store/detail/sqlite_connection.hpp>
#include <revdesk/store/detail/sqlite_job.hpp>
#include <revdesk/store/store.hpp>

#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

namespace revdesk {

/// Settings of a sqlite_store.
struct sqlite_options {
    /// How long a statement waits for a lock that another connection (such as an `sqlite3` shell
    /// or a backup tool) holds before failing with SQLITE_BUSY.
    std::chrono::milliseconds busy_timeout{5000};

    /// The maximum number of writes that one transaction commits together. Must be at least 1.
    std::size_t max_batch_writes = 512;

    /// The number of recorded attempts that wait outside the index of each subscription's
    /// attempts before a commit adds them in one statement. Each listing of attempts reads every
    /// waiting one, of any subscription, so a larger value costs listings more. Must be at
    /// least 1.
    std::size_t max_unlisted_attempts = 4096;
};

/// A store in one SQLite database file, in WAL mode with `synchronous=FULL`. A write is in the
/// write-ahead log and synced to disk (fsync) before its awaitable returns, so it survives a
/// killed process and a power loss. docs/storage.md describes the schema and the durability
/// promise.
///
/// Threading: the store owns one worker thread that owns the connection, and every SQLite call
/// runs there. Each operation queues its work for that thread and resumes the awaiting coroutine
/// on the coroutine's own executor. Writes that queue up while a transaction commits are committed
/// together in the next transaction (group commit), so many concurrent writers share one fsync.
/// A write that fails inside such a batch is rolled back alone and reports its own error, while
/// the other writes of the batch still commit.
///
/// Lifetimes: the execution context of an awaiting coroutine must outlive the operation, because
/// the result is posted to it. An operation copies its arguments when it starts, at the first
/// `co_await`, so they must stay valid until then and may change afterwards.
///
/// Errors: operations throw sqlite_error (a std::runtime_error with SQLite's extended result code)
/// for database failures, including a duplicate id. An idempotency key that another event
/// carries throws duplicate_key_error, and an invalid page cursor std::invalid_argument. Invalid
/// records, an unknown delivery in `record_attempt`, an unknown event in `insert_deliveries` and
/// any operation after `close` throw std::runtime_error.
///
/// Cancellation: not supported. An operation runs to completion once queued.
///
/// Thread safety: every member function may be called from any thread at the same time, except
/// that no operation may start once the destructor has begun.
class sqlite_store final : public store {
public:
    /// Opens or creates the database at `path`, enables WAL mode, `synchronous=FULL` and foreign
    /// keys, and applies the migrations that the file has not seen yet. A new file is created with
    /// mode 0600 because it contains the subscriptions' signing secrets. `":memory:"` opens a
    /// private in-memory database without WAL, which is not durable.
    ///
    /// Throws sqlite_error naming `path` and SQLite's message when the file cannot be opened,
    /// is not a database, or has a newer schema version than this build supports, and
    /// std::invalid_argument when `options.max_batch_writes` is 0.
    explicit sqlite_store(std::string path, sqlite_options options = {});

    /// Finishes the queued operations, then closes the database.
    ~sqlite_store() override;

    sqlite_store(sqlite_store const&) = delete;
    sqlite_store& operator=(sqlite_store const&) = delete;

    /// Finishes the queued operations, then closes the database and stops the worker thread.
    /// Blocks until the worker thread has ended. Operations started afterwards throw
    /// std::runtime_error. Calling it again does nothing.
    void close();

    /// The path that the store was opened with.
    std::string const& path() const noexcept { return path_; }

    /// Returns the number of write transactions committed since the store opened, migrations
    /// excluded. Together with the number of writes it shows how well group commit batches.
    std::uint64_t commit_count() const noexcept {
        return commit_count_.load(std::memory_order_relaxed);
    }

    /// Returns the schema version that this build migrates a database to (`PRAGMA user_version`).
    static int schema_version() noexcept;

    asio::awaitable<void> insert_subscription(subscription const& s) override;

    /// Replaces the fields of the subscription. When `s.enabled` is false, it also cancels the
    /// subscription's pending deliveries in the same transaction.
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

    /// Deletes in one write transaction, which holds the database's write lock until it commits.
    /// NOTE: one call has no limit on the rows it deletes, so the first purge of a large backlog
    /// delays every other write until it commits. Regular calls keep each purge small.
    asio::awaitable<std::size_t> purge_before(unix_ms cutoff) override;

    /// Runs `SELECT 1` on the worker thread after the operations queued before it. Returns false
    /// when the query fails or the store is closed.
    asio::awaitable<bool> ping() override;

private:
    // Queues `work` (callable as `T(detail::sqlite_connection&)`) for the worker thread and
    // resumes the caller with its result or exception. `work` is moved several times on its
    // way, so it must move without copying. A lambda that captures a const reference parameter
    // by copy has a const member, which each move copies: capture it as `[x = x]` instead.
    template <typename T, typename Work>
    asio::awaitable<T> run_on_worker(bool is_write, Work work);

    void enqueue(std::unique_ptr<detail::sqlite_job> job);
    void run_worker(std::promise<void> opened);
    void process(detail::sqlite_connection& connection,
                 std::deque<std::unique_ptr<detail::sqlite_job>>& jobs);
    bool begin_batch(detail::sqlite_connection& connection,
                     std::vector<std::unique_ptr<detail::sqlite_job>> const& batch);
    void commit_batch(detail::sqlite_connection& connection,
                      std::vector<std::unique_ptr<detail::sqlite_job>> const& batch);
    void commit_with_savepoints(detail::sqlite_connection& connection,
                                std::vector<std::unique_ptr<detail::sqlite_job>> const& batch);
    void commit_each_alone(detail::sqlite_connection& connection,
                           std::vector<std::unique_ptr<detail::sqlite_job>> const& batch);
    void commit_alone(detail::sqlite_connection& connection, detail::sqlite_job& job);
    void begin_write(detail::sqlite_connection& connection);
    std::int64_t take_attempt_sequence(detail::sqlite_connection& connection);
    void commit_write(detail::sqlite_connection& connection);
    void list_waiting_attempts(detail::sqlite_connection& connection);

    std::string path_;
    sqlite_options options_;
    std::atomic<std::uint64_t> commit_count_{0};
    // The sequence of the next attempt row in the open write transaction. That transaction has
    // the write lock, so no other connection inserts an attempt meanwhile. Read only on the worker thread.
    std::optional<std::int64_t> next_attempt_sequence_;
    // The number of attempts with listed = 0: counted when a write transaction begins, then one
    // more per insert. An insert rolled back to its savepoint makes it an estimate, which only
    // decides when to list them. Worker thread only.
    std::size_t unlisted_attempts_ = 0;

    std::mutex mutex_; // Guards queue_ and closing_.
    std::condition_variable wake_worker_;
    std::deque<std::unique_ptr<detail::sqlite_job>> queue_;
    bool closing_ = false;

    std::mutex close_mutex_; // Serializes close() so that only one caller joins the worker.
    std::thread worker_;
};

template <typename T, typename Work>
asio::awaitable<T> sqlite_store::run_on_worker(bool is_write, Work work) {
    // A member that a move copies instead, such as a const one, makes the move able to throw.
    static_assert(std::is_nothrow_move_constructible_v<Work>,
                  "move the captures of the work: a const member is copied at every move");
    using signature = typename detail::sqlite_job_signature<T>::type;
    auto initiation = [this, is_write](auto handler, Work work) {
        using job_type = detail::sqlite_job_impl<T, Work, decltype(handler)>;
        enqueue(std::make_unique<job_type>(is_write, std::move(work), std::move(handler)));
    };
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), signature>(
        std::move(initiation), asio::use_awaitable, std::move(work));
}

} // namespace revdesk

#include <revdesk/store/impl/sqlite_store.ipp>
