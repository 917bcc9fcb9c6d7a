#include <revdesk/store/sqlite_store.hpp>

#define BOOST_TEST_MODULE sqlite_store
#include <boost/test/unit_test.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// A new directory under the system's temporary directory, removed with its contents at the end.
class temporary_directory {
public:
    temporary_directory() {
        std::string pattern = (fs::temp_directory_path() / "revdesk-sqlite-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
        }
        path_ = pattern;
    }
    temporary_directory(temporary_directory const&) = delete;
    temporary_directory& operator=(temporary_directory const&) = delete;
    ~temporary_directory() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }

    fs::path const& path() const noexcept { return path_; }

private:
    fs::path path_;
};

/// A second connection to a database file, for inspecting it and for holding its write lock.
class raw_database {
public:
    explicit raw_database(std::string const& path) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            nullptr) != SQLITE_OK) {
            std::string message = sqlite3_errmsg(db_);
            sqlite3_close_v2(db_);
            throw std::runtime_error("cannot open " + path + ": " + message);
        }
    }
    raw_database(raw_database const&) = delete;
    raw_database& operator=(raw_database const&) = delete;
    ~raw_database() { sqlite3_close_v2(db_); }

    void execute(std::string const& sql) {
        char* error = nullptr;
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
            std::string message = error != nullptr ? error : "unknown error";
            sqlite3_free(error);
            throw std::runtime_error(sql + ": " + message);
        }
    }

    /// Returns the first column of the first row of `sql` as text.
    std::string query(std::string const& sql) { return query_column(sql, 0); }

    /// Returns column `column` of every row of `sql` as text, one row per line.
    std::string query_column(std::string const& sql, int column) {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
            throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
        }
        std::string result;
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            if (!result.empty()) {
                result += '\n';
            }
            if (sqlite3_column_text(stmt, column) != nullptr) {
                result += reinterpret_cast<char const*>(sqlite3_column_text(stmt, column));
            }
        }
        sqlite3_finalize(stmt);
        return result;
    }

private:
    sqlite3* db_ = nullptr;
};

std::string message_of_construction(std::string const& path) {
    try {
        revdesk::sqlite_store store(path);
    } catch (std::runtime_error const& e) {
        return e.what();
    }
    return "";
}

/// The schema of version 1, as released. Tests write it to build files that an older build
/// would have left behind.
constexpr char const* version_1_schema = R"sql(
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
CREATE INDEX deliveries_pending ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id);
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
CREATE INDEX attempts_by_subscription ON attempts (subscription_id, started_at);
)sql";

/// Releases `blocker`'s write transaction after `delay`, on the runner's io_context.
asio::awaitable<void> commit_after(raw_database& blocker, std::chrono::milliseconds delay) {
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
    blocker.execute("COMMIT");
}

/// Counters of the tracked copies of a watched_executor.
struct work_watch {
    std::thread::id owner = std::this_thread::get_id();
    std::atomic<int> tracked_copies = 0;
    std::atomic<int> released_elsewhere = 0;
};

/// An io_context's executor whose tracked copies (those that count as outstanding work) report to
/// a work_watch when they end on a thread other than the watch's.
class watched_executor {
public:
    watched_executor(asio::io_context& io, std::shared_ptr<work_watch> watch)
        : watched_executor(io, asio::require(io.get_executor(), asio::execution::blocking.never),
                           std::move(watch), false) {}

    watched_executor(watched_executor const& other) noexcept
        : io_(other.io_)
        , inner_(other.inner_)
        , watch_(other.watch_)
        , tracked_(other.tracked_) {
        if (tracked_) {
            ++watch_->tracked_copies;
        }
    }
    watched_executor& operator=(watched_executor const&) = delete;

    ~watched_executor() {
        if (tracked_ && std::this_thread::get_id() != watch_->owner) {
            ++watch_->released_elsewhere;
        }
    }

    asio::execution_context& query(asio::execution::context_t) const noexcept { return *io_; }
    static constexpr asio::execution::blocking_t query(asio::execution::blocking_t) noexcept {
        return asio::execution::blocking.never;
    }
    // Reports whether this copy counts as outstanding work. Without this query, asio treats the
    // executor as untracked and never calls prefer(untracked).
    asio::execution::outstanding_work_t query(asio::execution::outstanding_work_t) const noexcept {
        if (tracked_) {
            return asio::execution::outstanding_work.tracked;
        }
        return asio::execution::outstanding_work.untracked;
    }
    watched_executor require(asio::execution::blocking_t::never_t) const { return *this; }
    watched_executor prefer(asio::execution::outstanding_work_t::tracked_t) const {
        return {*io_, asio::prefer(inner_, asio::execution::outstanding_work.tracked), watch_, true};
    }
    watched_executor prefer(asio::execution::outstanding_work_t::untracked_t) const {
        return {*io_, asio::prefer(inner_, asio::execution::outstanding_work.untracked), watch_,
                false};
    }

    template <typename Function>
    void execute(Function&& f) const {
        inner_.execute(std::forward<Function>(f));
    }

    bool operator==(watched_executor const& other) const noexcept {
        return io_ == other.io_ && tracked_ == other.tracked_;
    }

private:
    watched_executor(asio::io_context& io, asio::any_io_executor inner,
                     std::shared_ptr<work_watch> watch, bool tracked)
        : io_(&io)
        , inner_(std::move(inner))
        , watch_(std::move(watch))
        , tracked_(tracked) {
        if (tracked_) {
            ++watch_->tracked_copies;
        }
    }

    asio::io_context* io_;
    asio::any_io_executor inner_;
    std::shared_ptr<work_watch> watch_;
    bool tracked_;
};

} // namespace

// Options that add attempts to attempts_by_subscription `n` at a time.
revdesk::sqlite_options listing_every(std::size_t n) {
    revdesk::sqlite_options options;
    options.max_unlisted_attempts = n;
    return options;
}

struct store_fixture {
    temporary_directory directory;
    // Five at a time, so that the shared tests list attempts from both of the indexes that
    // listings read: the walk through pages has eight attempts of one subscription, among nine.
    revdesk::sqlite_store store{(directory.path() / "store.db").string(), listing_every(5)};

    revdesk::store& db() { return store; }
};

#include "store_suite.hpp"

namespace rt = revdesk::test;

struct sqlite_fixture : rt::coroutine_runner {
    temporary_directory directory;
    std::string path = (directory.path() / "store.db").string();
};

BOOST_FIXTURE_TEST_SUITE(sqlite, sqlite_fixture)

BOOST_AUTO_TEST_CASE(open_creates_private_wal_database) {
    revdesk::sqlite_store(path, {}).close();

    struct stat info {};
    BOOST_TEST_REQUIRE(::stat(path.c_str(), &info) == 0);
    BOOST_TEST((info.st_mode & 0777) == 0600u);
    raw_database raw(path);
    BOOST_TEST(raw.query("PRAGMA journal_mode") == "wal");
    BOOST_TEST(raw.query("PRAGMA user_version") ==
               std::to_string(revdesk::sqlite_store::schema_version()));
}

BOOST_AUTO_TEST_CASE(open_existing_file_keeps_its_mode) {
    { std::ofstream(path).flush(); }
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);

    revdesk::sqlite_store(path, {}).close();

    struct stat info {};
    BOOST_TEST_REQUIRE(::stat(path.c_str(), &info) == 0);
    BOOST_TEST((info.st_mode & 0777) == 0640u);
}

BOOST_AUTO_TEST_CASE(reopen_keeps_every_record) {
    auto s = rt::make_subscription("whk_1");
    s.workflow_id = revdesk::scope_id{"12", true};
    s.previous_secret = "whsec_b2xkIHNlY3JldA==";
    s.previous_secret_expires_at = 1'760'086'400'000;
    s.updated_at = 1'760'000'100'000;
    auto e = rt::make_event("evt_1", "{\"x\":\"\xE2\x80\xA8\xF0\x9F\x98\x80\"}");
    e.campaign_id = revdesk::scope_id{"c", false};
    e.idempotency_key = "order-1001";
    e.response = R"({"id":"evt_1","deliveries":1})";
    auto key = rt::make_key("key_1");
    auto d = rt::make_delivery("msg_1", e.id, s.id, 5000);
    auto updated = d;
    updated.attempts = 1;
    updated.next_attempt_at = 9000;
    revdesk::attempt a{.delivery_id = d.id,
                       .number = 1,
                       .started_at = 5000,
                       .duration_ms = 250,
                       .status = 500,
                       .error = "",
                       .response_body = "oops",
                       .id = "",
                       .subscription_id = s.id,
                       .event_id = e.id};
    {
        revdesk::sqlite_store store(path);
        run(store.insert_subscription(s));
        run(store.insert_event(e, {d}));
        run(store.record_attempt(a, updated));
        run(store.insert_key(key));
        run(store.revoke_key(key.id));
        auto before_reopen = run(store.list_attempts(s.id, 10));
        BOOST_TEST_REQUIRE(before_reopen.size() == 1u);
        a.id = before_reopen[0].id;
    }

    revdesk::sqlite_store reopened(path);
    auto subscriptions = run(reopened.load_subscriptions());
    BOOST_TEST_REQUIRE(subscriptions.size() == 1u);
    rt::check_same(s, subscriptions[0]);
    auto pending = run(reopened.load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    rt::check_same(updated, pending[0].message);
    rt::check_same(e, pending[0].source);
    auto attempts = run(reopened.list_attempts(s.id, 10));
    BOOST_TEST_REQUIRE(attempts.size() == 1u);
    rt::check_same(a, attempts[0]);
    auto found = run(reopened.find_event_by_idempotency_key("ws_a", "order-1001", 0));
    BOOST_TEST_REQUIRE(found.has_value());
    rt::check_same(e, *found);
    auto keys = run(reopened.load_keys());
    BOOST_TEST_REQUIRE(keys.size() == 1u);
    BOOST_TEST(keys[0].digest == key.digest);
    BOOST_TEST(keys[0].revoked);
}

BOOST_AUTO_TEST_CASE(open_runs_migrations_once) {
    std::string schema_after_first_open;
    {
        revdesk::sqlite_store store(path);
        run(store.insert_subscription(rt::make_subscription("whk_1")));
        store.close();
        raw_database raw(path);
        // schema_version counts every schema change, so a migration that ran again would show.
        schema_after_first_open = raw.query("PRAGMA schema_version");
    }

    for (int reopening = 0; reopening < 2; ++reopening) {
        BOOST_TEST_CONTEXT("reopening " << reopening) {
            revdesk::sqlite_store store(path);
            BOOST_TEST(run(store.load_subscriptions()).size() == 1u);
            store.close();
            raw_database raw(path);
            BOOST_TEST(raw.query("PRAGMA schema_version") == schema_after_first_open);
            BOOST_TEST(raw.query("PRAGMA user_version") ==
                       std::to_string(revdesk::sqlite_store::schema_version()));
        }
    }
}

BOOST_AUTO_TEST_CASE(open_version_1_file_migrates_records) {
    // The schema and rows of a file that a build with schema version 1 wrote.
    {
        raw_database old(path);
        old.execute(version_1_schema);
        old.execute(R"sql(
INSERT INTO subscriptions VALUES ('whk_1', 'ws_a', 'https://receiver.example/hook',
    'call_completed', '42', 1, NULL, 0, 'whsec_b2xk', 1, 1000);
INSERT INTO events VALUES ('evt_1', 'ws_a', 'call_completed', CAST('{"a":1}' AS BLOB), NULL, 0,
    'spring', 0, 1500);
INSERT INTO events VALUES ('evt_2', 'ws_a', 'call_completed', CAST('{"b":2}' AS BLOB), NULL, 0,
    NULL, 0, 1600);
INSERT INTO deliveries VALUES ('msg_1', 'evt_1', 'whk_1', 'call_completed', 'pending', 1, 9000);
INSERT INTO deliveries VALUES ('msg_2', 'evt_2', 'whk_1', 'call_completed', 'delivered', 1, 3000);
INSERT INTO attempts VALUES ('msg_1', 'whk_1', 1, 2000, 30, 503, '', CAST('busy' AS BLOB));
INSERT INTO attempts VALUES ('msg_2', 'whk_1', 1, 3000, 12, 204, '', CAST('' AS BLOB));
PRAGMA user_version = 1;
)sql");
    }

    revdesk::sqlite_store store(path);

    auto subscriptions = run(store.load_subscriptions());
    BOOST_TEST_REQUIRE(subscriptions.size() == 1u);
    auto expected_subscription = rt::make_subscription("whk_1");
    expected_subscription.webhook_url = "https://receiver.example/hook";
    expected_subscription.workflow_id = revdesk::scope_id{"42", true};
    expected_subscription.secret = "whsec_b2xk";
    expected_subscription.created_at = 1000;
    expected_subscription.updated_at = 1000;
    rt::check_same(expected_subscription, subscriptions[0]);

    auto pending = run(store.load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    auto expected_event = rt::make_event("evt_1", R"({"a":1})");
    expected_event.campaign_id = revdesk::scope_id{"spring", false};
    expected_event.created_at = 1500;
    rt::check_same(expected_event, pending[0].source);
    BOOST_TEST(pending[0].message.id == "msg_1");
    BOOST_TEST(pending[0].message.attempts == 1u);

    // Existing attempts get the ids that the store generates from their row order.
    auto attempts = run(store.list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(attempts.size() == 2u);
    BOOST_TEST(attempts[0].id == "att_0000000000000002");
    BOOST_TEST(attempts[0].event_id == "evt_2");
    BOOST_TEST(attempts[0].subscription_id == "whk_1");
    BOOST_TEST(attempts[0].status == 204);
    BOOST_TEST(attempts[1].id == "att_0000000000000001");
    BOOST_TEST(attempts[1].event_id == "evt_1");
    BOOST_TEST(attempts[1].response_body == "busy");

    auto delivered = run(store.list_deliveries("evt_2"));
    BOOST_TEST_REQUIRE(delivered.size() == 1u);
    BOOST_TEST((delivered[0].state == revdesk::delivery_state::delivered));

    // The new tables and columns work on the migrated file.
    auto retried = pending[0].message;
    retried.attempts = 2;
    run(store.record_attempt(rt::make_attempt("msg_1", 2, 503, 4000), retried));
    BOOST_TEST(run(store.list_attempts("whk_1", 1))[0].id == "att_0000000000000003");
    run(store.insert_key(rt::make_key("key_1")));
    BOOST_TEST(run(store.load_keys()).size() == 1u);
    auto keyed = rt::make_event("evt_3");
    keyed.idempotency_key = "order-1";
    run(store.insert_event(keyed, {}));
    BOOST_TEST(run(store.find_event_by_idempotency_key("ws_a", "order-1", 0)).has_value());
    BOOST_TEST(run(store.purge_before(2000)) == 1u);
    BOOST_TEST(!run(store.find_event("ws_a", "evt_2")).has_value());
    store.close();

    raw_database raw(path);
    BOOST_TEST(raw.query("PRAGMA user_version") ==
               std::to_string(revdesk::sqlite_store::schema_version()));
    BOOST_TEST(raw.query("PRAGMA integrity_check") == "ok");
    BOOST_TEST(raw.query("PRAGMA foreign_key_check") == "");
}

BOOST_AUTO_TEST_CASE(open_version_2_file_migrates_records) {
    // A file at schema version 2, built with the released steps 1 and 2, with deliveries of one
    // subscription in each state and pending deliveries of another.
    {
        raw_database old(path);
        old.execute(revdesk::detail::sqlite_migrations[0]);
        old.execute(revdesk::detail::sqlite_migrations[1]);
        old.execute(R"sql(
INSERT INTO subscriptions (id, workspace, webhook_url, event_type, workflow_id,
    workflow_id_is_number, campaign_id, campaign_id_is_number, secret, enabled, created_at,
    updated_at)
VALUES ('whk_1', 'ws_a', 'https://receiver.example/hook', 'call_completed', NULL, 0, NULL, 0,
        'whsec_b2xk', 1, 1000, 1000),
       ('whk_2', 'ws_a', 'https://receiver.example/hook', 'call_completed', NULL, 0, NULL, 0,
        'whsec_b2xk', 1, 1000, 1000);
INSERT INTO events (id, workspace, event_type, payload, workflow_id, workflow_id_is_number,
    campaign_id, campaign_id_is_number, created_at)
VALUES ('evt_1', 'ws_a', 'call_completed', CAST('{"a":1}' AS BLOB), NULL, 0, NULL, 0, 1500);
INSERT INTO deliveries VALUES
    ('msg_1', 'evt_1', 'whk_1', 'call_completed', 'pending', 1, 9000),
    ('msg_2', 'evt_1', 'whk_1', 'call_completed', 'delivered', 1, 3000),
    ('msg_3', 'evt_1', 'whk_1', 'call_completed', 'failed', 5, 4000),
    ('msg_4', 'evt_1', 'whk_2', 'call_completed', 'pending', 0, 2000),
    ('msg_5', 'evt_1', 'whk_2', 'call_completed', 'pending', 0, 2500);
INSERT INTO attempts (sequence, id, delivery_id, subscription_id, event_id, number, started_at,
    duration_ms, status, error, response_body)
VALUES (1, 'att_0000000000000001', 'msg_1', 'whk_1', 'evt_1', 1, 2000, 30, 503, '',
        CAST('busy' AS BLOB)),
       (2, 'att_0000000000000002', 'msg_2', 'whk_1', 'evt_1', 1, 3000, 12, 204, '',
        CAST('' AS BLOB));
PRAGMA user_version = 2;
)sql");
    }

    revdesk::sqlite_store store(path);

    auto pending = run(store.load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 3u);
    BOOST_TEST(pending[0].message.id == "msg_4");
    BOOST_TEST(pending[1].message.id == "msg_5");
    BOOST_TEST(pending[2].message.id == "msg_1");
    BOOST_TEST(pending[2].source.payload == R"({"a":1})");

    auto deliveries = run(store.list_deliveries("evt_1"));
    BOOST_TEST_REQUIRE(deliveries.size() == 5u);
    BOOST_TEST((deliveries[2].state == revdesk::delivery_state::failed));
    BOOST_TEST(deliveries[2].attempts == 5u);

    auto attempts = run(store.list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(attempts.size() == 2u);
    BOOST_TEST(attempts[0].id == "att_0000000000000002");
    BOOST_TEST(attempts[1].id == "att_0000000000000001");
    BOOST_TEST(attempts[1].response_body == "busy");

    // New attempts continue the sequence of the file.
    auto delivered = pending[2].message;
    delivered.state = revdesk::delivery_state::delivered;
    delivered.attempts = 2;
    run(store.record_attempt(rt::make_attempt("msg_1", 2, 204, 5000), delivered));
    BOOST_TEST(run(store.list_attempts("whk_1", 1))[0].id == "att_0000000000000003");

    // Erasing a subscription cancels its pending deliveries through the new index and leaves
    // the other subscription's finished ones alone.
    BOOST_TEST(run(store.erase_subscription("ws_a", "whk_2")));
    deliveries = run(store.list_deliveries("evt_1"));
    BOOST_TEST_REQUIRE(deliveries.size() == 5u);
    BOOST_TEST((deliveries[0].state == revdesk::delivery_state::delivered));
    BOOST_TEST((deliveries[1].state == revdesk::delivery_state::delivered));
    BOOST_TEST((deliveries[2].state == revdesk::delivery_state::failed));
    BOOST_TEST((deliveries[3].state == revdesk::delivery_state::cancelled));
    BOOST_TEST((deliveries[4].state == revdesk::delivery_state::cancelled));
    BOOST_TEST(run(store.load_pending()).empty());
    store.close();

    raw_database raw(path);
    BOOST_TEST(raw.query("PRAGMA user_version") ==
               std::to_string(revdesk::sqlite_store::schema_version()));
    // The rebuilt deliveries table kept each row's rowid, which orders ties in load_pending.
    BOOST_TEST(raw.query_column("SELECT id || ' ' || rowid FROM deliveries ORDER BY rowid", 0) ==
               "msg_1 1\nmsg_2 2\nmsg_3 3\nmsg_4 4\nmsg_5 5");
    BOOST_TEST(raw.query("SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema "
                         "WHERE type = 'index' AND tbl_name = 'deliveries' AND sql IS NOT NULL "
                         "ORDER BY name)") ==
               "deliveries_by_event deliveries_pending deliveries_pending_by_subscription");
    BOOST_TEST(raw.query("PRAGMA integrity_check") == "ok");
    BOOST_TEST(raw.query("PRAGMA foreign_key_check") == "");
}

BOOST_AUTO_TEST_CASE(cancel_pending_uses_partial_index) {
    { revdesk::sqlite_store store(path); }
    raw_database raw(path);
    // The fourth column of EXPLAIN QUERY PLAN describes the step.
    std::string plan = raw.query_column(
        "EXPLAIN QUERY PLAN UPDATE deliveries SET state = 'cancelled' "
        "WHERE subscription_id = 'whk_1' AND state = 'pending'",
        3);
    BOOST_TEST(plan.find("deliveries_pending_by_subscription") != std::string::npos, plan);
}

BOOST_AUTO_TEST_CASE(delivery_writes_build_no_temporary_btree) {
    { revdesk::sqlite_store store(path); }
    raw_database raw(path);
    // A CHECK with `IN` and four values makes SQLite build a temporary b-tree (the OpenEphemeral
    // opcode) for every row that a statement writes, as does RETURNING. Delivery rows are written
    // one at a time, once per message and once per attempt. The second column of EXPLAIN names
    // each opcode.
    for (std::string const sql :
         {"INSERT INTO deliveries (id, event_id, subscription_id, event_type, state, attempts, "
          "next_attempt_at) VALUES ('msg_1', 'evt_1', 'whk_1', 'call_completed', 'pending', 0, 0)",
          "UPDATE deliveries SET state = 'delivered', attempts = 1, next_attempt_at = 0 "
          "WHERE rowid = 1"}) {
        BOOST_TEST_CONTEXT(sql) {
            auto program = raw.query_column("EXPLAIN " + sql, 1);
            BOOST_TEST_REQUIRE(program.find("Insert") != std::string::npos);
            BOOST_TEST(program.find("OpenEphemeral") == std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_CASE(deliveries_reject_unknown_state) {
    { revdesk::sqlite_store store(path); }
    raw_database raw(path);
    raw.execute("INSERT INTO events (id, workspace, event_type, payload, workflow_id_is_number, "
                "campaign_id_is_number, created_at) VALUES ('evt_1', 'ws_a', 'call_completed', "
                "CAST('{}' AS BLOB), 0, 0, 1)");
    auto insert = [&](std::string const& state) {
        raw.execute("INSERT INTO deliveries (id, event_id, subscription_id, event_type, state, "
                    "attempts, next_attempt_at) VALUES ('msg_" +
                    state + "', 'evt_1', 'whk_1', 'call_completed', '" + state + "', 0, 0)");
    };
    for (auto const* state : {"pending", "delivered", "failed", "cancelled"}) {
        BOOST_CHECK_NO_THROW(insert(state));
    }
    BOOST_CHECK_THROW(insert("sent"), std::runtime_error);
    BOOST_CHECK_THROW(insert("Pending"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(record_attempt_never_reuses_purged_sequence) {
    revdesk::sqlite_store store(path);
    auto finish = [&](std::string const& id, std::string const& event_id) {
        auto d = rt::make_delivery(id, event_id, "whk_1");
        run(store.insert_event(rt::make_event(event_id), {d}));
        d.state = revdesk::delivery_state::delivered;
        d.attempts = 1;
        run(store.record_attempt(rt::make_attempt(id, 1, 204, 1000), d));
    };
    finish("msg_1", "evt_1");
    finish("msg_2", "evt_2");
    BOOST_TEST(run(store.list_attempts("whk_1", 1))[0].id == "att_0000000000000002");

    // Purging the newest attempt leaves the largest sequence in sqlite_sequence only.
    BOOST_TEST_REQUIRE(run(store.purge_before(std::numeric_limits<revdesk::unix_ms>::max())) ==
                       2u);
    BOOST_TEST(run(store.list_attempts("whk_1", 10)).empty());
    finish("msg_3", "evt_3");
    BOOST_TEST(run(store.list_attempts("whk_1", 1))[0].id == "att_0000000000000003");
}

BOOST_AUTO_TEST_CASE(record_attempt_sequences_follow_other_connections) {
    // A store counts attempt sequences in memory within one write transaction only, because
    // another connection to the file may insert attempts between two transactions.
    revdesk::sqlite_store first(path);
    revdesk::sqlite_store second(path);
    auto delivered = [](std::string const& id, std::string const& event_id) {
        auto d = rt::make_delivery(id, event_id, "whk_1");
        d.state = revdesk::delivery_state::delivered;
        d.attempts = 1;
        return d;
    };
    auto record = [](revdesk::sqlite_store& store, revdesk::delivery d) -> asio::awaitable<void> {
        co_await store.record_attempt(rt::make_attempt(d.id, 1, 204, 1000), d);
    };
    for (int i = 1; i <= 6; ++i) {
        auto id = std::to_string(i);
        run(first.insert_event(rt::make_event("evt_" + id),
                               {rt::make_delivery("msg_" + id, "evt_" + id, "whk_1")}));
    }
    run(record(first, delivered("msg_1", "evt_1")));
    run(record(second, delivered("msg_2", "evt_2")));
    run(record(first, delivered("msg_3", "evt_3")));

    // Three attempts queued behind another connection's lock: the worker may take the first one
    // alone, and then the other two go into one transaction.
    raw_database blocker(path);
    blocker.execute("BEGIN IMMEDIATE");
    std::vector<asio::awaitable<void>> ops;
    for (int i = 4; i <= 6; ++i) {
        auto id = std::to_string(i);
        ops.push_back(record(first, delivered("msg_" + id, "evt_" + id)));
    }
    ops.push_back(commit_after(blocker, 300ms));
    auto commits_before = first.commit_count();
    for (auto const& error : run_concurrently(std::move(ops))) {
        BOOST_TEST(rt::message_of(error) == "");
    }
    BOOST_TEST(first.commit_count() - commits_before <= 2u);

    auto attempts = run(second.list_attempts("whk_1", 10));
    BOOST_REQUIRE_EQUAL(attempts.size(), 6u);
    for (std::size_t i = 0; i < attempts.size(); ++i) {
        // Newest first: att_6 down to att_1, one per delivery.
        BOOST_TEST(attempts[i].id == "att_000000000000000" + std::to_string(6 - i));
        BOOST_TEST(attempts[i].delivery_id == "msg_" + std::to_string(6 - i));
    }
}

BOOST_AUTO_TEST_CASE(open_bad_file_throws_clear_error) {
    auto missing_directory = (directory.path() / "missing" / "store.db").string();
    auto not_a_database = (directory.path() / "notes.txt").string();
    std::ofstream(not_a_database) << "These are notes, not an SQLite database. It is long enough "
                                     "to fill the 100-byte header that SQLite checks first.\n";
    auto newer = (directory.path() / "newer.db").string();
    raw_database(newer).execute("PRAGMA user_version = 99");

    struct row {
        std::string name;
        std::string path;
        std::string expected;
    };
    for (auto const& [name, file, expected] :
         {row{"missing directory", missing_directory, "unable to open database file"},
          row{"not a database", not_a_database, "file is not a database"},
          row{"newer schema", newer, "schema version 99"}}) {
        BOOST_TEST_CONTEXT(name) {
            auto message = message_of_construction(file);
            BOOST_TEST(message.find(file) != std::string::npos, message);
            BOOST_TEST(message.find(expected) != std::string::npos, message);
        }
    }
}

BOOST_AUTO_TEST_CASE(open_memory_database_works) {
    revdesk::sqlite_store store(":memory:");
    run(store.insert_subscription(rt::make_subscription("whk_1")));

    BOOST_TEST(run(store.load_subscriptions()).size() == 1u);
    BOOST_TEST(!fs::exists(":memory:"));
}

BOOST_AUTO_TEST_CASE(open_zero_batch_size_throws) {
    revdesk::sqlite_options options;
    options.max_batch_writes = 0;
    BOOST_CHECK_THROW((revdesk::sqlite_store{path, options}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(open_zero_unlisted_attempts_throws) {
    revdesk::sqlite_options options;
    options.max_unlisted_attempts = 0;
    BOOST_CHECK_THROW((revdesk::sqlite_store{path, options}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(record_attempt_lists_attempts_in_batches) {
    auto unlisted = [&] {
        return raw_database(path).query("SELECT count(*) FROM attempts WHERE listed = 0");
    };
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    std::uint32_t number = 0;
    {
        revdesk::sqlite_store store(path, listing_every(3));
        run(store.insert_event(rt::make_event("evt_1"), {d}));
        for (std::string expected : {"1", "2", "0", "1"}) {
            run(rt::record_simple_attempt(store, d, ++number, 1000 * number));
            BOOST_TEST(unlisted() == expected);
        }
    }

    // A reopened store counts the attempts that still wait.
    revdesk::sqlite_store store(path, listing_every(3));
    run(rt::record_simple_attempt(store, d, ++number, 1000 * number));
    BOOST_TEST(unlisted() == "2");
    run(rt::record_simple_attempt(store, d, ++number, 1000 * number));
    BOOST_TEST(unlisted() == "0");
    BOOST_TEST(raw_database(path).query("SELECT count(*) FROM attempts WHERE listed = 1") == "6");
}

BOOST_AUTO_TEST_CASE(list_attempts_reads_both_partial_indexes) {
    { revdesk::sqlite_store store(path); }
    raw_database raw(path);
    // The fourth column of EXPLAIN QUERY PLAN describes each step. Without `listed = 1` and
    // `listed = 0` in the conditions, SQLite would scan the whole table for one of the parts.
    for (char const* sql :
         {revdesk::detail::list_attempts_sql, revdesk::detail::list_attempts_after_sql}) {
        BOOST_TEST_CONTEXT(sql) {
            std::string plan = raw.query_column(std::string("EXPLAIN QUERY PLAN ") + sql, 3);
            BOOST_TEST(plan.find("USING INDEX attempts_by_subscription") != std::string::npos,
                       plan);
            BOOST_TEST(plan.find("USING INDEX attempts_unlisted") != std::string::npos, plan);
            BOOST_TEST(plan.find("SCAN attempts") == std::string::npos, plan);
        }
    }
}

BOOST_AUTO_TEST_CASE(failed_listing_keeps_the_attempt_write) {
    // Listing the waiting attempts rides with whichever commit finds enough of them. When it
    // fails, the attempt written in that transaction still commits, and a later commit lists.
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    revdesk::sqlite_store store(path, listing_every(2));
    run(store.insert_event(rt::make_event("evt_1"), {d}));
    raw_database raw(path);
    raw.execute("CREATE TRIGGER refuse_listing BEFORE UPDATE OF listed ON attempts "
                "BEGIN SELECT RAISE(ABORT, 'listing refused'); END");
    run(rt::record_simple_attempt(store, d, 1, 1000));
    run(rt::record_simple_attempt(store, d, 2, 2000));
    BOOST_TEST(raw.query("SELECT count(*) FROM attempts WHERE listed = 0") == "2");
    BOOST_TEST(run(store.list_attempts("whk_1", 10)).size() == 2u);

    raw.execute("DROP TRIGGER refuse_listing");
    run(rt::record_simple_attempt(store, d, 3, 3000));
    BOOST_TEST(raw.query("SELECT count(*) FROM attempts WHERE listed = 0") == "0");
    auto listed = run(store.list_attempts("whk_1", 10));
    BOOST_REQUIRE_EQUAL(listed.size(), 3u);
    BOOST_TEST(listed[0].number == 3u);
    BOOST_TEST(listed[2].number == 1u);
}

BOOST_AUTO_TEST_CASE(insert_event_group_commit_batches_writes) {
    constexpr int writers = 200;
    {
        revdesk::sqlite_store store(path);
        auto commits_before = store.commit_count();

        // While another connection holds the write lock, the first batch waits in BEGIN and every
        // other write queues up behind it.
        raw_database blocker(path);
        blocker.execute("BEGIN IMMEDIATE");
        std::vector<asio::awaitable<void>> ops;
        for (int i = 0; i < writers; ++i) {
            auto e = rt::make_event("evt_" + std::to_string(i));
            ops.push_back(rt::insert_event_copy(
                store, e, {rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i)}));
        }
        ops.push_back(commit_after(blocker, 300ms));
        auto errors = run_concurrently(std::move(ops));

        for (std::size_t i = 0; i < errors.size(); ++i) {
            BOOST_TEST_CONTEXT("operation " << i) {
                BOOST_TEST(rt::message_of(errors[i]) == "");
            }
        }
        auto commits = store.commit_count() - commits_before;
        BOOST_TEST_MESSAGE(writers << " writes took " << commits << " commits");
        BOOST_TEST(commits >= 1u);
        BOOST_TEST(commits <= 5u);
    }

    revdesk::sqlite_store reopened(path);
    auto ids = rt::delivery_ids(run(reopened.load_pending()));
    BOOST_TEST_REQUIRE(ids.size() == static_cast<std::size_t>(writers));
    for (int i = 0; i < writers; ++i) {
        BOOST_TEST(ids[static_cast<std::size_t>(i)] == "msg_" + std::to_string(i));
    }
}

BOOST_AUTO_TEST_CASE(insert_event_batch_size_is_bounded) {
    revdesk::sqlite_options options;
    options.max_batch_writes = 8;
    revdesk::sqlite_store store(path, options);
    auto commits_before = store.commit_count();

    raw_database blocker(path);
    blocker.execute("BEGIN IMMEDIATE");
    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < 64; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        ops.push_back(rt::insert_event_copy(store, e, {}));
    }
    ops.push_back(commit_after(blocker, 200ms));
    auto errors = run_concurrently(std::move(ops));

    for (auto const& error : errors) {
        BOOST_TEST(rt::message_of(error) == "");
    }
    // 64 writes in batches of at most 8 need at least 8 commits.
    BOOST_TEST(store.commit_count() - commits_before >= 8u);
}

BOOST_AUTO_TEST_CASE(insert_event_failing_write_keeps_batch) {
    constexpr int writers = 20;
    revdesk::sqlite_store store(path);
    run(store.insert_event(rt::make_event("evt_taken"),
                           {rt::make_delivery("msg_taken", "evt_taken", "whk_1", -1)}));
    auto commits_before = store.commit_count();

    raw_database blocker(path);
    blocker.execute("BEGIN IMMEDIATE");
    std::vector<asio::awaitable<void>> ops;
    auto is_duplicate = [](int i) { return i == 7 || i == 13; };
    for (int i = 0; i < writers; ++i) {
        auto e = rt::make_event(is_duplicate(i) ? "evt_taken" : "evt_" + std::to_string(i));
        auto d = rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i);
        ops.push_back(rt::insert_event_copy(store, e, {d}));
    }
    ops.push_back(commit_after(blocker, 300ms));
    auto errors = run_concurrently(std::move(ops));

    for (int i = 0; i < writers; ++i) {
        BOOST_TEST_CONTEXT("writer " << i) {
            auto const& error = errors[static_cast<std::size_t>(i)];
            if (!is_duplicate(i)) {
                BOOST_TEST(rt::message_of(error) == "");
                continue;
            }
            BOOST_TEST_REQUIRE(static_cast<bool>(error));
            try {
                std::rethrow_exception(error);
            } catch (revdesk::sqlite_error const& e) {
                BOOST_TEST(e.code() == SQLITE_CONSTRAINT_PRIMARYKEY);
            } catch (...) {
                BOOST_ERROR("expected sqlite_error, got: " << rt::message_of(error));
            }
        }
    }
    // The failed writes were rolled back alone, so the batch did not fall back to one
    // transaction per write.
    BOOST_TEST(store.commit_count() - commits_before <= 5u);
    store.close();

    revdesk::sqlite_store reopened(path);
    auto ids = rt::delivery_ids(run(reopened.load_pending()));
    std::vector<std::string> expected{"msg_taken"};
    for (int i = 0; i < writers; ++i) {
        if (!is_duplicate(i)) {
            expected.push_back("msg_" + std::to_string(i));
        }
    }
    BOOST_TEST(ids == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(insert_event_lock_held_past_busy_timeout_throws) {
    revdesk::sqlite_options options;
    options.busy_timeout = 100ms;
    revdesk::sqlite_store store(path, options);
    raw_database blocker(path);
    blocker.execute("BEGIN IMMEDIATE");

    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < 3; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        ops.push_back(rt::insert_event_copy(store, e, {}));
    }
    auto errors = run_concurrently(std::move(ops));
    for (auto const& error : errors) {
        BOOST_TEST_REQUIRE(static_cast<bool>(error));
        try {
            std::rethrow_exception(error);
        } catch (revdesk::sqlite_error const& e) {
            BOOST_TEST((e.code() & 0xff) == SQLITE_BUSY, e.what());
        }
    }

    blocker.execute("COMMIT");
    run(store.insert_event(rt::make_event("evt_later"),
                           {rt::make_delivery("msg_later", "evt_later", "whk_1")}));
    BOOST_TEST(run(store.load_pending()).size() == 1u);
}

BOOST_AUTO_TEST_CASE(close_finishes_queued_writes) {
    constexpr int writers = 50;
    std::vector<std::exception_ptr> errors(writers);
    int finished = 0;
    {
        revdesk::sqlite_store store(path);
        for (int i = 0; i < writers; ++i) {
            auto e = rt::make_event("evt_" + std::to_string(i));
            auto d = rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i);
            asio::co_spawn(context(), rt::insert_event_copy(store, e, {d}),
                           [&, i](std::exception_ptr error) {
                               errors[static_cast<std::size_t>(i)] = error;
                               ++finished;
                           });
        }
        // Starts the coroutines, which queue their writes, without waiting for the results.
        context().poll();
        store.close();
    }
    context().restart();
    context().run_for(rt::default_time_limit);

    BOOST_TEST(finished == writers);
    for (auto const& error : errors) {
        BOOST_TEST(rt::message_of(error) == "");
    }
    revdesk::sqlite_store reopened(path);
    BOOST_TEST(run(reopened.load_pending()).size() == static_cast<std::size_t>(writers));
}

BOOST_AUTO_TEST_CASE(insert_event_same_key_in_one_batch) {
    constexpr int writers = 30;
    revdesk::sqlite_store store(path);
    auto commits_before = store.commit_count();

    // Every write queues behind the lock, so the duplicates are checked inside one batch.
    raw_database blocker(path);
    blocker.execute("BEGIN IMMEDIATE");
    std::vector<asio::awaitable<void>> ops;
    auto is_contended = [](int i) { return i % 3 == 0; };
    for (int i = 0; i < writers; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        e.idempotency_key = is_contended(i) ? "contended" : "order-" + std::to_string(i);
        ops.push_back(rt::insert_event_copy(
            store, e, {rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i)}));
    }
    ops.push_back(commit_after(blocker, 200ms));
    auto errors = run_concurrently(std::move(ops));

    int contended_won = 0;
    for (int i = 0; i < writers; ++i) {
        BOOST_TEST_CONTEXT("writer " << i) {
            auto const& error = errors[static_cast<std::size_t>(i)];
            if (!is_contended(i)) {
                BOOST_TEST(rt::message_of(error) == "");
            } else if (!error) {
                ++contended_won;
            } else {
                BOOST_CHECK_THROW(std::rethrow_exception(error), revdesk::duplicate_key_error);
            }
        }
    }
    // Arrival order decides, and the first writer arrives first.
    BOOST_TEST(contended_won == 1);
    auto winner = run(store.find_event_by_idempotency_key("ws_a", "contended", 0));
    BOOST_TEST_REQUIRE(winner.has_value());
    BOOST_TEST(winner->id == "evt_0");
    BOOST_TEST(store.commit_count() - commits_before <= 5u);
    BOOST_TEST(run(store.load_pending()).size() == static_cast<std::size_t>(writers - 9));
}

BOOST_AUTO_TEST_CASE(record_attempt_ids_not_reused_after_purge) {
    revdesk::sqlite_store store(path);
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(store.insert_event(rt::make_event("evt_1"), {d}));
    auto done = d;
    done.state = revdesk::delivery_state::delivered;
    done.attempts = 1;
    run(store.record_attempt(rt::make_attempt(d.id, 1, 204, 1000), done));
    auto purged_id = run(store.list_attempts("whk_1", 1)).at(0).id;
    BOOST_TEST(run(store.purge_before(1'900'000'000'000)) == 1u);
    store.close();

    // A new attempt after reopening the emptied table gets a new id.
    revdesk::sqlite_store reopened(path);
    auto d2 = rt::make_delivery("msg_2", "evt_2", "whk_1");
    run(reopened.insert_event(rt::make_event("evt_2"), {d2}));
    auto retried = d2;
    retried.attempts = 1;
    run(reopened.record_attempt(rt::make_attempt(d2.id, 1, 503, 2000), retried));
    auto attempts = run(reopened.list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(attempts.size() == 1u);
    BOOST_TEST(attempts[0].id != purged_id);
    BOOST_TEST(attempts[0].id > purged_id);
}

// A tracked copy of the caller's executor that ends on the store's thread can stop the caller's
// io_context between two runs, so that the next run returns at once. revdesk-server runs its
// io_context once per startup step, and exited right after starting because of it.
BOOST_AUTO_TEST_CASE(store_thread_releases_no_tracked_work) {
    asio::io_context io(1);
    auto watch = std::make_shared<work_watch>();
    asio::any_io_executor executor = watched_executor(io, watch);
    int finished = 0;
    {
        revdesk::sqlite_store store(path);
        // Reads complete one at a time, and concurrent writes as the group of one commit.
        auto reads = [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 20; ++i) {
                co_await store.load_subscriptions();
            }
        };
        auto write = [&](int i) -> asio::awaitable<void> {
            co_await store.insert_subscription(rt::make_subscription("whk_" + std::to_string(i)));
        };
        auto count = [&](std::exception_ptr e) {
            BOOST_TEST(rt::message_of(e) == "");
            ++finished;
        };
        asio::co_spawn(executor, reads(), count);
        for (int i = 0; i < 20; ++i) {
            asio::co_spawn(executor, write(i), count);
        }
        io.run_for(rt::default_time_limit);
        BOOST_TEST(run(store.load_subscriptions()).size() == 20u);
    }
    BOOST_TEST(finished == 21);
    BOOST_TEST(watch->tracked_copies > 0);
    BOOST_TEST(watch->released_elsewhere == 0);
}

BOOST_AUTO_TEST_CASE(ping_closed_store_returns_false) {
    revdesk::sqlite_store store(path);
    BOOST_TEST(run(store.ping()));
    store.close();
    BOOST_TEST(!run(store.ping()));
}

BOOST_AUTO_TEST_CASE(operations_after_close_throw) {
    revdesk::sqlite_store store(path);
    store.close();
    store.close();

    try {
        run(store.insert_subscription(rt::make_subscription("whk_1")));
        BOOST_ERROR("insert_subscription after close did not throw");
    } catch (std::runtime_error const& e) {
        BOOST_TEST(std::string(e.what()).find("closed") != std::string::npos, e.what());
    }
    BOOST_CHECK_THROW(run(store.load_subscriptions()), std::runtime_error);
}

BOOST_AUTO_TEST_SUITE_END()
