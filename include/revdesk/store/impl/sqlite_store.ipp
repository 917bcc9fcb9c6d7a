// Inline definitions of sqlite_store, included at the end of sqlite_store.hpp.
#pragma once

#include <revdesk/store/detail/attempt_cursor.hpp>
#include <revdesk/store/detail/record_checks.hpp>
#include <revdesk/store/detail/sqlite_schema.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>

namespace revdesk::detail {

/// Creates the database file with mode 0600 when it does not exist yet, because it will contain
/// signing secrets and SQLite 3.40 creates it with mode 0644 (before the umask). The WAL and
/// shared-memory files that SQLite creates later copy the database file's mode.
inline void create_private_file(std::string const& path) {
    if (path.empty() || path == ":memory:") {
        return;
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        // The file exists already, or SQLite's own open reports why it cannot be created.
        return;
    }
    ::close(fd);

    // Persists the new directory entry before any commit is acknowledged. A failure is ignored
    // because some file systems reject fsync on a directory.
    auto directory = std::filesystem::path(path).parent_path();
    int dir_fd =
        ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

/// Returns `message` without the "SQLite database 'PATH': " prefix that sqlite_connection puts in
/// front of its errors, for messages that name the path elsewhere.
inline std::string without_path_prefix(std::string const& path, std::string message) {
    std::string prefix = "SQLite database '" + path + "': ";
    if (message.starts_with(prefix)) {
        message.erase(0, prefix.size());
    }
    return message;
}

/// Sets the connection options that the durability promise depends on and checks that SQLite
/// accepted them.
inline void configure(sqlite_connection& connection, sqlite_options const& options) {
    auto const& path = connection.path();
    auto timeout = std::clamp<std::chrono::milliseconds::rep>(options.busy_timeout.count(), 0,
                                                              std::numeric_limits<int>::max());
    sqlite3_busy_timeout(connection.handle(), static_cast<int>(timeout));

    std::string journal_mode = connection.query_text("PRAGMA journal_mode = WAL");
    if (journal_mode != "wal" && path != ":memory:") {
        throw sqlite_error(SQLITE_ERROR,
                           "WAL mode is unavailable (journal_mode is '" + journal_mode + "')");
    }

    // FULL syncs the WAL on every commit. NORMAL syncs it only at checkpoints, so a power loss
    // could undo commits that were already acknowledged. fullfsync only matters on macOS.
    //
    // temp_store = MEMORY keeps the savepoint journal of each write in a batch in memory. With
    // the default, a journal that grows past 64 KiB (SQLITE_STMTJRNL_SPILL) moves to a temporary
    // file, created again in each such transaction. The journal only serves ROLLBACK TO, so a
    // crash loses nothing that it held in either place.
    //
    // wal_autocheckpoint = 10000 lets the WAL grow to about 40 MiB (10,000 pages of 4 KiB) before
    // its pages are copied back into the database file, instead of the default 1,000 pages. A
    // page that many commits change, such as the last page of a table, is then copied back once
    // per 10,000 WAL pages instead of ten times. Fan-out through this store delivered 12% more per
    // second with it (same session, HTTPS, 1,000 subscriptions over 16 endpoints).
    connection.execute("PRAGMA synchronous = FULL; PRAGMA fullfsync = ON; "
                       "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; "
                       "PRAGMA wal_autocheckpoint = 10000");
    if (connection.query_int64("PRAGMA synchronous") != 2) {
        throw sqlite_error(SQLITE_ERROR, "SQLite rejected synchronous=FULL");
    }
}

/// Runs the migrations from the file's schema version to the latest, each in its own write
/// transaction.
inline void migrate_steps(sqlite_connection& connection) {
    auto const& path = connection.path();
    auto latest = static_cast<std::int64_t>(sqlite_migrations.size());
    for (;;) {
        connection.execute("BEGIN IMMEDIATE");
        std::int64_t version = 0;
        try {
            version = connection.query_int64("PRAGMA user_version");
        } catch (...) {
            connection.rollback_quietly();
            throw;
        }
        if (version == latest) {
            connection.execute("COMMIT");
            return;
        }
        if (version < 0 || version > latest) {
            connection.rollback_quietly();
            throw sqlite_error(SQLITE_ERROR, "its schema version " + std::to_string(version) +
                                                 " is not one this build supports (0 to " +
                                                 std::to_string(latest) +
                                                 "). Open it with the build that wrote it.");
        }

        auto next = std::to_string(version + 1);
        try {
            connection.execute(sqlite_migrations[static_cast<std::size_t>(version)]);
            connection.execute(("PRAGMA user_version = " + next).c_str());
            connection.execute("COMMIT");
        } catch (sqlite_error const& e) {
            connection.rollback_quietly();
            throw sqlite_error(e.code(), "migration to schema version " + next +
                                             " failed: " + without_path_prefix(path, e.what()));
        }
    }
}

/// Applies the migrations that the database has not seen yet. The version is read again inside
/// each write transaction, so two processes opening a new file at once apply each step once.
///
/// Foreign keys are not enforced during the steps, because a step that rebuilds a table drops
/// the old one, which SQLite refuses with enforcement while other tables refer to its rows (the
/// pragma has no effect inside a transaction, so it cannot be left to the step). No step changes
/// a key, so the references hold afterwards as before.
inline void migrate(sqlite_connection& connection) {
    connection.execute("PRAGMA foreign_keys = OFF");
    migrate_steps(connection);
    connection.execute("PRAGMA foreign_keys = ON");
    if (connection.query_int64("PRAGMA foreign_keys") != 1) {
        throw sqlite_error(SQLITE_ERROR, "SQLite did not turn foreign key enforcement back on");
    }
}

inline void bind_scope(sqlite_statement& stmt, int text_index, std::optional<scope_id> const& s) {
    if (s) {
        stmt.bind(text_index, s->text);
        stmt.bind(text_index + 1, std::int64_t{s->is_number});
    } else {
        stmt.bind_null(text_index);
        stmt.bind(text_index + 1, std::int64_t{0});
    }
}

inline std::optional<scope_id> read_scope(sqlite_statement const& stmt, int text_column) {
    if (stmt.is_null(text_column)) {
        return std::nullopt;
    }
    return scope_id{stmt.text(text_column), stmt.int64(text_column + 1) != 0};
}

// Binds ?1 to ?14 in the column order of the subscriptions table.
inline void bind_subscription(sqlite_statement& stmt, subscription const& s) {
    stmt.bind(1, s.id);
    stmt.bind(2, s.workspace);
    stmt.bind(3, s.webhook_url);
    stmt.bind(4, checked_type_name(s.type));
    bind_scope(stmt, 5, s.workflow_id);
    bind_scope(stmt, 7, s.campaign_id);
    stmt.bind(9, s.secret);
    stmt.bind(10, std::int64_t{s.enabled});
    stmt.bind(11, s.created_at);
    stmt.bind(12, s.previous_secret);
    stmt.bind(13, s.previous_secret_expires_at);
    stmt.bind(14, s.updated_at);
}

// The columns that read_event expects, in its order. A macro, so that queries stay string
// literals, which the statement cache requires. Undefined at the end of this file.
#define REVDESK_SQLITE_EVENT_COLUMNS                                                               \
    "e.id, e.workspace, e.event_type, e.payload, e.workflow_id, e.workflow_id_is_number, "         \
    "e.campaign_id, e.campaign_id_is_number, e.created_at, e.idempotency_key, e.response"

// Reads the REVDESK_SQLITE_EVENT_COLUMNS that start at column `first`.
inline event read_event(sqlite_statement const& stmt, int first) {
    event e;
    e.id = stmt.text(first);
    e.workspace = stmt.text(first + 1);
    e.type = parse_stored_type(stmt.text(first + 2), "events", e.id);
    e.payload = stmt.blob(first + 3);
    e.workflow_id = read_scope(stmt, first + 4);
    e.campaign_id = read_scope(stmt, first + 6);
    e.created_at = stmt.int64(first + 8);
    if (!stmt.is_null(first + 9)) {
        e.idempotency_key = stmt.text(first + 9);
    }
    e.response = stmt.text(first + 10);
    return e;
}

// The columns that read_delivery expects, in its order.
#define REVDESK_SQLITE_DELIVERY_COLUMNS                                                            \
    "id, event_id, subscription_id, event_type, state, attempts, next_attempt_at"

inline delivery_state parse_stored_state(std::string_view name, std::string_view id) {
    for (auto s : {delivery_state::pending, delivery_state::delivered, delivery_state::failed,
                   delivery_state::cancelled}) {
        if (state_name(s) == name) {
            return s;
        }
    }
    // The CHECK constraint of the deliveries table admits only the names above.
    throw std::runtime_error("unknown delivery state '" + std::string(name) +
                             "' in deliveries row '" + std::string(id) + "'");
}

inline delivery read_delivery(sqlite_statement const& stmt) {
    delivery d;
    d.id = stmt.text(0);
    d.event_id = stmt.text(1);
    d.subscription_id = stmt.text(2);
    d.type = parse_stored_type(stmt.text(3), "deliveries", d.id);
    d.state = parse_stored_state(stmt.text(4), d.id);
    d.attempts = static_cast<std::uint32_t>(stmt.int64(5));
    d.next_attempt_at = stmt.int64(6);
    return d;
}

inline void insert_delivery(sqlite_connection& connection, delivery const& d) {
    auto stmt = connection.prepare(
        "INSERT INTO deliveries (id, event_id, subscription_id, event_type, state, "
        "attempts, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    stmt.bind(1, d.id);
    stmt.bind(2, d.event_id);
    stmt.bind(3, d.subscription_id);
    stmt.bind(4, checked_type_name(d.type));
    stmt.bind(5, state_name(d.state));
    stmt.bind(6, std::int64_t{d.attempts});
    stmt.bind(7, d.next_attempt_at);
    stmt.run();
}

// The columns that read_attempt expects, in its order. The last one, sequence, is the position
// in the listing order, which the record does not contain.
#define REVDESK_SQLITE_ATTEMPT_COLUMNS                                                             \
    "id, delivery_id, subscription_id, event_id, number, started_at, duration_ms, status, "        \
    "error, response_body, sequence"

// The newest attempts of subscription ?1 that meet `condition`, at most ?2: those in
// attempts_by_subscription, read newest first from the index, and every attempt waiting in
// attempts_unlisted, filtered. `listed = 1` and `listed = 0` let SQLite use the two partial
// indexes.
#define REVDESK_SQLITE_LIST_ATTEMPTS(condition)                                                    \
    "SELECT * FROM (SELECT " REVDESK_SQLITE_ATTEMPT_COLUMNS " FROM attempts "                      \
    "WHERE subscription_id = ?1 AND listed = 1" condition                                          \
    " ORDER BY started_at DESC, sequence DESC LIMIT ?2) "                                          \
    "UNION ALL SELECT " REVDESK_SQLITE_ATTEMPT_COLUMNS " FROM attempts "                           \
    "WHERE listed = 0 AND subscription_id = ?1" condition                                          \
    " ORDER BY started_at DESC, sequence DESC LIMIT ?2"

/// The statement of list_attempts: ?1 the subscription, ?2 the limit.
inline constexpr char const* list_attempts_sql = REVDESK_SQLITE_LIST_ATTEMPTS("");

/// The statement of list_attempts_page after a cursor at started_at ?3 and sequence ?4. The
/// condition on started_at alone lets SQLite scan a range of the index.
inline constexpr char const* list_attempts_after_sql = REVDESK_SQLITE_LIST_ATTEMPTS(
    " AND started_at <= ?3 AND (started_at < ?3 OR sequence < ?4)");

inline attempt read_attempt(sqlite_statement const& stmt) {
    attempt a;
    a.id = stmt.text(0);
    a.delivery_id = stmt.text(1);
    a.subscription_id = stmt.text(2);
    a.event_id = stmt.text(3);
    a.number = static_cast<std::uint32_t>(stmt.int64(4));
    a.started_at = stmt.int64(5);
    a.duration_ms = stmt.int64(6);
    a.status = static_cast<int>(stmt.int64(7));
    a.error = stmt.text(8);
    a.response_body = stmt.blob(9);
    return a;
}

// Converts a caller's row limit to SQLite's integer, saturating instead of wrapping.
inline std::int64_t row_limit(std::size_t limit) {
    return static_cast<std::int64_t>(
        std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
}

inline void cancel_pending(sqlite_connection& connection, std::string_view subscription_id) {
    auto stmt = connection.prepare("UPDATE deliveries SET state = 'cancelled' "
                                   "WHERE subscription_id = ?1 AND state = 'pending'");
    stmt.bind(1, subscription_id);
    stmt.run();
}

} // namespace revdesk::detail

namespace revdesk {

inline sqlite_store::sqlite_store(std::string path, sqlite_options options)
    : path_(std::move(path))
    , options_(options) {
    if (options_.max_batch_writes == 0) {
        throw std::invalid_argument("sqlite_options::max_batch_writes must be at least 1");
    }
    if (options_.max_unlisted_attempts == 0) {
        throw std::invalid_argument("sqlite_options::max_unlisted_attempts must be at least 1");
    }
    std::promise<void> opened;
    auto open_result = opened.get_future();
    worker_ = std::thread(
        [this, opened = std::move(opened)]() mutable { run_worker(std::move(opened)); });
    try {
        open_result.get();
    } catch (...) {
        worker_.join();
        throw;
    }
}

inline sqlite_store::~sqlite_store() {
    close();
}

inline void sqlite_store::close() {
    std::lock_guard close_lock(close_mutex_);
    {
        std::lock_guard lock(mutex_);
        closing_ = true;
    }
    wake_worker_.notify_one();
    if (worker_.joinable()) {
        worker_.join();
    }
}

inline int sqlite_store::schema_version() noexcept {
    return static_cast<int>(detail::sqlite_migrations.size());
}

inline void sqlite_store::enqueue(std::unique_ptr<detail::sqlite_job> job) {
    bool queued = false;
    {
        std::lock_guard lock(mutex_);
        if (!closing_) {
            queue_.push_back(std::move(job));
            queued = true;
        }
    }
    if (queued) {
        wake_worker_.notify_one();
        return;
    }
    job->fail(
        std::make_exception_ptr(std::runtime_error("SQLite store '" + path_ + "' is closed")));
    detail::sqlite_job::complete(std::move(job));
}

inline void sqlite_store::run_worker(std::promise<void> opened) {
    std::optional<detail::sqlite_connection> connection;
    try {
        detail::create_private_file(path_);
        connection.emplace(path_);
        try {
            detail::configure(*connection, options_);
            detail::migrate(*connection);
        } catch (sqlite_error const& e) {
            throw sqlite_error(e.code(), "cannot open SQLite database '" + path_ +
                                             "': " + detail::without_path_prefix(path_, e.what()));
        }
    } catch (...) {
        opened.set_exception(std::current_exception());
        return;
    }
    opened.set_value();

    std::deque<std::unique_ptr<detail::sqlite_job>> jobs;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_worker_.wait(lock, [this] { return closing_ || !queue_.empty(); });
            if (queue_.empty()) {
                // closing_ is set and every queued job has completed.
                break;
            }
            jobs.swap(queue_);
        }
        process(*connection, jobs);
    }
}

inline void sqlite_store::process(detail::sqlite_connection& connection,
                                  std::deque<std::unique_ptr<detail::sqlite_job>>& jobs) {
    // Jobs run in arrival order. A read runs on its own, and each run of consecutive writes is
    // committed in transactions of up to max_batch_writes writes.
    std::vector<std::unique_ptr<detail::sqlite_job>> batch;
    while (!jobs.empty()) {
        if (!jobs.front()->is_write()) {
            auto job = std::move(jobs.front());
            jobs.pop_front();
            job->execute(connection);
            detail::sqlite_job::complete(std::move(job));
            continue;
        }

        batch.clear();
        while (!jobs.empty() && jobs.front()->is_write() &&
               batch.size() < options_.max_batch_writes) {
            batch.push_back(std::move(jobs.front()));
            jobs.pop_front();
        }
        if (batch.size() == 1) {
            commit_alone(connection, *batch.front());
        } else {
            commit_batch(connection, batch);
        }
        // Callers resume only now, after the commit that holds their write.
        detail::sqlite_job::complete_all(batch);
    }
}

inline bool
sqlite_store::begin_batch(detail::sqlite_connection& connection,
                          std::vector<std::unique_ptr<detail::sqlite_job>> const& batch) {
    try {
        begin_write(connection);
        return true;
    } catch (...) {
        // The lock is held elsewhere past busy_timeout (or the disk failed). Retrying each write
        // would wait busy_timeout once per write, so they all fail with this error.
        auto error = std::current_exception();
        for (auto& job : batch) {
            job->fail(error);
        }
        return false;
    }
}

inline void
sqlite_store::commit_batch(detail::sqlite_connection& connection,
                           std::vector<std::unique_ptr<detail::sqlite_job>> const& batch) {
    // The first pass runs the writes without savepoints. A savepoint copies every page that it
    // changes and that an earlier write of the transaction already changed into its journal, and
    // the writes of a batch share most of their pages. When a write fails, the transaction is
    // rolled back and the batch runs again with a savepoint per write.
    if (!begin_batch(connection, batch)) {
        return;
    }
    bool write_failed = false;
    bool committed = false;
    try {
        for (auto& job : batch) {
            if (!job->execute(connection)) {
                write_failed = true;
                break;
            }
        }
        if (!write_failed) {
            commit_write(connection);
            committed = true;
        }
    } catch (...) {
        // A failed COMMIT is handled below like a lost transaction.
    }
    if (committed) {
        commit_count_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    connection.rollback_quietly();
    if (write_failed) {
        commit_with_savepoints(connection, batch);
        return;
    }
    commit_each_alone(connection, batch);
}

inline void
sqlite_store::commit_with_savepoints(detail::sqlite_connection& connection,
                                     std::vector<std::unique_ptr<detail::sqlite_job>> const& batch) {
    if (!begin_batch(connection, batch)) {
        return;
    }

    // Each write runs inside a savepoint, so a write that fails is rolled back alone and keeps
    // its error while the others stay in the transaction.
    bool committed = false;
    try {
        bool transaction_lost = false;
        for (auto& job : batch) {
            connection.prepare("SAVEPOINT batch_write").run();
            if (job->execute(connection)) {
                connection.prepare("RELEASE batch_write").run();
                continue;
            }
            if (!connection.in_transaction()) {
                // SQLite rolled back the whole transaction (as it does after SQLITE_FULL or an
                // I/O error), taking the earlier writes of the batch with it.
                transaction_lost = true;
                break;
            }
            connection.prepare("ROLLBACK TO batch_write").run();
            connection.prepare("RELEASE batch_write").run();
        }
        if (!transaction_lost) {
            commit_write(connection);
            committed = true;
        }
    } catch (...) {
        // A failed COMMIT or savepoint statement is handled below like a lost transaction.
    }
    if (committed) {
        commit_count_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    connection.rollback_quietly();
    commit_each_alone(connection, batch);
}

// NOTE: no test reaches this fallback, because it needs a failed COMMIT or an error after which
// SQLite rolls back the whole transaction (SQLITE_FULL, SQLITE_IOERR), and the tests inject no
// such fault.
inline void
sqlite_store::commit_each_alone(detail::sqlite_connection& connection,
                                std::vector<std::unique_ptr<detail::sqlite_job>> const& batch) {
    for (auto& job : batch) {
        commit_alone(connection, *job);
    }
}

inline void sqlite_store::begin_write(detail::sqlite_connection& connection) {
    // Another connection may have inserted attempts since the last write transaction, and a
    // transaction of this one may have been rolled back, so both counts start from the file.
    next_attempt_sequence_.reset();
    connection.prepare("BEGIN IMMEDIATE").run();
    unlisted_attempts_ = static_cast<std::size_t>(
        connection.query_int64("SELECT count(*) FROM attempts WHERE listed = 0"));
}

inline void sqlite_store::commit_write(detail::sqlite_connection& connection) {
    if (unlisted_attempts_ >= options_.max_unlisted_attempts) {
        list_waiting_attempts(connection);
    }
    connection.prepare("COMMIT").run();
}

inline std::int64_t sqlite_store::take_attempt_sequence(detail::sqlite_connection& connection) {
    // AUTOINCREMENT would pick the same value: one more than both the largest sequence ever used
    // (kept in sqlite_sequence) and the largest one present. Later attempts of the transaction
    // count on from it. A write rolled back to its savepoint leaves a gap, which AUTOINCREMENT
    // allows too.
    if (!next_attempt_sequence_) {
        next_attempt_sequence_ = connection.query_int64(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'attempts'), 0), "
            "coalesce((SELECT max(sequence) FROM attempts), 0)) + 1");
    }
    return (*next_attempt_sequence_)++;
}

inline void sqlite_store::list_waiting_attempts(detail::sqlite_connection& connection) {
    // One statement adds every waiting attempt to attempts_by_subscription. It runs in a
    // savepoint of its own, so that when it fails it is undone alone: the writes of the
    // transaction still commit, and a later transaction tries again.
    try {
        connection.prepare("SAVEPOINT listing").run();
        connection.prepare("UPDATE attempts SET listed = 1 WHERE listed = 0").run();
        connection.prepare("RELEASE listing").run();
    } catch (...) {
        // When SQLite rolled the whole transaction back (SQLITE_FULL, an I/O error), the COMMIT
        // that follows fails, and the caller handles that like any failed commit.
        if (connection.in_transaction()) {
            connection.prepare("ROLLBACK TO listing").run();
            connection.prepare("RELEASE listing").run();
        }
    }
}

inline void sqlite_store::commit_alone(detail::sqlite_connection& connection,
                                       detail::sqlite_job& job) {
    try {
        begin_write(connection);
    } catch (...) {
        job.fail(std::current_exception());
        return;
    }
    if (!job.execute(connection)) {
        connection.rollback_quietly();
        return;
    }
    try {
        commit_write(connection);
        commit_count_.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
        job.fail(std::current_exception());
        connection.rollback_quietly();
    }
}

inline asio::awaitable<void> sqlite_store::insert_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    auto work = [s = s](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(
            "INSERT INTO subscriptions (id, workspace, webhook_url, event_type, workflow_id, "
            "workflow_id_is_number, campaign_id, campaign_id_is_number, secret, enabled, "
            "created_at, previous_secret, previous_secret_expires_at, updated_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
        detail::bind_subscription(stmt, s);
        stmt.run();
    };
    co_await run_on_worker<void>(true, std::move(work));
}

inline asio::awaitable<bool> sqlite_store::update_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    auto work = [s = s](detail::sqlite_connection& connection) {
        {
            auto stmt = connection.prepare(
                "UPDATE subscriptions SET webhook_url = ?3, event_type = ?4, workflow_id = ?5, "
                "workflow_id_is_number = ?6, campaign_id = ?7, campaign_id_is_number = ?8, "
                "secret = ?9, enabled = ?10, created_at = ?11, previous_secret = ?12, "
                "previous_secret_expires_at = ?13, updated_at = ?14 "
                "WHERE id = ?1 AND workspace = ?2");
            detail::bind_subscription(stmt, s);
            stmt.run();
        }
        if (connection.changes() == 0) {
            return false;
        }
        if (!s.enabled) {
            detail::cancel_pending(connection, s.id);
        }
        return true;
    };
    co_return co_await run_on_worker<bool>(true, std::move(work));
}

inline asio::awaitable<bool> sqlite_store::erase_subscription(std::string_view workspace,
                                                              std::string_view id) {
    auto work = [workspace = std::string(workspace),
                 id = std::string(id)](detail::sqlite_connection& connection) {
        {
            auto stmt =
                connection.prepare("DELETE FROM subscriptions WHERE id = ?1 AND workspace = ?2");
            stmt.bind(1, id);
            stmt.bind(2, workspace);
            stmt.run();
        }
        if (connection.changes() == 0) {
            return false;
        }
        detail::cancel_pending(connection, id);
        return true;
    };
    co_return co_await run_on_worker<bool>(true, std::move(work));
}

inline asio::awaitable<std::vector<subscription>> sqlite_store::load_subscriptions() {
    auto work = [](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(
            "SELECT id, workspace, webhook_url, event_type, workflow_id, "
            "workflow_id_is_number, campaign_id, campaign_id_is_number, secret, enabled, "
            "created_at, previous_secret, previous_secret_expires_at, updated_at "
            "FROM subscriptions ORDER BY created_at, id");
        std::vector<subscription> result;
        while (stmt.step()) {
            subscription& s = result.emplace_back();
            s.id = stmt.text(0);
            s.workspace = stmt.text(1);
            s.webhook_url = stmt.text(2);
            s.type = detail::parse_stored_type(stmt.text(3), "subscriptions", s.id);
            s.workflow_id = detail::read_scope(stmt, 4);
            s.campaign_id = detail::read_scope(stmt, 6);
            s.secret = stmt.text(8);
            s.enabled = stmt.int64(9) != 0;
            s.created_at = stmt.int64(10);
            s.previous_secret = stmt.text(11);
            s.previous_secret_expires_at = stmt.int64(12);
            s.updated_at = stmt.int64(13);
        }
        return result;
    };
    co_return co_await run_on_worker<std::vector<subscription>>(false, std::move(work));
}

inline asio::awaitable<void> sqlite_store::insert_event(event const& e,
                                                        std::vector<delivery> const& deliveries) {
    detail::check_event_deliveries(e, deliveries);
    auto work = [e = e, deliveries = deliveries](detail::sqlite_connection& connection) {
        if (e.idempotency_key) {
            // The write transaction holds the lock from this check to the insert, so no other
            // writer can take the key in between.
            auto stmt = connection.prepare(
                "SELECT id FROM events WHERE workspace = ?1 AND idempotency_key = ?2");
            stmt.bind(1, e.workspace);
            stmt.bind(2, *e.idempotency_key);
            // An event that repeats its own id fails below as a duplicate id, as in memory_store.
            if (stmt.step() && stmt.text(0) != e.id) {
                auto holder = stmt.text(0);
                throw duplicate_key_error(detail::duplicate_key_message(e, holder), holder);
            }
        }
        {
            auto stmt = connection.prepare(
                "INSERT INTO events (id, workspace, event_type, payload, workflow_id, "
                "workflow_id_is_number, campaign_id, campaign_id_is_number, created_at, "
                "idempotency_key, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
            stmt.bind(1, e.id);
            stmt.bind(2, e.workspace);
            stmt.bind(3, detail::checked_type_name(e.type));
            stmt.bind_blob(4, e.payload);
            detail::bind_scope(stmt, 5, e.workflow_id);
            detail::bind_scope(stmt, 7, e.campaign_id);
            stmt.bind(9, e.created_at);
            if (e.idempotency_key) {
                stmt.bind(10, *e.idempotency_key);
            } else {
                stmt.bind_null(10);
            }
            stmt.bind(11, e.response);
            stmt.run();
        }
        for (auto const& d : deliveries) {
            detail::insert_delivery(connection, d);
        }
    };
    co_await run_on_worker<void>(true, std::move(work));
}

inline asio::awaitable<std::optional<event>> sqlite_store::find_event(std::string_view workspace,
                                                                      std::string_view id) {
    auto work = [workspace = std::string(workspace),
                 id = std::string(id)](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare("SELECT " REVDESK_SQLITE_EVENT_COLUMNS
                                       " FROM events AS e WHERE e.id = ?1 AND e.workspace = ?2");
        stmt.bind(1, id);
        stmt.bind(2, workspace);
        std::optional<event> result;
        if (stmt.step()) {
            result = detail::read_event(stmt, 0);
        }
        return result;
    };
    co_return co_await run_on_worker<std::optional<event>>(false, std::move(work));
}

inline asio::awaitable<std::optional<event>>
sqlite_store::find_event_by_idempotency_key(std::string_view workspace, std::string_view key,
                                            unix_ms not_before) {
    auto work = [workspace = std::string(workspace), key = std::string(key),
                 not_before](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(
            "SELECT " REVDESK_SQLITE_EVENT_COLUMNS " FROM events AS e "
            "WHERE e.workspace = ?1 AND e.idempotency_key = ?2 AND e.created_at >= ?3");
        stmt.bind(1, workspace);
        stmt.bind(2, key);
        stmt.bind(3, not_before);
        std::optional<event> result;
        if (stmt.step()) {
            result = detail::read_event(stmt, 0);
        }
        return result;
    };
    co_return co_await run_on_worker<std::optional<event>>(false, std::move(work));
}

inline asio::awaitable<std::size_t> sqlite_store::release_idempotency_keys(unix_ms created_before) {
    auto work = [created_before](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare("UPDATE events SET idempotency_key = NULL, response = '' "
                                       "WHERE idempotency_key IS NOT NULL AND created_at < ?1");
        stmt.bind(1, created_before);
        stmt.run();
        return static_cast<std::size_t>(connection.changes());
    };
    co_return co_await run_on_worker<std::size_t>(true, std::move(work));
}

inline asio::awaitable<std::vector<delivery>>
sqlite_store::list_deliveries(std::string_view event_id) {
    auto work = [event_id = std::string(event_id)](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare("SELECT " REVDESK_SQLITE_DELIVERY_COLUMNS
                                       " FROM deliveries WHERE event_id = ?1 ORDER BY rowid");
        stmt.bind(1, event_id);
        std::vector<delivery> result;
        while (stmt.step()) {
            result.push_back(detail::read_delivery(stmt));
        }
        return result;
    };
    co_return co_await run_on_worker<std::vector<delivery>>(false, std::move(work));
}

inline asio::awaitable<void>
sqlite_store::insert_deliveries(std::vector<delivery> const& deliveries) {
    detail::check_deliveries(deliveries);
    auto work = [deliveries = deliveries](detail::sqlite_connection& connection) {
        for (auto const& d : deliveries) {
            {
                // The foreign key would reject the row too, but its error does not name the event.
                auto stmt = connection.prepare("SELECT 1 FROM events WHERE id = ?1");
                stmt.bind(1, d.event_id);
                if (!stmt.step()) {
                    throw std::runtime_error(detail::event_not_found(d.event_id));
                }
            }
            detail::insert_delivery(connection, d);
        }
    };
    co_await run_on_worker<void>(true, std::move(work));
}

inline asio::awaitable<void> sqlite_store::record_attempt(attempt const& a,
                                                          delivery const& updated) {
    detail::check_attempt(a, updated);
    auto work = [this, a = a, updated = updated](detail::sqlite_connection& connection) {
        // A SELECT and an UPDATE by rowid instead of one UPDATE with RETURNING, which collects
        // its rows in a temporary b-tree that it builds for every call. A check below that
        // throws rolls the update back with the rest of the write.
        std::int64_t rowid = 0;
        std::string subscription_id;
        std::string event_id;
        {
            auto stmt = connection.prepare(
                "SELECT rowid, subscription_id, event_id FROM deliveries WHERE id = ?1");
            stmt.bind(1, updated.id);
            if (!stmt.step()) {
                throw std::runtime_error(detail::delivery_not_found(updated.id));
            }
            rowid = stmt.int64(0);
            subscription_id = stmt.text(1);
            event_id = stmt.text(2);
        }
        {
            auto stmt = connection.prepare("UPDATE deliveries SET state = ?2, attempts = ?3, "
                                           "next_attempt_at = ?4 WHERE rowid = ?1");
            stmt.bind(1, rowid);
            stmt.bind(2, detail::state_name(updated.state));
            stmt.bind(3, std::int64_t{updated.attempts});
            stmt.bind(4, updated.next_attempt_at);
            stmt.run();
        }
        detail::check_attempt_owner(a, subscription_id, event_id);

        // The write transaction holds the lock, so no other insert takes this sequence before
        // the row below.
        auto sequence = take_attempt_sequence(connection);
        std::string generated_id;
        if (a.id.empty()) {
            generated_id = detail::generated_attempt_id(sequence);
        }
        // The attempt waits in attempts_unlisted until list_waiting_attempts (schema step 5).
        auto stmt = connection.prepare(
            "INSERT INTO attempts (sequence, id, delivery_id, subscription_id, event_id, number, "
            "started_at, duration_ms, status, error, response_body, listed) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0)");
        stmt.bind(1, sequence);
        stmt.bind(2, a.id.empty() ? generated_id : a.id);
        stmt.bind(3, a.delivery_id);
        stmt.bind(4, subscription_id);
        stmt.bind(5, event_id);
        stmt.bind(6, std::int64_t{a.number});
        stmt.bind(7, a.started_at);
        stmt.bind(8, a.duration_ms);
        stmt.bind(9, std::int64_t{a.status});
        stmt.bind(10, a.error);
        stmt.bind_blob(11, a.response_body);
        stmt.run();
        ++unlisted_attempts_;
    };
    co_await run_on_worker<void>(true, std::move(work));
}

inline asio::awaitable<std::vector<pending_delivery>> sqlite_store::load_pending() {
    auto work = [](detail::sqlite_connection& connection) {
        auto stmt =
            connection.prepare("SELECT d.id, d.subscription_id, d.event_type, d.attempts, "
                               "d.next_attempt_at, " REVDESK_SQLITE_EVENT_COLUMNS
                               " FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
                               "WHERE d.state = 'pending' ORDER BY d.next_attempt_at, d.rowid");
        std::vector<pending_delivery> result;
        while (stmt.step()) {
            pending_delivery& p = result.emplace_back();
            p.source = detail::read_event(stmt, 5);
            p.message.id = stmt.text(0);
            p.message.event_id = p.source.id;
            p.message.subscription_id = stmt.text(1);
            p.message.type = detail::parse_stored_type(stmt.text(2), "deliveries", p.message.id);
            p.message.state = delivery_state::pending;
            p.message.attempts = static_cast<std::uint32_t>(stmt.int64(3));
            p.message.next_attempt_at = stmt.int64(4);
        }
        return result;
    };
    co_return co_await run_on_worker<std::vector<pending_delivery>>(false, std::move(work));
}

inline asio::awaitable<std::vector<attempt>>
sqlite_store::list_attempts(std::string_view subscription_id, std::size_t limit) {
    auto work = [subscription_id = std::string(subscription_id),
                 limit = detail::row_limit(limit)](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(detail::list_attempts_sql);
        stmt.bind(1, subscription_id);
        stmt.bind(2, limit);
        std::vector<attempt> result;
        while (stmt.step()) {
            result.push_back(detail::read_attempt(stmt));
        }
        return result;
    };
    co_return co_await run_on_worker<std::vector<attempt>>(false, std::move(work));
}

inline asio::awaitable<attempt_page>
sqlite_store::list_attempts_page(std::string_view subscription_id, std::size_t limit,
                                 std::optional<std::string> const& cursor) {
    if (limit == 0) {
        throw std::invalid_argument("attempt page limit must be at least 1");
    }
    std::optional<detail::attempt_position> after;
    if (cursor) {
        after = detail::decode_attempt_cursor(*cursor);
    }

    auto page_size = static_cast<std::int64_t>(
        std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max() - 1));
    auto work = [subscription_id = std::string(subscription_id), page_size,
                 after](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(after ? detail::list_attempts_after_sql
                                             : detail::list_attempts_sql);
        stmt.bind(1, subscription_id);
        // One row more than the page shows whether another page follows.
        stmt.bind(2, page_size + 1);
        if (after) {
            stmt.bind(3, after->started_at);
            stmt.bind(4, after->sequence);
        }

        attempt_page page;
        detail::attempt_position last;
        while (stmt.step()) {
            if (static_cast<std::int64_t>(page.items.size()) == page_size) {
                page.next_cursor = detail::encode_attempt_cursor(last);
                break;
            }
            page.items.push_back(detail::read_attempt(stmt));
            last = {page.items.back().started_at, stmt.int64(10)};
        }
        return page;
    };
    co_return co_await run_on_worker<attempt_page>(false, std::move(work));
}

inline asio::awaitable<void> sqlite_store::insert_key(api_key const& key) {
    auto work = [key = key](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare(
            "INSERT INTO api_keys (id, workspace, digest, hint, created_at, revoked) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
        stmt.bind(1, key.id);
        stmt.bind(2, key.workspace);
        stmt.bind(3, key.digest);
        stmt.bind(4, key.hint);
        stmt.bind(5, key.created_at);
        stmt.bind(6, std::int64_t{key.revoked});
        stmt.run();
    };
    co_await run_on_worker<void>(true, std::move(work));
}

inline asio::awaitable<std::vector<api_key>> sqlite_store::load_keys() {
    auto work = [](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare("SELECT id, workspace, digest, hint, created_at, revoked "
                                       "FROM api_keys ORDER BY created_at, id");
        std::vector<api_key> result;
        while (stmt.step()) {
            api_key& key = result.emplace_back();
            key.id = stmt.text(0);
            key.workspace = stmt.text(1);
            key.digest = stmt.text(2);
            key.hint = stmt.text(3);
            key.created_at = stmt.int64(4);
            key.revoked = stmt.int64(5) != 0;
        }
        return result;
    };
    co_return co_await run_on_worker<std::vector<api_key>>(false, std::move(work));
}

inline asio::awaitable<bool> sqlite_store::revoke_key(std::string_view id) {
    auto work = [id = std::string(id)](detail::sqlite_connection& connection) {
        auto stmt = connection.prepare("UPDATE api_keys SET revoked = 1 WHERE id = ?1");
        stmt.bind(1, id);
        stmt.run();
        return connection.changes() != 0;
    };
    co_return co_await run_on_worker<bool>(true, std::move(work));
}

inline asio::awaitable<std::size_t> sqlite_store::purge_before(unix_ms cutoff) {
    auto work = [cutoff](detail::sqlite_connection& connection) {
        // Children go first because of the foreign keys. Every statement selects the same events,
        // because the transaction sees no other writer in between.
        auto attempts = connection.prepare(
            "DELETE FROM attempts WHERE delivery_id IN ("
            "SELECT d.id FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
            "WHERE e.created_at < ?1 AND NOT EXISTS (SELECT 1 FROM deliveries AS p "
            "WHERE p.event_id = e.id AND p.state = 'pending'))");
        attempts.bind(1, cutoff);
        attempts.run();

        auto deliveries = connection.prepare(
            "DELETE FROM deliveries WHERE event_id IN ("
            "SELECT e.id FROM events AS e WHERE e.created_at < ?1 AND NOT EXISTS ("
            "SELECT 1 FROM deliveries AS p WHERE p.event_id = e.id AND p.state = 'pending'))");
        deliveries.bind(1, cutoff);
        deliveries.run();

        // The events chosen above have no deliveries left, so the pending check passes for them
        // and for events that never had a delivery.
        auto events = connection.prepare(
            "DELETE FROM events WHERE created_at < ?1 AND NOT EXISTS ("
            "SELECT 1 FROM deliveries AS p WHERE p.event_id = events.id AND p.state = 'pending')");
        events.bind(1, cutoff);
        events.run();
        return static_cast<std::size_t>(connection.changes());
    };
    co_return co_await run_on_worker<std::size_t>(true, std::move(work));
}

inline asio::awaitable<bool> sqlite_store::ping() {
    auto work = [](detail::sqlite_connection& connection) {
        return connection.query_int64("SELECT 1") == 1;
    };
    try {
        co_return co_await run_on_worker<bool>(false, std::move(work));
    } catch (std::runtime_error const&) {
        // sqlite_error and the error of a closed store both derive from std::runtime_error.
        co_return false;
    }
}

} // namespace revdesk

#undef REVDESK_SQLITE_EVENT_COLUMNS
#undef REVDESK_SQLITE_DELIVERY_COLUMNS
#undef REVDESK_SQLITE_ATTEMPT_COLUMNS
#undef REVDESK_SQLITE_LIST_ATTEMPTS
