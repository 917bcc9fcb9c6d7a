// End to end, several servers on one PostgreSQL database: a throw-away cluster on loopback, two
// revdesk-server processes on it, and a receiver that notices when two requests of the same
// message overlap. Node 1 is killed with SIGKILL in the middle of a burst, a subscription is
// deleted through the other node, and the database restarts under load. Every event accepted
// with 202 must still arrive, and no message may be attempted by two nodes at the same time.
#define BOOST_TEST_MODULE multinode_e2e
#include <boost/test/unit_test.hpp>

#include "../support/postgres_cluster.hpp"
#include "../support/publisher.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <revdesk/http/server.hpp>

#include <boost/json.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace http = revdesk::http;

namespace {

std::string const api_key = "multinode-e2e-key-5c1a";

// The servers' --lease: short, so that a killed node's messages come back within the test. It
// must exceed the --attempt-timeout of 2 seconds.
std::string const lease = "3s";
// The servers' --max-in-flight and --max-unrecorded: together the bound on attempts in flight or
// waiting to be recorded in one node, hence on the duplicates that killing it may cause.
constexpr std::size_t max_in_flight = 16;
constexpr std::size_t max_unrecorded = 16;

/// A receiver on 127.0.0.1 that delays each response, and counts the requests that arrived while
/// another one with the same `webhook-id` was still waiting for its response.
class tracking_receiver {
public:
    struct request_record {
        std::string webhook_id;
        std::string path;
        std::string body;
    };

    explicit tracking_receiver(std::chrono::milliseconds hold)
        : hold_(hold) {
        server_.emplace(
            io_.get_executor(),
            [this](http::request& r,
                   http::request_context const&) -> asio::awaitable<http::response> {
                return handle(r);
            },
            http::server_options{}, nullptr);
        server_->listen({asio::ip::make_address("127.0.0.1"), 0});
        asio::co_spawn(io_, server_->run(), asio::detached);
        thread_ = std::thread([this] { io_.run(); });
    }

    ~tracking_receiver() {
        asio::post(io_, [this] {
            server_->stop();
            io_.stop();
        });
        thread_.join();
    }

    tracking_receiver(tracking_receiver const&) = delete;
    tracking_receiver& operator=(tracking_receiver const&) = delete;

    std::string url(std::string const& path) const {
        return "http://127.0.0.1:" + std::to_string(server_->local_endpoint().port()) + path;
    }

    /// Sets the status of every response from now on.
    void answer_with(int status) { status_ = status; }

    std::vector<request_record> received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }

    std::size_t count() const {
        std::lock_guard lock(mutex_);
        return received_.size();
    }

    std::size_t overlaps() const {
        std::lock_guard lock(mutex_);
        return overlaps_;
    }

private:
    asio::awaitable<http::response> handle(http::request& r) {
        auto header = r.headers.find("webhook-id");
        std::string id = header ? std::string(*header) : std::string();
        {
            std::lock_guard lock(mutex_);
            received_.push_back({id, r.target, r.body});
            if (held_.count(id) > 0) {
                ++overlaps_;
            }
            held_.insert(id);
        }
        asio::steady_timer pause(co_await asio::this_coro::executor, hold_);
        co_await pause.async_wait(http::use_nothrow);
        {
            std::lock_guard lock(mutex_);
            held_.erase(held_.find(id));
        }
        http::response res;
        res.status = status_;
        co_return res;
    }

    std::chrono::milliseconds hold_;
    std::atomic<int> status_{200};
    asio::io_context io_{1};
    std::optional<http::server> server_;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::vector<request_record> received_;
    std::multiset<std::string> held_;
    std::size_t overlaps_ = 0;
};

// The number in a delivered contact body.
std::size_t number_of(std::string const& body) {
    auto id = std::string(boost::json::parse(body).at("id").as_string());
    return std::stoul(id.substr(3));
}

// Returns the value of an unlabelled metric in Prometheus text, or -1 when it is missing.
double metric(std::string const& text, std::string const& name) {
    auto at = text.find("\n" + name + " ");
    if (at == std::string::npos) {
        return -1;
    }
    return std::stod(text.substr(at + name.size() + 2));
}

struct multinode_e2e {
    revdesk::test::postgres_cluster database;
    revdesk::test::temp_dir dir;
    std::map<std::string, std::unique_ptr<revdesk::test::server_process>> nodes;

    // Starts (or restarts) the node `name` on the shared database.
    revdesk::test::server_process& start(std::string const& name) {
        nodes[name].reset();
        nodes[name] = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", store_uri(), "--node-id", name, "--lease",
                                     lease, "--attempt-timeout", "2", "--allow-http",
                                     "--allow-target",
                                     "127.0.0.1/32", "--retry-schedule", "500ms,1s,1s,1s,1s,1s",
                                     "--max-in-flight", std::to_string(max_in_flight),
                                     "--max-unrecorded", std::to_string(max_unrecorded)},
            api_key, dir.file(name + ".log"));
        return *nodes[name];
    }

    // The --store of every node: a libpq URI, as an operator writes it.
    std::string store_uri() const {
        return "postgresql://postgres@127.0.0.1:" + std::to_string(database.port()) + "/postgres";
    }

    revdesk::test::api_session api(std::string const& name) {
        return revdesk::test::api_session(nodes.at(name)->base_url(), api_key);
    }

    std::uint16_t port(std::string const& name) const {
        auto const& base = nodes.at(name)->base_url();
        return static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1)));
    }

    // Runs `query` with psql on the shared database and returns its output without the final
    // line break.
    std::string sql(std::string const& query) const {
        auto out = revdesk::test::shell("psql " + revdesk::test::quote(store_uri()) +
                                              " -At -c " + revdesk::test::quote(query));
        while (!out.empty() && out.back() == '\n') {
            out.pop_back();
        }
        return out;
    }

    // Waits until no delivery is pending, or `limit` passes; returns whether none is.
    bool wait_until_settled(std::chrono::seconds limit) const {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (sql("select count(*) from deliveries where state = 'pending'") == "0") {
                return true;
            }
            std::this_thread::sleep_for(200ms);
        }
        return false;
    }
};

// Checks that every accepted number arrived under exactly one webhook-id, and returns the
// number of repeated requests.
std::size_t check_every_event_arrived(std::vector<tracking_receiver::request_record> const& got,
                                      std::set<std::size_t> const& accepted) {
    std::map<std::string, std::size_t> requests_by_message;
    std::map<std::size_t, std::set<std::string>> messages_by_number;
    for (auto const& r : got) {
        ++requests_by_message[r.webhook_id];
        messages_by_number[number_of(r.body)].insert(r.webhook_id);
    }
    std::vector<std::size_t> missing;
    for (auto n : accepted) {
        if (!messages_by_number.count(n)) {
            missing.push_back(n);
        }
    }
    BOOST_TEST(missing.empty(), missing.size() << " accepted events never arrived");
    for (auto const& [n, ids] : messages_by_number) {
        BOOST_TEST(ids.size() == 1u, "event " << n << " arrived under " << ids.size() << " ids");
    }
    std::size_t duplicates = 0;
    for (auto const& [id, count] : requests_by_message) {
        duplicates += count - 1;
    }
    return duplicates;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(multinode, multinode_e2e)

BOOST_AUTO_TEST_CASE(kill_one_node_loses_nothing) {
    constexpr std::size_t burst_size = 1000;
    constexpr std::size_t kill_after_accepted = 400;
    constexpr std::size_t connections = 8;

    tracking_receiver receiver(20ms);
    start("node-1");
    start("node-2");
    auto reply = api("node-1").subscribe(receiver.url("/hook"), "contact_created");
    BOOST_TEST_REQUIRE(reply.status == 201, reply.body);

    // Publish through both nodes until node 1 has attempts in flight, then kill it.
    asio::io_context io;
    double in_flight_at_kill = 0;
    bool killed = false;
    revdesk::test::publisher before(io, {port("node-1"), port("node-2")}, api_key, connections);
    auto kill_node_one = [&] {
        if (killed) {
            return true; // a response to a request sent before the kill
        }
        if (before.accepted().size() < kill_after_accepted) {
            return false;
        }
        auto metrics = revdesk::test::curl(nodes.at("node-1")->base_url() + "/metrics");
        in_flight_at_kill = metric(metrics.body, "revdesk_attempts_in_flight");
        if (in_flight_at_kill <= 0) {
            return false;
        }
        nodes.at("node-1")->stop(SIGKILL);
        killed = true;
        return true;
    };
    revdesk::test::run(
        io, [&] { return before.run(0, burst_size, kill_node_one); }, 300s);
    BOOST_TEST_REQUIRE(in_flight_at_kill > 0);

    // Node 2 takes the rest of the burst, then node 1 starts again and joins the claiming.
    revdesk::test::publisher after(io, {port("node-2")}, api_key, connections);
    revdesk::test::run(
        io, [&] { return after.run(before.next(), burst_size); }, 300s);
    BOOST_TEST(after.failed() == 0u);
    start("node-1");

    std::set<std::size_t> accepted = before.accepted();
    accepted.insert(after.accepted().begin(), after.accepted().end());
    BOOST_TEST(accepted.size() >= burst_size - connections);

    BOOST_TEST_REQUIRE(wait_until_settled(240s));
    BOOST_TEST(sql("select count(*) from deliveries where state <> 'delivered'") == "0");
    // Recording an attempt gives its lease up, so nothing stays claimed.
    BOOST_TEST(sql("select count(*) from deliveries where lease_owner is not null") == "0");

    auto got = receiver.received();
    auto duplicates = check_every_event_arrived(got, accepted);
    BOOST_TEST_MESSAGE("burst of " << burst_size << " events over two nodes: " << accepted.size()
                                   << " accepted, node 1 killed with " << in_flight_at_kill
                                   << " attempts in flight; " << got.size()
                                   << " requests received, " << duplicates << " duplicates, "
                                   << receiver.overlaps() << " overlapping");
    BOOST_TEST(duplicates <= max_in_flight + max_unrecorded);
    BOOST_TEST(receiver.overlaps() == 0u);
}

BOOST_AUTO_TEST_CASE(delete_on_one_node_stops_the_other) {
    tracking_receiver receiver(1ms);
    receiver.answer_with(500); // every message keeps retrying until the subscription goes
    start("node-1");
    auto created = api("node-1").subscribe(receiver.url("/hook"), "contact_created");
    BOOST_TEST_REQUIRE(created.status == 201, created.body);
    auto id = std::string(boost::json::parse(created.body).at("id").as_string());
    for (std::size_t n = 0; n < 5; ++n) {
        auto published =
            api("node-1").post("/api/v1/events", revdesk::test::numbered_event_body(n));
        BOOST_TEST_REQUIRE(published.status == 202, published.body);
    }
    auto until = std::chrono::steady_clock::now() + 30s;
    while (receiver.count() < 10 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(50ms);
    }
    BOOST_TEST_REQUIRE(receiver.count() >= 10u); // node 1 is retrying

    start("node-2");
    auto removed = api("node-2").remove("/api/v1/webhook_subscriptions/" + id);
    BOOST_TEST_REQUIRE(removed.status == 204, removed.body);

    // An attempt that had started before the notification reached node 1 may still finish.
    std::this_thread::sleep_for(1s);
    auto settled = receiver.count();
    auto after_delete =
        api("node-1").post("/api/v1/events", revdesk::test::numbered_event_body(100));
    BOOST_TEST(after_delete.status == 202);
    BOOST_TEST(boost::json::parse(after_delete.body).at("deliveries").to_number<int>() == 0);
    std::this_thread::sleep_for(4s); // several retry intervals
    BOOST_TEST(receiver.count() == settled);
    BOOST_TEST(api("node-1").get("/api/v1/webhook_subscriptions/" + id).status == 404);
    BOOST_TEST(sql("select count(*) from deliveries where state = 'pending'") == "0");
}

BOOST_AUTO_TEST_CASE(database_restart_under_load_loses_nothing) {
    constexpr std::size_t burst_size = 600;
    constexpr std::size_t restart_after_accepted = 150;
    constexpr std::size_t connections = 4;

    tracking_receiver receiver(2ms);
    start("node-1");
    start("node-2");
    auto reply = api("node-1").subscribe(receiver.url("/hook"), "contact_created");
    BOOST_TEST_REQUIRE(reply.status == 201, reply.body);

    // The database goes down and comes back on its own thread while both nodes take requests.
    asio::io_context io;
    std::thread restarter;
    int ready_while_down = 0;
    revdesk::test::publisher burst(io, {port("node-1"), port("node-2")}, api_key, connections);
    auto readyz = nodes.at("node-1")->base_url() + "/readyz";
    auto restart_once = [&] {
        if (!restarter.joinable() && burst.accepted().size() >= restart_after_accepted) {
            restarter = std::thread([&] {
                database.stop();
                ready_while_down = revdesk::test::curl(readyz).status;
                std::this_thread::sleep_for(2s);
                database.start();
            });
        }
        return false;
    };
    revdesk::test::run(
        io,
        [&] {
            return burst.run(0, burst_size, restart_once,
                             revdesk::test::publisher::on_failure::continue_);
        },
        300s);
    BOOST_TEST_REQUIRE(restarter.joinable());
    restarter.join();
    BOOST_TEST(ready_while_down == 503); // /readyz reports the lost database
    // While the database was down, publishing was refused with 503 and Retry-After, never 500.
    for (auto const& [status, count] : burst.refusals()) {
        BOOST_TEST(status == 503, count << " publish requests answered " << status);
    }

    // Both nodes reconnect within their back-off: then they take new events and report ready.
    std::set<std::size_t> accepted = burst.accepted();
    auto last = std::chrono::steady_clock::now() + 60s;
    std::size_t next = burst_size;
    bool reconnected = false;
    while (!reconnected && std::chrono::steady_clock::now() < last) {
        revdesk::test::publisher batch(io, {port("node-1"), port("node-2")}, api_key,
                                       connections);
        revdesk::test::run(
            io, [&] { return batch.run(next, next + 20); }, 60s);
        next += 20;
        accepted.insert(batch.accepted().begin(), batch.accepted().end());
        reconnected = batch.failed() == 0;
        if (!reconnected) {
            std::this_thread::sleep_for(500ms);
        }
    }
    BOOST_TEST(reconnected);
    for (auto const& name : {"node-1", "node-2"}) {
        BOOST_TEST(revdesk::test::curl(nodes.at(name)->base_url() + "/readyz").status == 200);
    }

    BOOST_TEST_REQUIRE(wait_until_settled(240s));
    auto got = receiver.received();
    auto duplicates = check_every_event_arrived(got, accepted);
    BOOST_TEST_MESSAGE("database restarted under load: " << accepted.size() << " accepted, "
                                                         << burst.failed()
                                                         << " refused while it was down; "
                                                         << got.size() << " requests received, "
                                                         << duplicates << " duplicates");
    BOOST_TEST(receiver.overlaps() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
