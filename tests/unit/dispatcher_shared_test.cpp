// The dispatcher on a shared store: two dispatchers, each with its own PostgreSQL store (two node
// ids) on one database of a throw-away cluster, deliver to a real receiver on loopback. Each
// message arrives once, subscription changes made through one dispatcher reach the other's index,
// and draining gives up the leases of messages that have not started.
#include <revdesk/dispatcher.hpp>
#include <revdesk/store/postgres_store.hpp>

#define BOOST_TEST_MODULE dispatcher_shared
#include <boost/test/unit_test.hpp>

#include "../support/postgres_cluster.hpp"
#include "../support/receiver.hpp"

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/ssl/context.hpp>
#include <asio/use_future.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace http = revdesk::http;

namespace {

/// Returns the cluster of this test binary, started on first use and removed at exit.
revdesk::test::postgres_cluster& cluster() {
    static revdesk::test::postgres_cluster instance;
    return instance;
}

revdesk::address_policy loopback_policy() {
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("127.0.0.1/32"));
    return policy;
}

/// One server's worth of parts on a shared executor: a PostgreSQL store with its own node id, an
/// HTTP client and a dispatcher.
class node {
public:
    node(asio::any_io_executor executor, std::string const& dbname, std::string id,
         revdesk::dispatcher_options options)
        : tls_(asio::ssl::context::tls_client)
        , client_(executor, tls_, policy_) {
        revdesk::postgres_options settings;
        settings.conninfo = cluster().conninfo(dbname);
        settings.node_id = std::move(id);
        store_ = std::make_unique<revdesk::postgres_store>(executor, settings);
        options.allow_http = true;
        options.on_attempt = [this](revdesk::attempt const&, revdesk::delivery const&,
                                    revdesk::subscription const&) { ++attempts_; };
        dispatcher_ =
            std::make_unique<revdesk::dispatcher>(executor, *store_, client_, policy_, options);
    }

    asio::awaitable<void> start() {
        co_await store_->open();
        co_await dispatcher_->start();
    }

    revdesk::dispatcher& dispatcher() { return *dispatcher_; }
    std::size_t attempts() const { return attempts_; }

private:
    revdesk::address_policy policy_ = loopback_policy();
    asio::ssl::context tls_;
    http::client client_;
    std::unique_ptr<revdesk::postgres_store> store_;
    std::unique_ptr<revdesk::dispatcher> dispatcher_;
    std::size_t attempts_ = 0;
};

revdesk::dispatcher_options fast_options() {
    revdesk::dispatcher_options options;
    options.attempt_timeout = 1s;
    options.lease = 3s;
    options.poll_interval = 200ms;
    return options;
}

revdesk::subscription subscription_to(std::string url) {
    revdesk::subscription s;
    s.id = revdesk::new_subscription_id();
    s.workspace = "ws_shared";
    s.webhook_url = std::move(url);
    s.type = revdesk::event_type::contact_created;
    s.secret = revdesk::new_signing_secret();
    s.created_at = revdesk::now_ms();
    s.updated_at = s.created_at;
    return s;
}

revdesk::event contact_event(std::size_t n) {
    revdesk::event e;
    e.id = revdesk::new_event_id();
    e.workspace = "ws_shared";
    e.type = revdesk::event_type::contact_created;
    e.payload = R"({"id":"ct_)" + std::to_string(n) + R"("})";
    e.created_at = revdesk::now_ms();
    return e;
}

constexpr std::array<revdesk::event_type, 1> contact_types{revdesk::event_type::contact_created};

/// The executor of every node, on its own thread, and a fresh database for the test.
struct shared_fixture {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::thread thread{[this] { io.run(); }};
    std::string dbname = cluster().create_database();
    revdesk::test::receiver receiver;
    std::vector<std::unique_ptr<node>> nodes;

    ~shared_fixture() {
        // As in the server: the executor stops first, so that no handler of a node runs during
        // or after its destruction, and the io_context outlives the nodes.
        guard.reset();
        io.stop();
        thread.join();
        nodes.clear();
    }

    /// Runs `op` on the nodes' thread and waits for its result.
    template <typename T>
    T wait(asio::awaitable<T> op) {
        return asio::co_spawn(io, std::move(op), asio::use_future).get();
    }

    /// Runs `f` on the nodes' thread and waits for its result.
    template <typename F>
    auto on_thread(F f) -> decltype(f()) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto result = task.get_future();
        asio::post(io, [&task] { task(); });
        return result.get();
    }

    node& add_node(std::string id, revdesk::dispatcher_options options = fast_options()) {
        auto& added = on_thread([&]() -> node& {
            nodes.push_back(
                std::make_unique<node>(io.get_executor(), dbname, std::move(id), options));
            return *nodes.back();
        });
        wait(added.start());
        return added;
    }

    std::string hook() const {
        return "http://127.0.0.1:" + std::to_string(receiver.port()) + "/hook";
    }

    /// Polls `condition` on the nodes' thread until it is true or `limit` passes.
    bool eventually(std::function<bool()> condition, std::chrono::milliseconds limit = 5s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (on_thread(condition)) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(shared, shared_fixture)

BOOST_AUTO_TEST_CASE(each_message_arrives_once) {
    constexpr std::size_t events = 100;
    auto& a = add_node("node-a");
    auto& b = add_node("node-b");
    auto s = subscription_to(hook());
    wait(a.dispatcher().subscribe(s));
    BOOST_TEST_REQUIRE(
        eventually([&] { return b.dispatcher().subscriptions().find(s.id) != nullptr; }));

    for (std::size_t n = 0; n < events; ++n) {
        auto& publisher = n % 2 == 0 ? a : b;
        wait(publisher.dispatcher().publish(contact_event(n), contact_types));
    }
    BOOST_TEST_REQUIRE(receiver.wait_for("/hook", events, 30s));
    std::this_thread::sleep_for(500ms); // a repeat would arrive within this

    auto got = receiver.received_at("/hook");
    std::set<std::string> ids;
    for (auto const& r : got) {
        ids.insert(std::string(*r.headers.find("webhook-id")));
    }
    BOOST_TEST(got.size() == events);
    BOOST_TEST(ids.size() == events);
    BOOST_TEST(on_thread([&] { return a.attempts() + b.attempts(); }) == events);
}

BOOST_AUTO_TEST_CASE(changes_reach_the_other_index) {
    auto& a = add_node("node-a");
    auto& b = add_node("node-b");
    auto s = subscription_to(hook());
    wait(a.dispatcher().subscribe(s));
    BOOST_TEST(eventually([&] { return b.dispatcher().subscriptions().find(s.id) != nullptr; }));

    auto changed = s;
    changed.webhook_url = hook() + "?moved=1";
    BOOST_TEST(wait(a.dispatcher().update_subscription(changed)));
    BOOST_TEST(eventually([&] {
        auto seen = b.dispatcher().subscriptions().find(s.id);
        return seen && seen->webhook_url == changed.webhook_url;
    }));

    BOOST_TEST(wait(b.dispatcher().unsubscribe(s.workspace, s.id)));
    BOOST_TEST(eventually([&] { return a.dispatcher().subscriptions().find(s.id) == nullptr; }));
}

BOOST_AUTO_TEST_CASE(drain_releases_unstarted_leases) {
    // One attempt at a time, each taking 300 ms at the receiver, so that claimed messages wait
    // for the slot.
    receiver.respond_with([](http::request const&) {
        std::this_thread::sleep_for(300ms);
        http::response res;
        res.status = 200;
        return res;
    });
    auto options = fast_options();
    options.max_in_flight = 1;
    options.max_per_origin = 1;
    auto& a = add_node("node-a", options);
    auto s = subscription_to(hook());
    wait(a.dispatcher().subscribe(s));
    for (std::size_t n = 0; n < 5; ++n) {
        wait(a.dispatcher().publish(contact_event(n), contact_types));
    }
    BOOST_TEST_REQUIRE(receiver.wait_for("/hook", 1, 10s));
    auto leased = [&] {
        return cluster().execute(
            "select count(*) from deliveries where lease_owner = 'node-a' and state = 'pending'",
            dbname);
    };
    BOOST_TEST_REQUIRE(leased() != "0"); // the attempt in flight and the one waiting for the slot

    auto left = wait(a.dispatcher().drain(5s));
    BOOST_TEST(left == 0u);
    // The finished attempt gave its lease up when it was recorded, and the drain released the
    // waiting one. Without the release, node-a would keep it until the lease expired.
    BOOST_TEST(leased() == "0");
    BOOST_TEST(cluster().execute("select count(*) from deliveries where state = 'pending'",
                                 dbname) != "0");
}

BOOST_AUTO_TEST_CASE(lease_must_exceed_attempt_timeout) {
    auto options = fast_options();
    options.lease = options.attempt_timeout;
    BOOST_CHECK_THROW(add_node("node-a", options), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
