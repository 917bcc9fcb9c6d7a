// End to end, durability under SIGKILL: a burst of events published concurrently to the real
// server, which is killed in the middle of the burst and restarted on the same SQLite file.
// Every event that the API accepted with 202 must reach every matching subscription, and the only
// duplicates allowed are attempts that were in flight or not yet recorded at the kill.
#include <revdesk/http/client.hpp>

#define BOOST_TEST_MODULE crash_e2e
#include <boost/test/unit_test.hpp>

#include "../support/publisher.hpp"
#include "../support/receiver.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <boost/json.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace http = revdesk::http;

namespace {

std::string const api_key = "crash-e2e-key-0d2e";

// Events in the burst, and how many of them are accepted with 202 before the kill.
constexpr std::size_t burst_size = 3000;
constexpr std::size_t kill_after_accepted = 1200;
// Concurrent publishing connections.
constexpr std::size_t publishers = 8;
// The server's --max-in-flight and --max-unrecorded: together the bound on attempts in flight or
// waiting to be recorded, hence on duplicates.
constexpr std::size_t max_in_flight = 24;
constexpr std::size_t max_unrecorded = 24;
constexpr std::size_t max_duplicates = max_in_flight + max_unrecorded;

struct crash_e2e {
    revdesk::test::test_certificates certs;
    revdesk::test::temp_dir dir;
    revdesk::test::receiver first_origin{certs.cert_file, certs.key_file};
    revdesk::test::receiver second_origin{certs.cert_file, certs.key_file};
    std::string database = dir.file("revdesk.db");
    std::unique_ptr<revdesk::test::server_process> server;

    void start() {
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", "sqlite:" + database, "--ca-file", certs.ca_file,
                                     "--allow-target", "127.0.0.1/32", "--retry-schedule",
                                     "500ms,1s,1s,1s,1s", "--max-in-flight",
                                     std::to_string(max_in_flight), "--max-unrecorded",
                                     std::to_string(max_unrecorded)},
            api_key, dir.file("server.log"));
    }

    std::uint16_t api_port() const {
        auto const& base = server->base_url();
        return static_cast<std::uint16_t>(std::stoi(base.substr(base.rfind(':') + 1)));
    }

    std::string hook(revdesk::test::receiver const& r, std::string const& path) const {
        return "https://127.0.0.1:" + std::to_string(r.port()) + path;
    }
};

// The number in a delivered contact body.
std::size_t number_of(std::string const& body) {
    auto id = std::string(boost::json::parse(body).at("id").as_string());
    return std::stoul(id.substr(3));
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(crash, crash_e2e)

BOOST_AUTO_TEST_CASE(kill_during_burst_loses_nothing) {
    start();
    revdesk::test::api_session api(server->base_url(), api_key);
    struct target {
        revdesk::test::receiver const* receiver;
        std::string path;
    };
    std::vector<target> targets{
        {&first_origin, "/one"}, {&first_origin, "/two"}, {&second_origin, "/three"}};
    for (auto const& t : targets) {
        auto reply = api.subscribe(hook(*t.receiver, t.path), "contact_created");
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
    }

    // Publish until enough events were accepted and deliveries are under way, then kill.
    asio::io_context io;
    std::size_t accepted_at_kill = 0;
    std::map<std::string, std::size_t> received_at_kill; // by path
    revdesk::test::publisher before(io, {api_port()}, api_key, publishers);
    auto killed = [&] {
        if (before.accepted().size() < kill_after_accepted || first_origin.count_at("/one") == 0) {
            return false;
        }
        server->stop(SIGKILL);
        accepted_at_kill = before.accepted().size();
        // Requests the server wrote before it died may still sit in the receivers' sockets.
        std::this_thread::sleep_for(500ms);
        for (auto const& t : targets) {
            received_at_kill[t.path] = t.receiver->count_at(t.path);
        }
        return true;
    };
    revdesk::test::run(
        io, [&] { return before.run(0, burst_size, killed); }, 300s);
    BOOST_TEST_REQUIRE(accepted_at_kill > 0u);

    // Restart on the same file and publish the rest of the burst.
    start();
    revdesk::test::publisher after(io, {api_port()}, api_key, publishers);
    revdesk::test::run(
        io, [&] { return after.run(before.next(), burst_size); }, 300s);
    BOOST_TEST(after.failed() == 0u);

    std::set<std::size_t> accepted = before.accepted();
    accepted.insert(after.accepted().begin(), after.accepted().end());

    // Wait until nothing is pending, then check what every receiver has seen.
    auto until = std::chrono::steady_clock::now() + 240s;
    auto pending = [&] {
        return revdesk::test::sql(database,
                                  "select count(*) from deliveries where state = 'pending'");
    };
    while (pending() != "0\n" && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(200ms);
    }
    BOOST_TEST_REQUIRE(pending() == "0\n");
    BOOST_TEST(revdesk::test::sql(database, "select count(*) from deliveries where state != "
                                            "'delivered'") == "0\n");

    std::size_t deliveries = 0;
    std::size_t duplicates = 0;
    for (auto const& t : targets) {
        BOOST_TEST_CONTEXT("subscription at " << t.path) {
            auto got = t.receiver->received_at(t.path);
            deliveries += got.size();
            std::map<std::string, std::size_t> by_message; // webhook-id -> requests
            std::set<std::string> repeated_before_kill;
            std::set<std::size_t> numbers;
            for (std::size_t i = 0; i < got.size(); ++i) {
                auto id = std::string(*got[i].headers.find("webhook-id"));
                if (++by_message[id] == 1 && i < received_at_kill[t.path]) {
                    repeated_before_kill.insert(id);
                }
                numbers.insert(number_of(got[i].body));
            }
            for (auto const& [id, count] : by_message) {
                duplicates += count - 1;
                // A message may repeat only when its first request arrived before the kill.
                if (count > 1) {
                    BOOST_TEST(repeated_before_kill.count(id) == 1u, id);
                }
            }
            std::vector<std::size_t> missing;
            for (auto n : accepted) {
                if (!numbers.count(n)) {
                    missing.push_back(n);
                }
            }
            BOOST_TEST(missing.empty(), missing.size() << " accepted events never arrived");
            // One message per stored event: distinct ids match distinct events.
            BOOST_TEST(by_message.size() == numbers.size());
        }
    }

    BOOST_TEST_MESSAGE(
        "burst of " << burst_size << " events: " << accepted_at_kill << " accepted before SIGKILL ("
                    << received_at_kill["/one"] + received_at_kill["/two"] +
                           received_at_kill["/three"]
                    << " requests received by then), " << accepted.size() << " accepted in all, "
                    << before.failed() << " requests cut by the kill; " << deliveries
                    << " requests received over " << targets.size() << " subscriptions, "
                    << duplicates << " duplicates (bound " << max_duplicates << ")");
    BOOST_TEST(accepted.size() >= burst_size - publishers);
    BOOST_TEST(duplicates <= max_duplicates);
    BOOST_TEST(deliveries >= accepted.size() * targets.size());
}

BOOST_AUTO_TEST_SUITE_END()
