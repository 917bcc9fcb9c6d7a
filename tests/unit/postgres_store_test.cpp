#include <revdesk/store/postgres_store.hpp>

#define BOOST_TEST_MODULE postgres_store
#include <boost/test/unit_test.hpp>

#include "../support/postgres_cluster.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// Returns the cluster of this test binary, started on first use and removed at exit.
revdesk::test::postgres_cluster& cluster() {
    static revdesk::test::postgres_cluster instance;
    return instance;
}

/// An io_context on its own thread: the executor of the stores under test, as in a server.
class store_thread {
public:
    store_thread()
        : guard_(io_.get_executor())
        , thread_([this] { io_.run(); }) {}
    store_thread(store_thread const&) = delete;
    store_thread& operator=(store_thread const&) = delete;
    ~store_thread() {
        guard_.reset();
        thread_.join();
    }

    asio::any_io_executor executor() { return io_.get_executor(); }

    /// Runs `op` on the thread and waits for it.
    template <typename T>
    T wait(asio::awaitable<T> op) {
        return asio::co_spawn(io_, std::move(op), asio::use_future).get();
    }

    /// Destroys `store` on the thread, as its lifetime rules require.
    void destroy(std::unique_ptr<revdesk::postgres_store> store) {
        std::promise<void> done;
        asio::post(io_, [&] {
            store.reset();
            done.set_value();
        });
        done.get_future().get();
    }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::thread thread_;
};

revdesk::postgres_options options_for(std::string const& dbname, std::string node_id) {
    revdesk::postgres_options options;
    options.conninfo = cluster().conninfo(dbname);
    options.node_id = std::move(node_id);
    options.reconnect_delay = 50ms;
    options.max_reconnect_delay = 400ms;
    options.connect_timeout = 5s;
    return options;
}

std::unique_ptr<revdesk::postgres_store> open_store(store_thread& thread, std::string const& dbname,
                                                    std::string node_id = "node-a") {
    auto store = std::make_unique<revdesk::postgres_store>(thread.executor(),
                                                           options_for(dbname, std::move(node_id)));
    thread.wait(store->open());
    return store;
}

} // namespace

struct store_fixture {
    store_thread thread;
    std::unique_ptr<revdesk::postgres_store> store = open_store(thread, cluster().create_database());

    ~store_fixture() { thread.destroy(std::move(store)); }

    revdesk::store& db() { return *store; }
};

#include "store_suite.hpp"

namespace rt = revdesk::test;

namespace {

/// The changes a watcher received, read from the test's thread.
class change_log {
public:
    std::function<void(revdesk::store_change const&)> watcher() {
        return [this](revdesk::store_change const& change) {
            std::lock_guard lock(mutex_);
            changes_.push_back(change);
        };
    }

    std::size_t count(revdesk::store_change::kind what, std::string const& id = "") {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(
            std::count_if(changes_.begin(), changes_.end(), [&](auto const& c) {
                return c.what == what && (id.empty() || c.subscription_id == id);
            }));
    }

    /// Waits up to `limit` until count(what, id) reaches `n`; returns whether it did.
    bool wait_for(std::size_t n, revdesk::store_change::kind what, std::string const& id = "",
                  std::chrono::milliseconds limit = 10s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (count(what, id) >= n) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return count(what, id) >= n;
    }

private:
    std::mutex mutex_;
    std::vector<revdesk::store_change> changes_;
};

/// A blocking libpq session of the test, for locking tables and inspecting rows.
class session {
public:
    explicit session(std::string const& dbname)
        : conn_(PQconnectdb(cluster().conninfo(dbname).c_str())) {
        if (PQstatus(conn_) != CONNECTION_OK) {
            std::string message = PQerrorMessage(conn_);
            PQfinish(conn_);
            throw std::runtime_error("test session: " + message);
        }
    }
    session(session const&) = delete;
    session& operator=(session const&) = delete;
    ~session() { PQfinish(conn_); }

    /// Runs `sql`; returns the first column of the first row, or "" (also for NULL).
    std::string query(std::string const& sql) {
        PGresult* r = PQexec(conn_, sql.c_str());
        auto status = PQresultStatus(r);
        std::string value;
        if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
            value = PQgetvalue(r, 0, 0);
        }
        std::string message = PQresultErrorMessage(r);
        PQclear(r);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            throw std::runtime_error(sql + ": " + message);
        }
        return value;
    }

private:
    PGconn* conn_;
};

constexpr revdesk::unix_ms now = 1'760'000'100'000;

/// Two stores (nodes a and b) on one new database, on one store thread.
struct two_nodes : rt::coroutine_runner {
    std::string dbname = cluster().create_database();
    store_thread thread;
    std::unique_ptr<revdesk::postgres_store> a = open_store(thread, dbname, "node-a");
    std::unique_ptr<revdesk::postgres_store> b = open_store(thread, dbname, "node-b");

    ~two_nodes() {
        thread.destroy(std::move(a));
        thread.destroy(std::move(b));
    }

    /// Stores subscription `whk_1` and `count` events with one due delivery each
    /// (`msg_0`, `msg_1`, ...), due in that order.
    void seed(int count, std::string const& subscription_id = "whk_1") {
        run(a->insert_subscription(rt::make_subscription(subscription_id)));
        for (int i = 0; i < count; ++i) {
            auto e = rt::make_event("evt_" + subscription_id + "_" + std::to_string(i));
            std::vector<revdesk::delivery> d{rt::make_delivery(
                "msg_" + std::to_string(i), e.id, subscription_id, now - 1000 + i)};
            run(a->insert_event(e, d));
        }
    }

    /// Stores subscription `whk_1` and one event `evt_many` with `count` pending deliveries
    /// (`msg_0`, `msg_1`, ...), and returns the deliveries.
    std::vector<revdesk::delivery> seed_one_event(int count) {
        run(a->insert_subscription(rt::make_subscription("whk_1")));
        auto e = rt::make_event("evt_many");
        std::vector<revdesk::delivery> deliveries;
        for (int i = 0; i < count; ++i) {
            deliveries.push_back(
                rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", now));
        }
        run(a->insert_event(e, deliveries));
        return deliveries;
    }

    std::vector<std::string> claim(revdesk::postgres_store& node, revdesk::unix_ms at,
                                   std::size_t limit, revdesk::unix_ms until) {
        return rt::delivery_ids(run(node.claim_due(at, limit, until)));
    }
};

asio::awaitable<void> claim_all(revdesk::postgres_store& node, std::vector<std::string>& out) {
    for (;;) {
        auto claimed = co_await node.claim_due(now, 7, now + 60'000);
        if (claimed.empty()) {
            co_return;
        }
        for (auto const& p : claimed) {
            out.push_back(p.message.id);
        }
    }
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds delay) {
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> commit_after(session& blocker, std::chrono::milliseconds delay) {
    co_await sleep_for(delay);
    blocker.query("COMMIT");
}

asio::awaitable<void> insert_after(revdesk::store& db, std::chrono::milliseconds delay,
                                   revdesk::event e, std::vector<revdesk::delivery> deliveries) {
    co_await sleep_for(delay);
    co_await db.insert_event(e, deliveries);
}

asio::awaitable<void> record_after(revdesk::store& db, std::chrono::milliseconds delay,
                                   revdesk::attempt a, revdesk::delivery updated) {
    co_await sleep_for(delay);
    co_await db.record_attempt(a, updated);
}

/// Returns `d` delivered after `attempts` attempts.
revdesk::delivery delivered(revdesk::delivery d, std::uint32_t attempts) {
    d.state = revdesk::delivery_state::delivered;
    d.attempts = attempts;
    return d;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(postgres, two_nodes)

BOOST_AUTO_TEST_CASE(concurrent_opens_migrate_once) {
    auto fresh = cluster().create_database();
    auto first = std::make_unique<revdesk::postgres_store>(thread.executor(),
                                                           options_for(fresh, "node-1"));
    auto second = std::make_unique<revdesk::postgres_store>(thread.executor(),
                                                            options_for(fresh, "node-2"));
    std::vector<asio::awaitable<void>> opens;
    opens.push_back(first->open());
    opens.push_back(second->open());
    auto errors = run_concurrently(std::move(opens));
    BOOST_TEST(rt::message_of(errors[0]) == "");
    BOOST_TEST(rt::message_of(errors[1]) == "");
    BOOST_TEST(cluster().execute("SELECT count(*) FROM revdesk_schema_migrations", fresh) ==
               std::to_string(revdesk::postgres_store::schema_version()));

    auto again = thread.wait(
        revdesk::postgres_store::migrate(thread.executor(), options_for(fresh, "node-3")));
    BOOST_TEST(again.previous_version == revdesk::postgres_store::schema_version());
    BOOST_TEST(again.current_version == revdesk::postgres_store::schema_version());

    // Both stores work on the migrated database.
    run(first->insert_subscription(rt::make_subscription("whk_1")));
    BOOST_TEST(run(second->load_subscriptions()).size() == 1u);
    thread.destroy(std::move(first));
    thread.destroy(std::move(second));
}

BOOST_AUTO_TEST_CASE(open_unreachable_names_target) {
    // A port bound by this test without listening, so connections to it are refused.
    int bound = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_TEST_REQUIRE(bound >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    BOOST_TEST_REQUIRE(::bind(bound, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    BOOST_TEST_REQUIRE(
        ::getsockname(bound, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    auto port = std::to_string(ntohs(address.sin_port));

    auto options = options_for("revdesk_nowhere", "node-x");
    options.conninfo =
        "host=127.0.0.1 port=" + port + " dbname=revdesk_nowhere user=alice password=s3cret-Pw";
    revdesk::postgres_store store(thread.executor(), options);
    std::string message;
    try {
        thread.wait(store.open());
    } catch (revdesk::postgres_error const& e) {
        message = e.what();
        BOOST_TEST(e.sqlstate() == "08001");
    }
    BOOST_TEST_MESSAGE(message);
    BOOST_TEST(message.find("127.0.0.1") != std::string::npos, message);
    BOOST_TEST(message.find("port=" + port) != std::string::npos, message);
    BOOST_TEST(message.find("user=alice") != std::string::npos, message);
    BOOST_TEST(message.find("check that") != std::string::npos, message);
    BOOST_TEST(message.find("s3cret") == std::string::npos, message);
    BOOST_TEST(!thread.wait(store.ping()));
    ::close(bound);
}

BOOST_AUTO_TEST_CASE(concurrent_claims_are_disjoint) {
    constexpr int count = 120;
    seed(count);
    std::vector<std::string> from_a;
    std::vector<std::string> from_b;
    std::vector<asio::awaitable<void>> claims;
    claims.push_back(claim_all(*a, from_a));
    claims.push_back(claim_all(*b, from_b));
    claims.push_back(claim_all(*a, from_a));
    claims.push_back(claim_all(*b, from_b));
    auto errors = run_concurrently(std::move(claims));
    for (auto const& e : errors) {
        BOOST_TEST(rt::message_of(e) == "");
    }
    BOOST_TEST_MESSAGE("node a claimed " << from_a.size() << ", node b " << from_b.size());
    std::set<std::string> all(from_a.begin(), from_a.end());
    all.insert(from_b.begin(), from_b.end());
    BOOST_TEST(all.size() == static_cast<std::size_t>(count));
    BOOST_TEST(from_a.size() + from_b.size() == static_cast<std::size_t>(count));
    BOOST_TEST(!from_a.empty());
    BOOST_TEST(!from_b.empty());
    BOOST_TEST(cluster().execute("SELECT count(*) FROM deliveries WHERE lease_owner IS NULL",
                                 dbname) == "0");
}

BOOST_AUTO_TEST_CASE(claim_returns_oldest_due_first) {
    seed(3);
    auto claimed = run(a->claim_due(now, 2, now + 1000));
    BOOST_TEST_REQUIRE(claimed.size() == 2u);
    BOOST_TEST(claimed[0].message.id == "msg_0");
    BOOST_TEST(claimed[1].message.id == "msg_1");
    rt::check_same(rt::make_event("evt_whk_1_0"), claimed[0].source);
    // A delivery not yet due and one of an unknown subscription are not claimed.
    auto later = rt::make_event("evt_later");
    std::vector<revdesk::delivery> later_delivery{
        rt::make_delivery("msg_later", later.id, "whk_1", now + 5000)};
    run(a->insert_event(later, later_delivery));
    auto orphan = rt::make_event("evt_orphan");
    std::vector<revdesk::delivery> orphan_delivery{
        rt::make_delivery("msg_orphan", orphan.id, "whk_unknown", now - 5000)};
    run(a->insert_event(orphan, orphan_delivery));
    std::vector<std::string> expected{"msg_2"};
    BOOST_TEST(claim(*b, now, 10, now + 1000) == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(only_expired_leases_are_claimable) {
    seed(1);
    std::vector<std::string> one{"msg_0"};
    BOOST_TEST(claim(*a, now, 10, now + 1000) == one, boost::test_tools::per_element());
    BOOST_TEST(claim(*b, now + 1000, 10, now + 5000).empty());
    BOOST_TEST(claim(*b, now + 1001, 10, now + 5000) == one, boost::test_tools::per_element());
    BOOST_TEST(cluster().execute("SELECT lease_owner FROM deliveries WHERE id = 'msg_0'",
                                 dbname) == "node-b");
}

BOOST_AUTO_TEST_CASE(renew_returns_lost_leases) {
    seed(2);
    BOOST_TEST(claim(*a, now, 10, now + 1000).size() == 2u);
    std::vector<std::string> held{"msg_0", "msg_1"};
    BOOST_TEST(run(a->renew_leases(held, now + 2000)).empty());
    // msg_0 expires and node b takes it; msg_1 is delivered.
    BOOST_TEST(claim(*b, now + 1500, 1, now + 9000).empty());
    BOOST_TEST(claim(*b, now + 2001, 1, now + 9000) == std::vector<std::string>{"msg_0"},
               boost::test_tools::per_element());
    auto delivered = rt::make_delivery("msg_1", "evt_whk_1_1", "whk_1");
    delivered.state = revdesk::delivery_state::delivered;
    delivered.attempts = 1;
    run(a->record_attempt(rt::make_attempt("msg_1", 1, 200), delivered));

    std::vector<std::string> asked{"msg_0", "msg_1", "msg_unknown"};
    auto lost = run(a->renew_leases(asked, now + 3000));
    BOOST_TEST(lost == asked, boost::test_tools::per_element());
    BOOST_TEST(cluster().execute("SELECT lease_until FROM deliveries WHERE id = 'msg_0'",
                                 dbname) == std::to_string(now + 9000));
}

BOOST_AUTO_TEST_CASE(release_makes_deliveries_claimable) {
    seed(2);
    BOOST_TEST(claim(*a, now, 10, now + 60'000).size() == 2u);
    BOOST_TEST(claim(*b, now, 10, now + 60'000).empty());
    std::vector<std::string> first{"msg_0"};
    // Releasing a lease held by another node does nothing.
    run(b->release_leases(first));
    BOOST_TEST(claim(*b, now, 10, now + 60'000).empty());
    run(a->release_leases(first));
    BOOST_TEST(claim(*b, now, 10, now + 60'000) == first, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(record_attempt_clears_lease_keeps_cancel) {
    seed(2);
    BOOST_TEST(claim(*a, now, 10, now + 60'000).size() == 2u);

    // A retry scheduled by the lease holder is claimable by anyone at once.
    auto retry = rt::make_delivery("msg_0", "evt_whk_1_0", "whk_1", now);
    retry.attempts = 1;
    run(a->record_attempt(rt::make_attempt("msg_0", 1, 503), retry));
    BOOST_TEST(cluster().execute("SELECT coalesce(lease_owner, 'none') FROM deliveries "
                                 "WHERE id = 'msg_0'",
                                 dbname) == "none");
    BOOST_TEST(claim(*b, now, 1, now + 60'000) == std::vector<std::string>{"msg_0"},
               boost::test_tools::per_element());

    // Node a's attempt on a delivery leased to node b is recorded, but the delivery keeps node
    // b's state and lease.
    auto late = retry;
    late.attempts = 2;
    late.state = revdesk::delivery_state::failed;
    run(a->record_attempt(rt::make_attempt("msg_0", 2, 500), late));
    BOOST_TEST(cluster().execute("SELECT state || ' ' || attempts || ' ' || lease_owner "
                                 "FROM deliveries WHERE id = 'msg_0'",
                                 dbname) == "pending 1 node-b");
    BOOST_TEST(run(a->list_attempts("whk_1", 10)).size() == 2u);

    // Node b deletes the subscription while msg_1 is leased to node a: it is cancelled and stays
    // cancelled.
    BOOST_TEST(run(b->erase_subscription("ws_a", "whk_1")));
    auto pending_again = rt::make_delivery("msg_1", "evt_whk_1_1", "whk_1", now + 1000);
    pending_again.attempts = 1;
    run(a->record_attempt(rt::make_attempt("msg_1", 1, 503), pending_again));
    BOOST_TEST(cluster().execute("SELECT state || ' ' || coalesce(lease_owner, 'none') "
                                 "FROM deliveries WHERE id = 'msg_1'",
                                 dbname) == "cancelled none");
    BOOST_TEST(run(a->load_pending()).empty());
}

BOOST_AUTO_TEST_CASE(disabling_cancels_leased_deliveries) {
    seed(1);
    BOOST_TEST(claim(*a, now, 10, now + 60'000).size() == 1u);
    auto s = rt::make_subscription("whk_1");
    s.enabled = false;
    BOOST_TEST(run(b->update_subscription(s)));
    BOOST_TEST(cluster().execute("SELECT state FROM deliveries WHERE id = 'msg_0'", dbname) ==
               "cancelled");
    BOOST_TEST(run(a->renew_leases({"msg_0"}, now + 90'000)).size() == 1u);
    auto found = run(a->find_subscription("whk_1"));
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(!found->enabled);
    BOOST_TEST(!run(a->find_subscription("whk_missing")).has_value());
}

BOOST_AUTO_TEST_CASE(changes_reach_other_node_watcher) {
    change_log log;
    a->watch(log.watcher());
    run(b->insert_subscription(rt::make_subscription("whk_7")));
    BOOST_TEST(log.wait_for(1, revdesk::store_change::kind::subscription, "whk_7"));

    auto e = rt::make_event("evt_1");
    std::vector<revdesk::delivery> d{rt::make_delivery("msg_1", e.id, "whk_7")};
    run(b->insert_event(e, d));
    BOOST_TEST(log.wait_for(1, revdesk::store_change::kind::work));

    BOOST_TEST(run(b->erase_subscription("ws_a", "whk_7")));
    BOOST_TEST(log.wait_for(2, revdesk::store_change::kind::subscription, "whk_7"));
    BOOST_TEST(log.count(revdesk::store_change::kind::resync) == 0u);
}

BOOST_AUTO_TEST_CASE(lost_listener_reconnects_with_resync) {
    change_log log;
    a->watch(log.watcher());
    auto killed = cluster().execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" +
            dbname + "' AND query LIKE 'LISTEN%' AND application_name = 'revdesk'",
        dbname);
    BOOST_TEST(killed == "2"); // The listeners of both nodes.
    BOOST_TEST(log.wait_for(1, revdesk::store_change::kind::resync));

    // Notifications flow again on the new connection.
    run(b->insert_subscription(rt::make_subscription("whk_9")));
    BOOST_TEST(log.wait_for(1, revdesk::store_change::kind::subscription, "whk_9"));
}

BOOST_AUTO_TEST_CASE(restart_fails_then_recovers) {
    change_log log;
    a->watch(log.watcher());
    run(a->insert_subscription(rt::make_subscription("whk_1")));

    cluster().stop();
    bool failed = false;
    try {
        run(a->load_subscriptions());
    } catch (revdesk::postgres_error const& e) {
        BOOST_TEST_MESSAGE("while stopped: " << e.what());
        failed = true;
    } catch (std::system_error const& e) {
        BOOST_TEST_MESSAGE("while stopped: " << e.what());
        failed = true;
    }
    BOOST_TEST(failed);
    BOOST_TEST(!run(a->ping()));
    cluster().start();

    // The store reconnects after its back-off (at most 400 ms in these tests).
    bool recovered = false;
    for (int i = 0; i < 50 && !recovered; ++i) {
        std::this_thread::sleep_for(100ms);
        recovered = run(a->ping());
    }
    BOOST_TEST_REQUIRE(recovered);
    BOOST_TEST(run(a->load_subscriptions()).size() == 1u);
    BOOST_TEST(log.wait_for(1, revdesk::store_change::kind::resync));

    // A quick restart: at most the first operation fails, and writes work again.
    cluster().restart();
    int failures = 0;
    for (int i = 0; i < 10; ++i) {
        try {
            run(a->insert_subscription(rt::make_subscription("whk_r" + std::to_string(i))));
            break;
        } catch (std::exception const& e) {
            BOOST_TEST_MESSAGE("after restart: " << e.what());
            ++failures;
            std::this_thread::sleep_for(100ms);
        }
    }
    BOOST_TEST(failures <= 1);
    BOOST_TEST(run(b->load_subscriptions()).size() == 2u);
    BOOST_TEST(log.wait_for(2, revdesk::store_change::kind::resync));
}

BOOST_AUTO_TEST_CASE(group_commit_batches_concurrent_inserts) {
    constexpr int writers = 200;
    change_log log;
    a->watch(log.watcher());
    auto commits_before = a->commit_count();

    // While the test holds a lock that inserts wait for, the first transaction waits and every
    // other insert queues up behind it.
    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE events IN SHARE MODE");
    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < writers; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        ops.push_back(rt::insert_event_copy(
            *a, e, {rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i)}));
    }
    ops.push_back(commit_after(blocker, 300ms));
    auto errors = run_concurrently(std::move(ops));
    for (std::size_t i = 0; i < errors.size(); ++i) {
        BOOST_TEST_CONTEXT("operation " << i) {
            BOOST_TEST(rt::message_of(errors[i]) == "");
        }
    }
    auto commits = a->commit_count() - commits_before;
    BOOST_TEST_MESSAGE(writers << " inserts took " << commits << " commits");
    BOOST_TEST(commits >= 1u);
    BOOST_TEST(commits <= 5u);

    // The database agrees: each committed transaction sent one work notification (PostgreSQL
    // folds equal notifications of one transaction into one and keeps those of different ones).
    BOOST_TEST(log.wait_for(commits, revdesk::store_change::kind::work));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(log.count(revdesk::store_change::kind::work) == commits);

    auto ids = rt::delivery_ids(run(b->load_pending()));
    BOOST_TEST_REQUIRE(ids.size() == static_cast<std::size_t>(writers));
    for (int i = 0; i < writers; ++i) {
        BOOST_TEST(ids[static_cast<std::size_t>(i)] == "msg_" + std::to_string(i));
    }
}

BOOST_AUTO_TEST_CASE(duplicate_key_in_batch_fails_alone) {
    auto commits_before = a->commit_count();
    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE events IN SHARE MODE");

    auto keyed = [](std::string id) {
        auto e = rt::make_event(std::move(id));
        e.idempotency_key = "order-1";
        e.response = R"({"id":")" + e.id + R"("})";
        return e;
    };
    auto first = keyed("evt_first");
    auto repeat = keyed("evt_repeat");
    auto other = rt::make_event("evt_other");
    std::vector<asio::awaitable<void>> ops;
    // The first insert waits for the lock; the next three queue up and commit together.
    ops.push_back(rt::insert_event_copy(*a, rt::make_event("evt_gate"), {}));
    ops.push_back(insert_after(*a, 100ms, first, {rt::make_delivery("msg_1", first.id, "whk_1")}));
    ops.push_back(
        insert_after(*a, 100ms, repeat, {rt::make_delivery("msg_2", repeat.id, "whk_1")}));
    ops.push_back(insert_after(*a, 100ms, other, {rt::make_delivery("msg_3", other.id, "whk_1")}));
    ops.push_back(commit_after(blocker, 400ms));
    auto errors = run_concurrently(std::move(ops));

    BOOST_TEST(rt::message_of(errors[0]) == "");
    BOOST_TEST(rt::message_of(errors[1]) == "");
    BOOST_TEST(rt::message_of(errors[3]) == "");
    BOOST_TEST_REQUIRE(static_cast<bool>(errors[2]));
    try {
        std::rethrow_exception(errors[2]);
    } catch (revdesk::duplicate_key_error const& e) {
        BOOST_TEST(e.existing_event_id() == "evt_first");
    } catch (std::exception const& e) {
        BOOST_ERROR("unexpected error: " << e.what());
    }
    BOOST_TEST(a->commit_count() - commits_before == 2u);
    std::vector<std::string> expected{"msg_1", "msg_3"};
    BOOST_TEST(rt::delivery_ids(run(a->load_pending())) == expected,
               boost::test_tools::per_element());
    BOOST_TEST(!run(a->find_event("ws_a", "evt_repeat")).has_value());
}

BOOST_AUTO_TEST_CASE(group_commit_batches_concurrent_attempts) {
    constexpr int writers = 200;
    auto deliveries = seed_one_event(writers);
    auto commits_before = a->attempt_commit_count();

    // While the test holds a lock that inserting attempts waits for, the first batch waits and
    // every other call queues up behind it.
    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE attempts IN SHARE MODE");
    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < writers; ++i) {
        auto const& d = deliveries[static_cast<std::size_t>(i)];
        auto retry = d;
        retry.attempts = 1;
        retry.next_attempt_at = now + 1000;
        ops.push_back(record_after(*a, 0ms, rt::make_attempt(d.id, 1, 503, i), retry));
    }
    // A second attempt of msg_0, called after its first: it lands in a later batch.
    ops.push_back(record_after(*a, 0ms, rt::make_attempt("msg_0", 2, 200, writers),
                               delivered(deliveries[0], 2)));
    ops.push_back(commit_after(blocker, 300ms));
    auto errors = run_concurrently(std::move(ops));
    for (std::size_t i = 0; i < errors.size(); ++i) {
        BOOST_TEST_CONTEXT("operation " << i) {
            BOOST_TEST(rt::message_of(errors[i]) == "");
        }
    }

    // The store's count and the database's agree: the attempts carry the ids of the
    // transactions that inserted them.
    auto commits = a->attempt_commit_count() - commits_before;
    BOOST_TEST_MESSAGE(writers + 1 << " attempts took " << commits << " commits");
    BOOST_TEST(commits >= 2u);
    BOOST_TEST(commits <= 5u);
    BOOST_TEST(cluster().execute("SELECT count(DISTINCT xmin::text) FROM attempts", dbname) ==
               std::to_string(commits));

    // Every call was applied, in call order.
    BOOST_TEST(cluster().execute("SELECT count(*) FROM attempts", dbname) ==
               std::to_string(writers + 1));
    BOOST_TEST(cluster().execute("SELECT string_agg(number::text, ',' ORDER BY sequence) "
                                 "FROM attempts WHERE delivery_id = 'msg_0'",
                                 dbname) == "1,2");
    BOOST_TEST(cluster().execute("SELECT state || ' ' || attempts FROM deliveries "
                                 "WHERE id = 'msg_0'",
                                 dbname) == "delivered 2");
    BOOST_TEST(cluster().execute("SELECT count(*) FROM deliveries WHERE state = 'pending' "
                                 "AND attempts = 1 AND next_attempt_at = " +
                                     std::to_string(now + 1000),
                                 dbname) == std::to_string(writers - 1));
    // The first attempts were called in the order of started_at.
    BOOST_TEST(cluster().execute("SELECT count(*) FROM (SELECT started_at, lag(started_at) "
                                 "OVER (ORDER BY sequence) AS before FROM attempts "
                                 "WHERE number = 1) AS o WHERE o.started_at < o.before",
                                 dbname) == "0");
    auto listed = run(b->list_attempts("whk_1", 1));
    BOOST_TEST_REQUIRE(listed.size() == 1u);
    BOOST_TEST(listed[0].delivery_id == "msg_0");
    BOOST_TEST(listed[0].event_id == "evt_many");
    BOOST_TEST(revdesk::detail::is_generated_attempt_id(listed[0].id));
}

BOOST_AUTO_TEST_CASE(failing_attempt_in_batch_fails_alone) {
    auto deliveries = seed_one_event(5);
    auto named = rt::make_attempt("msg_0", 1, 503);
    named.id = "custom_1";
    auto retry = deliveries[0];
    retry.attempts = 1;
    run(a->record_attempt(named, retry));
    auto commits_before = a->attempt_commit_count();

    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE attempts IN SHARE MODE");

    auto unknown = rt::make_delivery("msg_unknown", "evt_many", "whk_1", now);
    auto other_subscription = rt::make_attempt("msg_1", 1, 200);
    other_subscription.subscription_id = "whk_other";
    auto repeated_id = rt::make_attempt("msg_2", 1, 200);
    repeated_id.id = "custom_1";
    std::vector<asio::awaitable<void>> ops;
    // The first call waits for the lock; the next five queue up and form one batch.
    ops.push_back(record_after(*a, 0ms, rt::make_attempt("msg_0", 2, 200),
                               delivered(deliveries[0], 2)));
    ops.push_back(record_after(*a, 100ms, rt::make_attempt("msg_unknown", 1, 200), unknown));
    ops.push_back(record_after(*a, 100ms, other_subscription, delivered(deliveries[1], 1)));
    ops.push_back(record_after(*a, 100ms, repeated_id, delivered(deliveries[2], 1)));
    ops.push_back(record_after(*a, 100ms, rt::make_attempt("msg_3", 1, 200),
                               delivered(deliveries[3], 1)));
    ops.push_back(record_after(*a, 100ms, rt::make_attempt("msg_4", 1, 200),
                               delivered(deliveries[4], 1)));
    ops.push_back(commit_after(blocker, 400ms));
    auto errors = run_concurrently(std::move(ops));
    BOOST_TEST(rt::message_of(errors[0]) == "");
    BOOST_TEST(rt::message_of(errors[1]) == "delivery 'msg_unknown' not found");
    BOOST_TEST(rt::message_of(errors[2]).find("whk_other") != std::string::npos);
    BOOST_TEST(rt::message_of(errors[3]).find("attempts_id_key") != std::string::npos);
    BOOST_TEST(rt::message_of(errors[4]) == "");
    BOOST_TEST(rt::message_of(errors[5]) == "");

    // The first call's transaction and the batch's; the repeated id failed in its own.
    BOOST_TEST(a->attempt_commit_count() - commits_before == 2u);
    BOOST_TEST(cluster().execute("SELECT string_agg(id || ' ' || state, ',' ORDER BY id) "
                                 "FROM deliveries",
                                 dbname) == "msg_0 delivered,msg_1 pending,msg_2 pending,"
                                            "msg_3 delivered,msg_4 delivered");
    BOOST_TEST(cluster().execute("SELECT count(*) FROM attempts", dbname) == "4");
}

BOOST_AUTO_TEST_CASE(failing_batch_statement_runs_each_call_alone) {
    auto deliveries = seed_one_event(4);
    auto commits_before = a->attempt_commit_count();

    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE attempts IN SHARE MODE");

    // PostgreSQL rejects a NUL byte in text, so the statement of the whole batch fails. Each call
    // then runs in its own transaction, and only the one with the NUL byte fails.
    auto bad = rt::make_attempt("msg_2", 1, 500);
    bad.error = std::string("broken\0error", 12);
    std::vector<asio::awaitable<void>> ops;
    ops.push_back(record_after(*a, 0ms, rt::make_attempt("msg_0", 1, 200),
                               delivered(deliveries[0], 1)));
    ops.push_back(record_after(*a, 100ms, rt::make_attempt("msg_1", 1, 200),
                               delivered(deliveries[1], 1)));
    ops.push_back(record_after(*a, 100ms, bad, delivered(deliveries[2], 1)));
    ops.push_back(record_after(*a, 100ms, rt::make_attempt("msg_3", 1, 200),
                               delivered(deliveries[3], 1)));
    ops.push_back(commit_after(blocker, 400ms));
    auto errors = run_concurrently(std::move(ops));
    BOOST_TEST(rt::message_of(errors[0]) == "");
    BOOST_TEST(rt::message_of(errors[1]) == "");
    BOOST_TEST(rt::message_of(errors[2]) != "");
    BOOST_TEST(rt::message_of(errors[3]) == "");

    // The first call's transaction, then msg_1 and msg_3 each in its own.
    BOOST_TEST(a->attempt_commit_count() - commits_before == 3u);
    BOOST_TEST(cluster().execute("SELECT string_agg(id || ' ' || state, ',' ORDER BY id) "
                                 "FROM deliveries",
                                 dbname) ==
               "msg_0 delivered,msg_1 delivered,msg_2 pending,msg_3 delivered");
    BOOST_TEST(cluster().execute("SELECT count(*) FROM attempts", dbname) == "3");
}

BOOST_AUTO_TEST_CASE(payload_bytes_stay_exact) {
    std::string payload = "{\"text\":\"caf\xc3\xa9 \\u0000 \xf0\x9f\x93\x9e\"}  \n";
    payload.push_back('\0');
    payload += "\xff\xfe";
    auto e = rt::make_event("evt_bytes", payload);
    run(a->insert_event(e, {}));
    auto found = run(b->find_event("ws_a", "evt_bytes"));
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST((found->payload == payload));
}

// A server destroys its store before its io_context, and the io_context then destroys the
// coroutine frames still waiting in it. A frame with a pooled connection must then leave the
// store alone, or AddressSanitizer reports a use after free.
BOOST_AUTO_TEST_CASE(query_outlives_destroyed_store) {
    session blocker(dbname);
    blocker.query("BEGIN");
    blocker.query("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE");
    bool finished = false;
    {
        asio::io_context io;
        auto store = std::make_unique<revdesk::postgres_store>(io.get_executor(),
                                                               options_for(dbname, "node-c"));
        bool opened = false;
        asio::co_spawn(io, store->open(), [&](std::exception_ptr e) { opened = !e; });
        while (!opened && io.run_one_for(5s) > 0) {
        }
        BOOST_TEST_REQUIRE(opened);

        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                co_await store->load_subscriptions();
                finished = true;
            },
            asio::detached);
        // The query reaches PostgreSQL and waits there for the lock.
        io.run_for(300ms);
        store.reset();
    }
    blocker.query("ROLLBACK");
    BOOST_TEST(!finished);
}

BOOST_AUTO_TEST_CASE(closed_store_rejects_operations) {
    thread.wait(a->close());
    BOOST_TEST(!run(a->ping()));
    BOOST_CHECK_THROW(run(a->load_keys()), std::runtime_error);
    thread.wait(a->close());
}

BOOST_AUTO_TEST_SUITE_END()
