#include <revdesk/dispatcher.hpp>

#define BOOST_TEST_MODULE dispatcher
#include <boost/test/unit_test.hpp>

#include "../support/test_support.hpp"

#include <revdesk/http/server.hpp>
#include <revdesk/store/memory_store.hpp>

#include <asio/detached.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <map>

using namespace std::chrono_literals;
namespace http = revdesk::http;
using revdesk::event_type;
using revdesk::test::run;

namespace {

// Receivers on loopback ports in the test's own io_context, and a dispatcher aimed at them.
struct fixture {
    asio::io_context io;
    asio::ssl::context tls{asio::ssl::context::tls_client};
    revdesk::address_policy policy;
    revdesk::memory_store store;
    std::optional<http::client> client;
    std::optional<revdesk::dispatcher> dispatcher;
    std::vector<std::unique_ptr<http::server>> receivers;
    std::map<std::string, std::vector<http::request>> received; // by target

    fixture() { policy.allow(*revdesk::cidr::parse("127.0.0.1/32")); }

    ~fixture() {
        for (auto& r : receivers) {
            r->stop();
        }
    }

    void make_dispatcher(revdesk::dispatcher_options options = {}) {
        options.allow_http = true;
        client.emplace(io.get_executor(), tls, policy);
        dispatcher.emplace(io.get_executor(), store, *client, policy, std::move(options));
    }

    // Starts a receiver whose handler decides the answer; returns its base URL.
    std::string receiver(std::function<asio::awaitable<int>(http::request const&)> answer) {
        auto server = std::make_unique<http::server>(
            io.get_executor(),
            [this, answer](http::request& r,
                           http::request_context const&) -> asio::awaitable<http::response> {
                received[r.target].push_back(r);
                http::response res;
                res.status = co_await answer(r);
                co_return res;
            });
        server->listen({asio::ip::make_address("127.0.0.1"), 0});
        asio::co_spawn(io, server->run(), asio::detached);
        auto url = "http://127.0.0.1:" + std::to_string(server->local_endpoint().port());
        receivers.push_back(std::move(server));
        return url;
    }

    static std::function<asio::awaitable<int>(http::request const&)> always(int status) {
        return [status](http::request const&) -> asio::awaitable<int> { co_return status; };
    }

    revdesk::subscription subscription(std::string url, event_type type) {
        revdesk::subscription s;
        s.id = revdesk::new_subscription_id();
        s.workspace = "w";
        s.webhook_url = std::move(url);
        s.type = type;
        s.secret = revdesk::new_signing_secret();
        s.created_at = revdesk::now_ms();
        return s;
    }

    static revdesk::event event(event_type type, std::string payload = R"({"n":1})") {
        revdesk::event e;
        e.id = revdesk::new_event_id();
        e.workspace = "w";
        e.type = type;
        e.payload = std::move(payload);
        e.created_at = revdesk::now_ms();
        return e;
    }

    // Waits until `path` has received `count` requests, or `limit` passes.
    asio::awaitable<bool> arrived(std::string const& path, std::size_t count,
                                  std::chrono::milliseconds limit = 10s) {
        auto until = std::chrono::steady_clock::now() + limit;
        asio::steady_timer tick(io);
        while (received[path].size() < count && std::chrono::steady_clock::now() < until) {
            tick.expires_after(5ms);
            co_await tick.async_wait(asio::use_awaitable);
        }
        co_return received[path].size() >= count;
    }

    asio::awaitable<void> pause(std::chrono::milliseconds d) {
        asio::steady_timer t(io, d);
        co_await t.async_wait(asio::use_awaitable);
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(dispatching, fixture)

BOOST_AUTO_TEST_CASE(publish_fans_out_to_matches) {
    auto url = receiver(always(200));
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        co_await dispatcher->subscribe(subscription(url + "/one", event_type::sms_sent));
        co_await dispatcher->subscribe(subscription(url + "/two", event_type::sms_sent));
        co_await dispatcher->subscribe(subscription(url + "/other", event_type::sms_failed));

        auto result = co_await dispatcher->publish(event(event_type::sms_sent),
                                                   std::array{event_type::sms_sent});
        BOOST_TEST(result.deliveries == 2u);
        BOOST_TEST(co_await arrived("/one", 1));
        BOOST_TEST(co_await arrived("/two", 1));
        co_await pause(100ms);
        BOOST_TEST(received["/other"].empty());
        BOOST_TEST(received["/one"][0].body == R"({"n":1})");
        BOOST_TEST(*received["/one"][0].headers.find("RevDesk-Event-Type") == "sms_sent");
        BOOST_TEST((co_await store.load_pending()).empty());
    });
}

BOOST_AUTO_TEST_CASE(transient_failure_is_retried_with_same_id) {
    int calls = 0;
    auto url = receiver(
        [&](http::request const&) -> asio::awaitable<int> { co_return ++calls == 1 ? 503 : 200; });
    revdesk::dispatcher_options options;
    options.retries.schedule = {50ms};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/flaky", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});

        BOOST_TEST_REQUIRE(co_await arrived("/flaky", 2));
        auto const& got = received["/flaky"];
        BOOST_TEST(*got[0].headers.find("webhook-id") == *got[1].headers.find("webhook-id"));
        co_await pause(50ms);
        auto attempts = co_await store.list_attempts(s.id, 10);
        BOOST_TEST_REQUIRE(attempts.size() == 2u);
        BOOST_TEST(attempts[0].status == 200);
        BOOST_TEST(attempts[0].number == 2u);
        BOOST_TEST(attempts[1].status == 503);
    });
}

BOOST_AUTO_TEST_CASE(client_error_is_not_retried) {
    auto url = receiver(always(404));
    revdesk::dispatcher_options options;
    options.retries.schedule = {20ms, 20ms};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/missing", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST(co_await arrived("/missing", 1));
        co_await pause(200ms);
        BOOST_TEST(received["/missing"].size() == 1u);
        BOOST_TEST(dispatcher->subscriptions().find(s.id)->enabled);
    });
}

BOOST_AUTO_TEST_CASE(gone_disables_subscription) {
    auto url = receiver(always(410));
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/gone", event_type::new_call);
        auto kept = subscription(url + "/kept", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST(co_await arrived("/gone", 1));
        co_await pause(50ms);
        BOOST_TEST(!dispatcher->subscriptions().find(s.id)->enabled);

        auto stored = co_await store.load_subscriptions();
        BOOST_TEST_REQUIRE(stored.size() == 1u);
        BOOST_TEST(!stored[0].enabled);

        co_await dispatcher->subscribe(kept);
        auto again = co_await dispatcher->publish(event(event_type::new_call),
                                                  std::array{event_type::new_call});
        BOOST_TEST(again.deliveries == 1u);
    });
}

BOOST_AUTO_TEST_CASE(hanging_receiver_does_not_delay_others) {
    auto hanging = receiver([&](http::request const&) -> asio::awaitable<int> {
        asio::steady_timer never(io, 60s);
        co_await never.async_wait(http::use_nothrow);
        co_return 200;
    });
    auto healthy = receiver(always(200));
    revdesk::dispatcher_options options;
    options.max_per_origin = 4;
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        co_await dispatcher->subscribe(subscription(hanging + "/slow", event_type::sms_sent));
        co_await dispatcher->subscribe(subscription(healthy + "/fast", event_type::sms_failed));
        for (int i = 0; i < 100; ++i) {
            co_await dispatcher->publish(event(event_type::sms_sent),
                                         std::array{event_type::sms_sent});
        }
        co_await pause(50ms);
        BOOST_TEST(received["/slow"].size() == 4u);

        auto started = std::chrono::steady_clock::now();
        co_await dispatcher->publish(event(event_type::sms_failed),
                                     std::array{event_type::sms_failed});
        BOOST_TEST(co_await arrived("/fast", 1, 1s));
        BOOST_TEST((std::chrono::steady_clock::now() - started < 1s));
        BOOST_TEST(dispatcher->in_flight() == 4u);
    });
}

BOOST_AUTO_TEST_CASE(subscriptions_share_an_endpoint_fairly) {
    auto url = receiver([&](http::request const&) -> asio::awaitable<int> {
        asio::steady_timer t(io, 5ms);
        co_await t.async_wait(asio::use_awaitable);
        co_return 200;
    });
    revdesk::dispatcher_options options;
    options.max_per_origin = 1;
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        co_await dispatcher->subscribe(subscription(url + "/busy", event_type::sms_sent));
        co_await dispatcher->subscribe(subscription(url + "/quiet", event_type::sms_failed));
        for (int i = 0; i < 50; ++i) {
            co_await dispatcher->publish(event(event_type::sms_sent),
                                         std::array{event_type::sms_sent});
        }
        co_await dispatcher->publish(event(event_type::sms_failed),
                                     std::array{event_type::sms_failed});

        // Turns alternate between subscriptions, so the quiet one is served long before the busy
        // one's queue drains.
        BOOST_TEST_REQUIRE(co_await arrived("/quiet", 1));
        BOOST_TEST(received["/busy"].size() < 10u);
    });
}

BOOST_AUTO_TEST_CASE(unsubscribe_cancels_waiting_messages) {
    auto url = receiver(always(500));
    revdesk::dispatcher_options options;
    options.retries.schedule = {100ms};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/retrying", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await arrived("/retrying", 1));
        co_await pause(20ms);

        BOOST_TEST(co_await dispatcher->unsubscribe("w", s.id));
        co_await pause(300ms);
        BOOST_TEST(received["/retrying"].size() == 1u);
        BOOST_TEST((co_await store.load_pending()).empty());
    });
}

BOOST_AUTO_TEST_CASE(unsubscribe_needs_same_workspace) {
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription("https://example.com/h", event_type::new_call);
        co_await dispatcher->subscribe(s);
        BOOST_TEST(!co_await dispatcher->unsubscribe("someone-else", s.id));
        BOOST_TEST(dispatcher->subscriptions().find(s.id) != nullptr);
        BOOST_TEST(!co_await dispatcher->unsubscribe("w", "whk_unknown"));
    });
}

BOOST_AUTO_TEST_CASE(start_resumes_pending_deliveries) {
    auto url = receiver(always(200));
    auto s = subscription(url + "/resumed", event_type::contact_created);
    auto e = event(event_type::contact_created, R"({"resumed":true})");
    run(io, [&]() -> asio::awaitable<void> {
        co_await store.insert_subscription(s);
        std::vector<revdesk::delivery> deliveries(1);
        deliveries[0].id = revdesk::new_message_id();
        deliveries[0].event_id = e.id;
        deliveries[0].subscription_id = s.id;
        deliveries[0].type = event_type::contact_created;
        deliveries[0].attempts = 1; // the previous process was in the middle of an attempt
        deliveries[0].next_attempt_at = revdesk::now_ms();
        co_await store.insert_event(e, deliveries);
    });

    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        BOOST_TEST_REQUIRE(co_await arrived("/resumed", 1));
        BOOST_TEST(received["/resumed"][0].body == R"({"resumed":true})");
    });
}

BOOST_AUTO_TEST_CASE(blocked_destination_fails_without_retry) {
    revdesk::dispatcher_options options;
    options.retries.schedule = {20ms};
    policy = revdesk::address_policy{}; // nothing allowed: loopback is refused again
    auto url = receiver(always(200));
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/blocked", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        co_await pause(200ms);
        BOOST_TEST(received["/blocked"].empty());
        auto attempts = co_await store.list_attempts(s.id, 10);
        BOOST_TEST_REQUIRE(attempts.size() == 1u);
        BOOST_TEST(attempts[0].error == "blocked");
    });
}

BOOST_AUTO_TEST_SUITE_END()
