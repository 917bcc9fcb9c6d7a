// End to end, the delivery promise: destinations checked at subscription time, redirects never
// followed, the response policy (410, 404, 5xx, Retry-After), cancellation on delete, failure
// after the last attempt, and signed bytes that survive a killed server. The real server binary,
// real HTTPS receivers on loopback, curl and sqlite3.
#include <revdesk/signing.hpp>

#define BOOST_TEST_MODULE delivery_e2e
#include <boost/test/unit_test.hpp>

#include "../support/receiver.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/signature_check.hpp"
#include "../support/test_support.hpp"

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using revdesk::test::quote;
using revdesk::test::sql;

namespace {

std::string const api_key = "delivery-e2e-key-41c9";

std::string const number_event = R"({"id":4821,"phone_number":"+15551234567","area_code":"555",)"
                                 R"("status":"ACTIVE","organization_id":"org_1"})";

struct delivery_e2e {
    revdesk::test::test_certificates certs;
    revdesk::test::temp_dir dir;
    // State for the receiver's callbacks, declared before the receiver so that it outlives the
    // receiver's thread.
    std::atomic<bool> restarted = false;
    std::mutex arrivals_mutex;
    std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> arrivals;
    revdesk::test::receiver receiver{certs.cert_file, certs.key_file};
    std::string database = dir.file("revdesk.db");
    std::unique_ptr<revdesk::test::server_process> server;

    // Starts the server on the test's database, trusting the test CA, with `args` added.
    void start(std::vector<std::string> args) {
        args.insert(args.begin(), {"--store", "sqlite:" + database, "--ca-file", certs.ca_file});
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH, std::move(args), api_key, dir.file("server.log"));
    }

    // Starts the server with loopback allowed and the retry schedule `schedule`.
    void start_for_loopback(std::string const& schedule) {
        start({"--allow-target", "127.0.0.1/32", "--retry-schedule", schedule});
    }

    revdesk::test::api_session api() const { return {server->base_url(), api_key}; }

    std::string hook(std::string const& path) const {
        return "https://127.0.0.1:" + std::to_string(receiver.port()) + path;
    }

    // Subscribes `url` to `type` and returns the created subscription.
    boost::json::object subscribed(std::string const& url, std::string const& type) const {
        auto reply = api().subscribe(url, type);
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
        return reply.json().as_object();
    }

    // Polls `query` until it outputs `expected` or `limit` passes; returns the last output.
    std::string poll_sql(std::string const& query, std::string const& expected,
                         std::chrono::milliseconds limit = 30s) const {
        auto until = std::chrono::steady_clock::now() + limit;
        auto output = sql(database, query);
        while (output != expected && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(50ms);
            output = sql(database, query);
        }
        return output;
    }

    // Polls GET of a subscription until its `enabled` is `wanted` or `limit` passes.
    bool enabled_becomes(std::string const& id, bool wanted,
                         std::chrono::milliseconds limit = 30s) const {
        auto until = std::chrono::steady_clock::now() + limit;
        while (true) {
            auto reply = api().get("/api/v1/webhook_subscriptions/" + id);
            if (reply.status == 200 && reply.json().at("enabled").as_bool() == wanted) {
                return true;
            }
            if (std::chrono::steady_clock::now() >= until) {
                return false;
            }
            std::this_thread::sleep_for(50ms);
        }
    }
};

std::string header(revdesk::http::request const& r, std::string_view name) {
    auto v = r.headers.find(name);
    return v ? std::string(*v) : std::string();
}

std::string id_of(boost::json::object const& subscription) {
    return std::string(subscription.at("id").as_string());
}

std::string secret_of(boost::json::object const& subscription) {
    return std::string(subscription.at("secret").as_string());
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(delivery, delivery_e2e)

BOOST_AUTO_TEST_CASE(subscribe_rejects_internal_literals) {
    start({}); // no --allow-target: the allow list is empty
    std::vector<std::string> urls{
        "https://[::ffff:127.0.0.1]/h",
        "https://[::ffff:7f00:1]/h",
        "https://[::ffff:169.254.169.254]/",
        "https://[::1]/",
        "https://[::]/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://127.1/",
        "https://0/",
    };
    for (auto const& url : urls) {
        BOOST_TEST_CONTEXT(url) {
            auto reply = api().subscribe(url, "new_call");
            BOOST_TEST(reply.status == 422);
            auto error = reply.json().at("error").as_object();
            BOOST_TEST(error.at("code").as_string() == "invalid_webhook_url");
            BOOST_TEST(error.at("field").as_string() == "webhook_url");
        }
    }
    BOOST_TEST(sql(database, "select count(*) from subscriptions") == "0\n");
}

BOOST_AUTO_TEST_CASE(subscribe_resolves_names) {
    // --resolve gives the addresses of every name, so no DNS query leaves the machine. Loopback
    // is allowed, which shows that one rejected address rejects a name even beside an allowed
    // one.
    start({"--allow-target", "127.0.0.1/32", "--resolve", "localhost=127.0.0.1", "--resolve",
           "public-and-private.test=8.8.8.8,10.1.2.3", "--resolve",
           "private-and-public.test=192.168.0.5,8.8.8.8", "--resolve",
           "allowed-and-private.test=127.0.0.1,172.16.0.1", "--resolve",
           "metadata.test=::ffff:169.254.169.254", "--resolve", "v6-loopback.test=::1"});

    struct row {
        std::string host;
        std::string range;
    };
    std::vector<row> rows{
        {"public-and-private.test", "Private-Use (10.0.0.0/8)"},
        {"private-and-public.test", "Private-Use (192.168.0.0/16)"},
        {"allowed-and-private.test", "Private-Use (172.16.0.0/12)"},
        {"metadata.test", "Link Local (169.254.0.0/16)"},
        {"v6-loopback.test", "Loopback Address (::1/128)"},
    };
    for (auto const& r : rows) {
        BOOST_TEST_CONTEXT(r.host) {
            auto reply = api().subscribe("https://" + r.host + "/h", "new_call");
            BOOST_TEST(reply.status == 422);
            auto error = reply.json().at("error").as_object();
            BOOST_TEST(error.at("code").as_string() == "invalid_webhook_url");
            auto message = std::string(error.at("message").as_string());
            BOOST_TEST(message.find(r.range) != std::string::npos, message);
        }
    }
    BOOST_TEST(sql(database, "select count(*) from subscriptions") == "0\n");

    // A name whose addresses all pass is accepted and delivered to, with the certificate checked
    // against the name.
    auto port = std::to_string(receiver.port());
    subscribed("https://localhost:" + port + "/named", "number_purchased");
    BOOST_TEST_REQUIRE(api().publish("number_purchased", number_event).status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/named", 1));
    BOOST_TEST(receiver.received_at("/named")[0].body == number_event);
}

BOOST_AUTO_TEST_CASE(redirect_is_recorded_not_followed) {
    revdesk::test::receiver elsewhere{certs.cert_file, certs.key_file};
    auto stolen = "https://127.0.0.1:" + std::to_string(elsewhere.port()) + "/stolen";
    receiver.respond_with([stolen](revdesk::http::request const& r) {
        revdesk::http::response res;
        res.status = 307;
        res.headers.add("Location",
                        r.target == "/to-metadata" ? "http://169.254.169.254/" : stolen);
        return res;
    });
    start_for_loopback("300ms");
    subscribed(hook("/to-metadata"), "number_purchased");
    subscribed(hook("/to-loopback"), "number_purchased");
    BOOST_TEST_REQUIRE(api().publish("number_purchased", number_event).status == 202);

    BOOST_TEST(poll_sql("select state, attempts from deliveries order by state",
                        "failed|1\nfailed|1\n") == "failed|1\nfailed|1\n");
    BOOST_TEST(sql(database, "select status, error from attempts") == "307|\n307|\n");
    std::this_thread::sleep_for(1s); // past the 300 ms retry that must not happen
    BOOST_TEST(receiver.count_at("/to-metadata") == 1u);
    BOOST_TEST(receiver.count_at("/to-loopback") == 1u);
    BOOST_TEST(elsewhere.received().empty());
}

BOOST_AUTO_TEST_CASE(gone_disables_only_that_subscription) {
    receiver.answer_with(
        [](revdesk::http::request const& r) { return r.target == "/gone" ? 410 : 200; });
    start_for_loopback("1s");
    auto gone = id_of(subscribed(hook("/gone"), "number_released"));
    auto kept = id_of(subscribed(hook("/kept"), "number_released"));

    auto first = api().publish("number_released", number_event);
    BOOST_TEST_REQUIRE(first.status == 202);
    BOOST_TEST(first.json().at("deliveries").as_int64() == 2);
    BOOST_TEST_REQUIRE(receiver.wait_for("/gone", 1));
    BOOST_TEST(enabled_becomes(gone, false));
    BOOST_TEST(enabled_becomes(kept, true, 0ms));

    auto second = api().publish("number_released", number_event);
    BOOST_TEST_REQUIRE(second.status == 202);
    BOOST_TEST(second.json().at("deliveries").as_int64() == 1);
    BOOST_TEST(receiver.wait_for("/kept", 2));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.count_at("/gone") == 1u);
    BOOST_TEST(sql(database, "select enabled from subscriptions where id = '" + gone + "'") ==
               "0\n");
    BOOST_TEST(sql(database, "select enabled from subscriptions where id = '" + kept + "'") ==
               "1\n");
}

BOOST_AUTO_TEST_CASE(error_statuses_keep_subscriptions) {
    receiver.answer_with(
        [](revdesk::http::request const& r) { return r.target == "/missing" ? 404 : 500; });
    start_for_loopback("300ms,300ms");
    auto missing = id_of(subscribed(hook("/missing"), "number_released"));
    auto broken = id_of(subscribed(hook("/broken"), "number_released"));
    BOOST_TEST_REQUIRE(api().publish("number_released", number_event).status == 202);

    // 404 fails at once; 500 is retried until the schedule ends.
    auto by_subscription = "select subscription_id || ':' || state || ':' || attempts from "
                           "deliveries order by attempts";
    auto expected = missing + ":failed:1\n" + broken + ":failed:3\n";
    BOOST_TEST(poll_sql(by_subscription, expected) == expected);
    BOOST_TEST(receiver.count_at("/missing") == 1u);
    BOOST_TEST(receiver.count_at("/broken") == 3u);
    for (auto const& id : {missing, broken}) {
        BOOST_TEST_CONTEXT(id) {
            BOOST_TEST(enabled_becomes(id, true, 0ms));
        }
    }
}

BOOST_AUTO_TEST_CASE(delete_cancels_pending_retries) {
    receiver.answer_with([](revdesk::http::request const&) { return 500; });
    start_for_loopback("2s");
    auto id = id_of(subscribed(hook("/retrying"), "number_released"));
    BOOST_TEST_REQUIRE(api().publish("number_released", number_event).status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/retrying", 1));

    BOOST_TEST(api().remove("/api/v1/webhook_subscriptions/" + id).status == 204);
    BOOST_TEST(poll_sql("select state from deliveries", "cancelled\n") == "cancelled\n");
    std::this_thread::sleep_for(3s); // past the retry that the delete cancelled
    BOOST_TEST(receiver.count_at("/retrying") == 1u);
    BOOST_TEST(sql(database, "select state from deliveries") == "cancelled\n");
}

BOOST_AUTO_TEST_CASE(last_attempt_marks_failed_and_kept) {
    receiver.answer_with([](revdesk::http::request const&) { return 503; });
    start_for_loopback("300ms,300ms");
    subscribed(hook("/down"), "number_released");
    BOOST_TEST_REQUIRE(api().publish("number_released", number_event).status == 202);

    BOOST_TEST(poll_sql("select state, attempts from deliveries", "failed|3\n") == "failed|3\n");
    BOOST_TEST(sql(database, "select number, status from attempts order by number") ==
               "1|503\n2|503\n3|503\n");
    std::this_thread::sleep_for(1s);
    BOOST_TEST(receiver.count_at("/down") == 3u);

    // The failed delivery and its event stay in the file after a restart, and are not resumed.
    server->stop(SIGTERM);
    start_for_loopback("300ms,300ms");
    std::this_thread::sleep_for(1s);
    BOOST_TEST(receiver.count_at("/down") == 3u);
    BOOST_TEST(sql(database, "select state, attempts from deliveries") == "failed|3\n");
    BOOST_TEST(sql(database, "select count(*) from events") == "1\n");
}

BOOST_AUTO_TEST_CASE(retention_purges_finished_events) {
    receiver.answer_with(
        [](revdesk::http::request const& r) { return r.target == "/stuck" ? 500 : 200; });
    start({"--allow-target", "127.0.0.1/32", "--retry-schedule", "1h", "--retention", "2s"});
    subscribed(hook("/done"), "number_released");
    subscribed(hook("/stuck"), "number_purchased");
    BOOST_TEST_REQUIRE(api().publish("number_released", number_event).status == 202);
    BOOST_TEST_REQUIRE(api().publish("number_purchased", number_event).status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/done", 1));
    BOOST_TEST_REQUIRE(receiver.wait_for("/stuck", 1));

    // The delivered event goes with its delivery and attempt; the one whose delivery waits an
    // hour for its retry stays whole.
    BOOST_TEST(poll_sql("select count(*) from events", "1\n", 15s) == "1\n");
    BOOST_TEST(sql(database, "select state from deliveries") == "pending\n");
    BOOST_TEST(sql(database, "select count(*) from attempts") == "1\n");
    BOOST_TEST(server->log().find("purged 1 finished events") != std::string::npos);
    BOOST_TEST(server->log().find("shorter than the 24-hour idempotency window") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(retry_after_is_honoured) {
    // The schedule waits an hour, so a second attempt within the test comes from Retry-After.
    receiver.respond_with([this](revdesk::http::request const& r) {
        std::lock_guard lock(arrivals_mutex);
        auto& times = arrivals[r.target];
        times.push_back(std::chrono::steady_clock::now());
        revdesk::http::response res;
        res.status = 200;
        if (times.size() == 1 && r.target == "/seconds") {
            res.status = 429;
            res.headers.add("Retry-After", "1");
        } else if (times.size() == 1 && r.target == "/date") {
            res.status = 503;
            res.headers.add("Retry-After",
                            revdesk::test::http_date(std::chrono::system_clock::now() + 3s));
        }
        return res;
    });
    start_for_loopback("1h");
    subscribed(hook("/seconds"), "number_released");
    subscribed(hook("/date"), "number_released");
    BOOST_TEST_REQUIRE(api().publish("number_released", number_event).status == 202);

    BOOST_TEST_REQUIRE(receiver.wait_for("/seconds", 2, 30s));
    BOOST_TEST_REQUIRE(receiver.wait_for("/date", 2, 30s));
    std::lock_guard lock(arrivals_mutex);
    auto gap = [&](std::string const& path) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(arrivals[path][1] -
                                                                     arrivals[path][0]);
    };
    // Retry-After: 1 waits a second. The date lies 2 to 3 s ahead, and the server reads it in
    // whole seconds from its own later clock, so at least a second passes there too.
    BOOST_TEST(gap("/seconds").count() >= 900);
    BOOST_TEST(gap("/date").count() >= 900);
    BOOST_TEST(poll_sql("select state from deliveries", "delivered\ndelivered\n") ==
               "delivered\ndelivered\n");
}

BOOST_AUTO_TEST_CASE(signed_bytes_survive_restart) {
    // A raw U+2028 (E2 80 A8) and an escaped one, non-ASCII letters, an emoji, "</x>" and "0.1"
    // in strings, the integer 4821, line breaks and odd spacing. Payload rules allow no
    // fractional number in any event type, so 0.1 is text here; the dispatcher unit test sends
    // it as a JSON number.
    std::string const payload =
        "{\n  \"id\": 4821,\n  \"phone_number\" : \"+15551234567\",\n"
        "  \"area_code\":\"555\",\n"
        "  \"status\": \"ACTIVE \\u2028 Zo\xC3\xAB \xE6\x97\xA5\xE6\x9C\xAC "
        "\xF0\x9F\x98\x80\",\n"
        "  \"organization_id\": \"org </x> v0.1 raw\xE2\x80\xA8sep\"\n}";
    receiver.answer_with([this](revdesk::http::request const&) { return restarted ? 200 : 500; });
    start_for_loopback("2s");
    auto subscription = subscribed(hook("/signed"), "number_purchased");
    auto published = api().publish("number_purchased", payload);
    BOOST_TEST_REQUIRE(published.status == 202, published.body);
    BOOST_TEST_REQUIRE(receiver.wait_for("/signed", 1));

    // Killed without warning: the retry must come from the store.
    server->stop(SIGKILL);
    auto before_restart = receiver.count_at("/signed");
    restarted = true;
    start_for_loopback("2s");
    BOOST_TEST_REQUIRE(receiver.wait_for("/signed", before_restart + 1, 30s));
    BOOST_TEST(poll_sql("select state from deliveries", "delivered\n") == "delivered\n");

    auto got = receiver.received_at("/signed");
    BOOST_TEST_REQUIRE(got.size() >= 2u);
    auto secret = secret_of(subscription);
    for (std::size_t i = 0; i < got.size(); ++i) {
        BOOST_TEST_CONTEXT("attempt " << i + 1) {
            auto const& r = got[i];
            BOOST_TEST(r.body == payload);
            BOOST_TEST(header(r, "webhook-id") == header(got[0], "webhook-id"));
            auto expected = revdesk::test::python_signature(secret, header(r, "webhook-id"),
                                                            header(r, "webhook-timestamp"), r.body);
            BOOST_TEST(header(r, "webhook-signature") == expected);
            auto verified =
                revdesk::verify(secret, r.headers, r.body, std::chrono::system_clock::now());
            BOOST_TEST(!verified, verified.message());
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
