#include <revdesk/dispatcher.hpp>

#define BOOST_TEST_MODULE dispatcher
#include <boost/test/unit_test.hpp>

#include "../support/signature_check.hpp"
#include "../support/test_support.hpp"

#include <revdesk/http/server.hpp>
#include <revdesk/store/memory_store.hpp>
#include <revdesk/store/sqlite_store.hpp>

#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <numeric>

namespace revdesk {
// Prints a state by name in failed checks.
std::ostream& boost_test_print_type(std::ostream& out, delivery_state state) {
    static constexpr char const* names[] = {"pending", "delivered", "failed", "cancelled"};
    return out << names[static_cast<int>(state)];
}
} // namespace revdesk

using namespace std::chrono_literals;
namespace http = revdesk::http;
using revdesk::event_type;
using revdesk::test::run;

namespace {

// A wall clock that moves only when a test moves it. It starts on a whole second, so that HTTP
// dates (whole seconds) computed from it are exact.
struct manual_clock {
    revdesk::unix_ms now = 1'800'000'000'000; // 2027-01-15T08:00:00Z

    revdesk::clock_function function() {
        return [this] { return now; };
    }

    std::chrono::system_clock::time_point time_point() const {
        return std::chrono::system_clock::time_point(std::chrono::milliseconds(now));
    }
};

// What the dispatcher reported through on_attempt.
struct recorded_attempt {
    revdesk::attempt record;
    revdesk::delivery message;
};

// Receivers on loopback ports in the test's own io_context, and a dispatcher aimed at them.
struct fixture {
    asio::io_context io;
    asio::ssl::context tls{asio::ssl::context::tls_client};
    revdesk::address_policy policy;
    revdesk::memory_store store;
    http::resolve_function resolve; // empty: the system resolver
    std::optional<http::client> client;
    std::optional<revdesk::dispatcher> dispatcher;
    std::vector<std::unique_ptr<http::server>> receivers;
    std::map<std::string, std::vector<http::request>> received; // by target
    std::vector<recorded_attempt> recorded;                     // every attempt, in order

    fixture() { policy.allow(*revdesk::cidr::parse("127.0.0.1/32")); }

    ~fixture() {
        for (auto& r : receivers) {
            r->stop();
        }
    }

    // Makes the dispatcher on `target`, or on the memory store when it is null. Every attempt
    // is also appended to `recorded`.
    void make_dispatcher(revdesk::dispatcher_options options = {},
                         revdesk::store* target = nullptr) {
        options.allow_http = true;
        auto hook = std::move(options.on_attempt);
        options.on_attempt = [this, hook](revdesk::attempt const& a, revdesk::delivery const& d,
                                          revdesk::subscription const& s) {
            recorded.push_back({a, d});
            if (hook) {
                hook(a, d, s);
            }
        };
        client.emplace(io.get_executor(), tls, policy, http::client_options{}, resolve);
        dispatcher.emplace(io.get_executor(), target ? *target : store, *client, policy,
                           std::move(options));
    }

    // Starts a receiver whose handler picks the response status. Returns its base URL.
    std::string receiver(std::function<asio::awaitable<int>(http::request const&)> answer) {
        return responder([answer](http::request const& r) -> asio::awaitable<http::response> {
            http::response res;
            res.status = co_await answer(r);
            co_return res;
        });
    }

    // Starts a receiver whose handler builds the whole response; returns its base URL.
    std::string
    responder(std::function<asio::awaitable<http::response>(http::request const&)> respond) {
        auto server = std::make_unique<http::server>(
            io.get_executor(),
            [this, respond](http::request& r,
                            http::request_context const&) -> asio::awaitable<http::response> {
                received[r.target].push_back(r);
                co_return co_await respond(r);
            });
        server->listen({asio::ip::make_address("127.0.0.1"), 0});
        asio::co_spawn(io, server->run(), asio::detached);
        auto url = "http://127.0.0.1:" + std::to_string(server->local_endpoint().port());
        receivers.push_back(std::move(server));
        return url;
    }

    // Starts a receiver that responds with 200 after `delay`. Returns its base URL.
    std::string slow_receiver(std::chrono::milliseconds delay) {
        return receiver([this, delay](http::request const&) -> asio::awaitable<int> {
            asio::steady_timer timer(io, delay);
            co_await timer.async_wait(http::use_nothrow);
            co_return 200;
        });
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

    // Waits until `count` attempts have been recorded, or `limit` passes.
    asio::awaitable<bool> attempts_recorded(std::size_t count,
                                            std::chrono::milliseconds limit = 10s) {
        auto until = std::chrono::steady_clock::now() + limit;
        while (recorded.size() < count && std::chrono::steady_clock::now() < until) {
            co_await pause(5ms);
        }
        co_return recorded.size() >= count;
    }

    // Moves `clock` to `at` and lets the dispatcher see it.
    void set_clock(manual_clock& clock, revdesk::unix_ms at) {
        clock.now = at;
        dispatcher->notify_clock_changed();
    }
};

// A TCP listener on 127.0.0.1 that counts connections and closes each at once. It listens where
// nothing may connect.
struct canary {
    asio::ip::tcp::acceptor acceptor;
    int connections = 0;

    explicit canary(asio::io_context& io)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}) {
        asio::co_spawn(io, watch(), asio::detached);
    }

    std::uint16_t port() const { return acceptor.local_endpoint().port(); }

    asio::awaitable<void> watch() {
        while (acceptor.is_open()) {
            auto [ec, socket] = co_await acceptor.async_accept(http::use_nothrow);
            if (ec) {
                co_return;
            }
            ++connections;
        }
    }

    ~canary() {
        std::error_code ignored;
        acceptor.close(ignored);
    }
};

// One raw request as it came off the socket: the header section and the body bytes.
struct raw_request {
    std::string head;
    std::string body;

    // Returns the value of the header field `name` (exact case, as the dispatcher writes it).
    std::string field(std::string_view name) const {
        auto at = head.find("\r\n" + std::string(name) + ": ");
        if (at == std::string::npos) {
            return {};
        }
        auto start = at + 4 + name.size();
        return head.substr(start, head.find("\r\n", start) - start);
    }
};

// A receiver that does not parse HTTP with the library: it reads the bytes up to the blank line,
// then Content-Length bytes of body, keeps them, and responds with 200.
struct wire_capture {
    asio::ip::tcp::acceptor acceptor;
    std::vector<raw_request> requests;

    explicit wire_capture(asio::io_context& io)
        : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}) {
        asio::co_spawn(io, serve(), asio::detached);
    }

    std::uint16_t port() const { return acceptor.local_endpoint().port(); }

    asio::awaitable<void> serve() {
        while (acceptor.is_open()) {
            auto [ec, socket] = co_await acceptor.async_accept(http::use_nothrow);
            if (ec) {
                co_return;
            }
            asio::co_spawn(acceptor.get_executor(), one_connection(std::move(socket)),
                           asio::detached);
        }
    }

    asio::awaitable<void> one_connection(asio::ip::tcp::socket socket) {
        std::string buffer;
        while (true) {
            auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer),
                                                           "\r\n\r\n", http::use_nothrow);
            if (ec) {
                co_return;
            }
            raw_request r;
            r.head = buffer.substr(0, n);
            buffer.erase(0, n);
            auto length = std::stoul(r.field("Content-Length"));
            while (buffer.size() < length) {
                std::string chunk(length - buffer.size(), '\0');
                auto [read_error, got] =
                    co_await socket.async_read_some(asio::buffer(chunk), http::use_nothrow);
                if (read_error) {
                    co_return;
                }
                buffer.append(chunk, 0, got);
            }
            r.body = buffer.substr(0, length);
            buffer.erase(0, length);
            requests.push_back(std::move(r));
            std::string_view ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            auto [write_error, written] =
                co_await asio::async_write(socket, asio::buffer(ok), http::use_nothrow);
            if (write_error) {
                co_return;
            }
        }
    }

    ~wire_capture() {
        std::error_code ignored;
        acceptor.close(ignored);
    }
};

// Returns a stub resolver that returns `answers[i]` at its i-th call (the last one again after
// that) and counts the calls in `calls`.
http::resolve_function scripted_resolver(std::vector<std::vector<std::string>> answers,
                                         int& calls) {
    return
        [answers, &calls](std::string const&,
                          std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
            auto const& now = answers[std::min<std::size_t>(calls, answers.size() - 1)];
            ++calls;
            ec = {};
            std::vector<asio::ip::address> out;
            for (auto const& text : now) {
                out.push_back(asio::ip::make_address(text));
            }
            co_return out;
        };
}

// A store that passes every call to another, except that update_subscription can be made to
// throw and record_attempt to wait, as a store whose database fails or stalls would.
struct controlled_store final : revdesk::store {
    controlled_store(asio::io_context& io, revdesk::store& inner)
        : inner(inner)
        , gate(io, asio::steady_timer::time_point::max()) {}

    revdesk::store& inner;
    bool fail = false;         // update_subscription throws
    bool hold_records = false; // record_attempt waits until release_records()
    std::size_t records_held = 0;
    asio::steady_timer gate;

    void release_records() {
        hold_records = false;
        gate.cancel();
    }

    asio::awaitable<bool> update_subscription(revdesk::subscription const& s) override {
        if (fail) {
            throw std::runtime_error("the database is unavailable");
        }
        co_return co_await inner.update_subscription(s);
    }

    asio::awaitable<void> insert_subscription(revdesk::subscription const& s) override {
        return inner.insert_subscription(s);
    }
    asio::awaitable<bool> erase_subscription(std::string_view w, std::string_view id) override {
        return inner.erase_subscription(w, id);
    }
    asio::awaitable<std::vector<revdesk::subscription>> load_subscriptions() override {
        return inner.load_subscriptions();
    }
    asio::awaitable<void> insert_event(revdesk::event const& e,
                                       std::vector<revdesk::delivery> const& d) override {
        return inner.insert_event(e, d);
    }
    asio::awaitable<std::optional<revdesk::event>> find_event(std::string_view w,
                                                              std::string_view id) override {
        return inner.find_event(w, id);
    }
    asio::awaitable<std::optional<revdesk::event>>
    find_event_by_idempotency_key(std::string_view w, std::string_view key,
                                  revdesk::unix_ms not_before) override {
        return inner.find_event_by_idempotency_key(w, key, not_before);
    }
    asio::awaitable<std::size_t> release_idempotency_keys(revdesk::unix_ms before) override {
        return inner.release_idempotency_keys(before);
    }
    asio::awaitable<std::vector<revdesk::delivery>> list_deliveries(std::string_view id) override {
        return inner.list_deliveries(id);
    }
    asio::awaitable<void> insert_deliveries(std::vector<revdesk::delivery> const& d) override {
        return inner.insert_deliveries(d);
    }
    asio::awaitable<void> record_attempt(revdesk::attempt const& a,
                                         revdesk::delivery const& d) override {
        if (hold_records) {
            ++records_held;
            co_await gate.async_wait(http::use_nothrow);
            --records_held;
        }
        co_await inner.record_attempt(a, d);
    }
    asio::awaitable<std::vector<revdesk::pending_delivery>> load_pending() override {
        return inner.load_pending();
    }
    asio::awaitable<std::vector<revdesk::attempt>> list_attempts(std::string_view id,
                                                                 std::size_t limit) override {
        return inner.list_attempts(id, limit);
    }
    asio::awaitable<revdesk::attempt_page>
    list_attempts_page(std::string_view id, std::size_t limit,
                       std::optional<std::string> const& cursor) override {
        return inner.list_attempts_page(id, limit, cursor);
    }
    asio::awaitable<void> insert_key(revdesk::api_key const& key) override {
        return inner.insert_key(key);
    }
    asio::awaitable<std::vector<revdesk::api_key>> load_keys() override {
        return inner.load_keys();
    }
    asio::awaitable<bool> revoke_key(std::string_view id) override {
        return inner.revoke_key(id);
    }
    asio::awaitable<std::size_t> purge_before(revdesk::unix_ms cutoff) override {
        return inner.purge_before(cutoff);
    }
    asio::awaitable<bool> ping() override { return inner.ping(); }
};

// Starts the fixture's dispatcher with one subscription to `url` + "/hook", makes `slow` hold
// every record from then on, and publishes `count` events to the subscription.
asio::awaitable<void> publish_with_records_held(fixture& f, controlled_store& slow,
                                               std::string const& url, int count) {
    co_await f.dispatcher->start();
    co_await f.dispatcher->subscribe(f.subscription(url + "/hook", event_type::sms_sent));
    slow.hold_records = true;
    for (int i = 0; i < count; ++i) {
        co_await f.dispatcher->publish(fixture::event(event_type::sms_sent),
                                       std::array{event_type::sms_sent});
    }
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(dispatching, fixture)

BOOST_AUTO_TEST_CASE(update_moves_next_attempts_to_new_url_and_secret) {
    auto url = receiver(always(200));
    make_dispatcher();
    auto old_secret = std::string();
    auto new_secret = revdesk::new_signing_secret();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/before", event_type::sms_sent);
        old_secret = s.secret;
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::sms_sent), std::array{event_type::sms_sent});
        BOOST_TEST(co_await arrived("/before", 1));

        // The first attempt prepared the subscription's route, which the update must replace.
        s.webhook_url = url + "/after";
        s.secret = new_secret;
        BOOST_TEST(co_await dispatcher->update_subscription(s));
        co_await dispatcher->publish(event(event_type::sms_sent), std::array{event_type::sms_sent});
        BOOST_TEST(co_await arrived("/after", 1));
        co_await pause(100ms);
    });

    BOOST_TEST(received["/before"].size() == 1u);
    BOOST_TEST(received["/after"].size() == 1u);
    auto now = std::chrono::system_clock::now();
    auto const& before = received["/before"].front();
    auto const& after = received["/after"].front();
    BOOST_TEST(!revdesk::verify(old_secret, before.headers, before.body, now));
    BOOST_TEST(!revdesk::verify(new_secret, after.headers, after.body, now));
    BOOST_TEST(revdesk::verify(old_secret, after.headers, after.body, now) ==
               revdesk::verify_error::no_matching_signature);
}

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
        // Four attempts hang and the other 96 messages wait for the origin's slots.
        BOOST_TEST_REQUIRE(co_await arrived("/slow", 4));
        co_await pause(50ms);
        BOOST_TEST(received["/slow"].size() == 4u);
        BOOST_TEST(dispatcher->queued() == 96u);

        auto started = std::chrono::steady_clock::now();
        co_await dispatcher->publish(event(event_type::sms_failed),
                                     std::array{event_type::sms_failed});
        BOOST_TEST(co_await arrived("/fast", 1, 1s));
        BOOST_TEST((std::chrono::steady_clock::now() - started < 1s));
        // Once the fast attempt is recorded, only the four hanging ones are left in flight.
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
        BOOST_TEST(dispatcher->in_flight() == 4u);
    });
}

BOOST_AUTO_TEST_CASE(slot_is_free_while_store_records) {
    auto url = receiver(always(200));
    controlled_store slow(io, store);
    revdesk::dispatcher_options options;
    options.max_in_flight = 1;
    make_dispatcher(options, &slow);
    run(io, [&]() -> asio::awaitable<void> {
        co_await publish_with_records_held(*this, slow, url, 3);
        // One slot serves all three while none of them is recorded yet.
        BOOST_TEST_REQUIRE(co_await arrived("/hook", 3));
        BOOST_TEST(recorded.empty());
        BOOST_TEST(dispatcher->in_flight() == 3u);

        slow.release_records();
        BOOST_TEST_REQUIRE(co_await attempts_recorded(3));
        BOOST_TEST(dispatcher->in_flight() == 0u);
        BOOST_TEST(co_await dispatcher->drain(1s) == 0u);
    });
}

BOOST_AUTO_TEST_CASE(unrecorded_attempts_keep_slots_past_limit) {
    auto url = receiver(always(200));
    controlled_store slow(io, store);
    revdesk::dispatcher_options options;
    options.max_in_flight = 1;
    options.max_unrecorded = 1;
    make_dispatcher(options, &slow);
    run(io, [&]() -> asio::awaitable<void> {
        co_await publish_with_records_held(*this, slow, url, 3);
        // The first attempt waits for the store without its slot. The second keeps the slot
        // while it waits, so the third is not sent.
        BOOST_TEST_REQUIRE(co_await arrived("/hook", 2));
        co_await pause(100ms);
        BOOST_TEST(received["/hook"].size() == 2u);
        BOOST_TEST(slow.records_held == 2u);
        BOOST_TEST(dispatcher->queued() == 1u);

        slow.release_records();
        BOOST_TEST_REQUIRE(co_await attempts_recorded(3));
        BOOST_TEST(received["/hook"].size() == 3u);
    });
}

BOOST_AUTO_TEST_CASE(queued_messages_of_deleted_subscription_end) {
    // Messages whose subscription is gone end without suspending. Each one that ends gives its
    // slot to the next, so thousands of them must not nest one inside the other.
    auto url = slow_receiver(60s);
    revdesk::dispatcher_options options;
    options.max_per_origin = 2;
    options.attempt_timeout = 500ms;
    options.retries.schedule = {std::chrono::hours(1)};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        co_await dispatcher->subscribe(subscription(url + "/slow", event_type::sms_sent));
        auto deleted = subscription(url + "/deleted", event_type::sms_failed);
        co_await dispatcher->subscribe(deleted);
        for (int i = 0; i < 2; ++i) {
            co_await dispatcher->publish(event(event_type::sms_sent),
                                         std::array{event_type::sms_sent});
        }
        BOOST_TEST_REQUIRE(co_await arrived("/slow", 2));
        constexpr std::size_t waiting = 20'000;
        for (std::size_t i = 0; i < waiting; ++i) {
            co_await dispatcher->publish(event(event_type::sms_failed),
                                         std::array{event_type::sms_failed});
        }
        BOOST_TEST_REQUIRE(dispatcher->queued() == waiting);
        BOOST_TEST(co_await dispatcher->unsubscribe("w", deleted.id));

        // The two slow attempts time out and free their slots, and wait an hour for their retry.
        BOOST_TEST_REQUIRE(co_await attempts_recorded(2));
        auto until = std::chrono::steady_clock::now() + 10s;
        while (dispatcher->queued() > 2 && std::chrono::steady_clock::now() < until) {
            co_await pause(10ms);
        }
        BOOST_TEST(dispatcher->queued() == 2u);
        BOOST_TEST(received["/deleted"].empty());
        BOOST_TEST(co_await dispatcher->drain(1s) == 0u);
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

BOOST_AUTO_TEST_CASE(clock_runs_default_schedule_to_failed) {
    // The whole default schedule (ten attempts over about three days) under an injected clock,
    // in the SQLite store, so that the failed delivery can be read back from the file.
    revdesk::test::temp_dir dir;
    auto database = dir.file("dispatcher.db");
    revdesk::sqlite_store durable(database);
    manual_clock clock;
    auto url = receiver(always(503));
    revdesk::dispatcher_options options;
    options.clock = clock.function();
    make_dispatcher(options, &durable);

    auto schedule = revdesk::retry_policy::default_schedule();
    BOOST_TEST_REQUIRE(schedule.size() == 9u);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/down", event_type::new_call);
        co_await dispatcher->subscribe(s);
        auto published_at = clock.now;
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});

        for (std::size_t retry = 0; retry < schedule.size(); ++retry) {
            BOOST_TEST_CONTEXT("attempt " << retry + 1) {
                BOOST_TEST_REQUIRE(co_await attempts_recorded(retry + 1));
                auto const& [a, d] = recorded.back();
                BOOST_TEST(a.started_at == clock.now);
                BOOST_TEST(*received["/down"].back().headers.find("webhook-timestamp") ==
                           std::to_string(clock.now / 1000));
                BOOST_TEST(d.state == revdesk::delivery_state::pending);
                BOOST_TEST(d.attempts == retry + 1);

                // The delay is the scheduled one times a jitter factor in [0.8, 1.2].
                auto delay = d.next_attempt_at - clock.now;
                auto base = schedule[retry].count();
                BOOST_TEST(delay >= base * 8 / 10);
                BOOST_TEST(delay <= base * 12 / 10);

                // Nothing happens one millisecond early.
                auto next = d.next_attempt_at;
                set_clock(clock, next - 1);
                co_await pause(50ms);
                BOOST_TEST(received["/down"].size() == retry + 1);
                set_clock(clock, next);
                BOOST_TEST_REQUIRE(co_await arrived("/down", retry + 2));
            }
        }

        BOOST_TEST_REQUIRE(co_await attempts_recorded(10));
        auto const& last = recorded.back().message;
        BOOST_TEST(last.state == revdesk::delivery_state::failed);
        BOOST_TEST(last.attempts == 10u);

        // The attempts span the schedule: 75 h 35 min 5 s without jitter.
        auto total = std::accumulate(schedule.begin(), schedule.end(), 0ms).count();
        auto spent = clock.now - published_at;
        BOOST_TEST(spent >= total * 8 / 10);
        BOOST_TEST(spent <= total * 12 / 10);

        // A month later nothing more has been attempted, and the delivery is kept as failed.
        set_clock(clock, clock.now + std::chrono::milliseconds(std::chrono::days(30)).count());
        co_await pause(100ms);
        BOOST_TEST(received["/down"].size() == 10u);
        BOOST_TEST((co_await durable.load_pending()).empty());
        BOOST_TEST((co_await durable.list_attempts(s.id, 100)).size() == 10u);
    });
    BOOST_TEST(revdesk::test::shell("sqlite3 " + database +
                                    " 'select state, attempts from deliveries'") == "failed|10\n");
}

BOOST_AUTO_TEST_CASE(retry_after_sets_next_attempt) {
    using std::chrono::hours;
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    manual_clock clock;
    struct row {
        std::string name;
        int status;
        std::string retry_after;              // sent as is, unless date_from_now is set
        std::optional<seconds> date_from_now; // send the HTTP date this far from the clock
        milliseconds delay;                   // expected next_attempt_at - now
    };
    auto scheduled = milliseconds(std::chrono::minutes(5));
    std::vector<row> rows{
        {"429 with seconds", 429, "120", {}, seconds(120)},
        {"503 with seconds", 503, "120", {}, seconds(120)},
        {"503 with a date", 503, "", seconds(600), seconds(600)},
        {"429 with a date", 429, "", hours(3), hours(3)},
        {"past date raised to the minimum", 429, "", seconds(-60), seconds(1)},
        {"zero raised to the minimum", 429, "0", {}, seconds(1)},
        {"ten days cut to the maximum", 503, "864000", {}, hours(24)},
        {"ignored on 500", 500, "120", {}, scheduled},
        {"invalid value", 429, "soon", {}, scheduled},
        {"obsolete RFC 850 date", 503, "Sunday, 06-Nov-94 08:49:37 GMT", {}, scheduled},
    };

    std::map<std::string, row const*> by_path;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        by_path["/r" + std::to_string(i)] = &rows[i];
    }
    auto url = responder([&](http::request const& r) -> asio::awaitable<http::response> {
        http::response res;
        res.status = 200;
        auto const* wanted = by_path.at(r.target);
        if (received[r.target].size() == 1) {
            res.status = wanted->status;
            res.headers.add("Retry-After", wanted->date_from_now
                                               ? revdesk::test::http_date(clock.time_point() +
                                                                          *wanted->date_from_now)
                                               : wanted->retry_after);
        }
        co_return res;
    });

    revdesk::dispatcher_options options;
    options.clock = clock.function();
    options.retries.schedule = {scheduled};
    options.retries.jitter = 0;
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        for (std::size_t i = 0; i < rows.size(); ++i) {
            auto const& r = rows[i];
            auto path = "/r" + std::to_string(i);
            BOOST_TEST_CONTEXT(r.name) {
                co_await dispatcher->subscribe(subscription(url + path, event_type::new_call));
                auto before = recorded.size();
                co_await dispatcher->publish(event(event_type::new_call),
                                             std::array{event_type::new_call});
                BOOST_TEST_REQUIRE(co_await attempts_recorded(before + 1));
                auto const& d = recorded.back().message;
                BOOST_TEST(recorded.back().record.status == r.status);
                BOOST_TEST(d.state == revdesk::delivery_state::pending);
                BOOST_TEST(d.next_attempt_at - clock.now == r.delay.count());

                auto next = d.next_attempt_at;
                set_clock(clock, next - 1);
                co_await pause(50ms);
                BOOST_TEST(received[path].size() == 1u);
                set_clock(clock, next);
                BOOST_TEST_REQUIRE(co_await arrived(path, 2));
                BOOST_TEST_REQUIRE(co_await attempts_recorded(before + 2));
                BOOST_TEST(recorded.back().message.state == revdesk::delivery_state::delivered);
                co_await dispatcher->unsubscribe("w", recorded.back().message.subscription_id);
            }
        }
    });
}

BOOST_AUTO_TEST_CASE(error_statuses_keep_subscription_enabled) {
    manual_clock clock;
    auto url = responder([&](http::request const& r) -> asio::awaitable<http::response> {
        http::response res;
        res.status = r.target == "/missing" ? 404 : 500;
        co_return res;
    });
    revdesk::dispatcher_options options;
    options.clock = clock.function();
    options.retries.schedule = {1min, 1min};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto missing = subscription(url + "/missing", event_type::new_call);
        auto broken = subscription(url + "/broken", event_type::new_call);
        co_await dispatcher->subscribe(missing);
        co_await dispatcher->subscribe(broken);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(2));

        std::map<std::string, revdesk::delivery> by_subscription;
        for (auto const& r : recorded) {
            by_subscription[r.message.subscription_id] = r.message;
        }
        BOOST_TEST(by_subscription[missing.id].state == revdesk::delivery_state::failed);
        BOOST_TEST(by_subscription[broken.id].state == revdesk::delivery_state::pending);

        // The 500 is retried, the 404 is not.
        set_clock(clock, clock.now + 2 * 60'000);
        BOOST_TEST_REQUIRE(co_await arrived("/broken", 2));
        co_await pause(50ms);
        BOOST_TEST(received["/missing"].size() == 1u);

        for (auto const& s : {missing, broken}) {
            BOOST_TEST_CONTEXT(s.webhook_url) {
                BOOST_TEST(dispatcher->subscriptions().find(s.id)->enabled);
            }
        }
        for (auto const& s : co_await store.load_subscriptions()) {
            BOOST_TEST_CONTEXT(s.webhook_url) {
                BOOST_TEST(s.enabled);
            }
        }
    });
}

BOOST_AUTO_TEST_CASE(gone_disables_only_its_subscription) {
    auto url = responder([&](http::request const& r) -> asio::awaitable<http::response> {
        http::response res;
        res.status = r.target == "/gone" ? 410 : 200;
        co_return res;
    });
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        // Same origin and same event type: only the receiver's response differs.
        auto gone = subscription(url + "/gone", event_type::new_call);
        auto kept = subscription(url + "/kept", event_type::new_call);
        co_await dispatcher->subscribe(gone);
        co_await dispatcher->subscribe(kept);
        auto first = co_await dispatcher->publish(event(event_type::new_call),
                                                  std::array{event_type::new_call});
        BOOST_TEST(first.deliveries == 2u);
        BOOST_TEST_REQUIRE(co_await attempts_recorded(2));
        BOOST_TEST(!dispatcher->subscriptions().find(gone.id)->enabled);
        BOOST_TEST(dispatcher->subscriptions().find(kept.id)->enabled);

        auto second = co_await dispatcher->publish(event(event_type::new_call),
                                                   std::array{event_type::new_call});
        BOOST_TEST(second.deliveries == 1u);
        BOOST_TEST_REQUIRE(co_await arrived("/kept", 2));
        co_await pause(50ms);
        BOOST_TEST(received["/gone"].size() == 1u);

        for (auto const& s : co_await store.load_subscriptions()) {
            BOOST_TEST_CONTEXT(s.webhook_url) {
                BOOST_TEST(s.enabled == (s.id == kept.id));
            }
        }
    });
}

BOOST_AUTO_TEST_CASE(unsubscribe_cancels_scheduled_retry) {
    manual_clock clock;
    auto url = receiver(always(500));
    revdesk::dispatcher_options options;
    options.clock = clock.function();
    options.retries.schedule = {1min};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/retrying", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
        BOOST_TEST(recorded[0].message.state == revdesk::delivery_state::pending);
        BOOST_TEST(dispatcher->queued() == 1u);

        BOOST_TEST(co_await dispatcher->unsubscribe("w", s.id));
        BOOST_TEST((co_await store.load_pending()).empty());
        set_clock(clock, recorded[0].message.next_attempt_at + 1);
        co_await pause(100ms);
        BOOST_TEST(received["/retrying"].size() == 1u);
        BOOST_TEST(recorded.size() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(unsubscribe_during_attempt_cancels_message) {
    // The receiver holds the first attempt until the test releases it, after the DELETE.
    asio::steady_timer release(io, std::chrono::steady_clock::time_point::max());
    auto url = receiver([&](http::request const&) -> asio::awaitable<int> {
        co_await release.async_wait(http::use_nothrow);
        co_return 500;
    });
    manual_clock clock;
    revdesk::dispatcher_options options;
    options.clock = clock.function();
    options.retries.schedule = {1min};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/held", event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await arrived("/held", 1));
        BOOST_TEST(dispatcher->in_flight() == 1u);

        BOOST_TEST(co_await dispatcher->unsubscribe("w", s.id));
        release.cancel();
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
        // The 500 would schedule a retry; the deleted subscription turns it into a cancellation
        // instead of putting the message back to pending in the store.
        BOOST_TEST(recorded[0].record.status == 500);
        BOOST_TEST(recorded[0].message.state == revdesk::delivery_state::cancelled);
        BOOST_TEST((co_await store.load_pending()).empty());
        BOOST_TEST(dispatcher->queued() == 0u);
        set_clock(clock, clock.now + 2 * 60'000);
        co_await pause(100ms);
        BOOST_TEST(received["/held"].size() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(destination_check_resolves_names) {
    using problem = revdesk::url_problem;
    struct row {
        std::string name;
        std::vector<std::string> answer;
        bool accepted;
        std::string message_part;
    };
    std::vector<row> rows{
        {"one public address", {"8.8.8.8"}, true, ""},
        {"two public addresses", {"8.8.8.8", "2001:4860:4860::8888"}, true, ""},
        {"public then private", {"8.8.8.8", "10.1.2.3"}, false, "Private-Use (10.0.0.0/8)"},
        {"private then public", {"192.168.1.1", "8.8.8.8"}, false, "Private-Use (192.168.0.0/16)"},
        {"loopback", {"127.0.0.1"}, false, "Loopback (127.0.0.0/8)"},
        {"IPv6 loopback", {"::1"}, false, "Loopback Address (::1/128)"},
        {"mapped metadata address",
         {"8.8.8.8", "::ffff:169.254.169.254"},
         false,
         "Link Local (169.254.0.0/16)"},
        {"no addresses", {}, false, "could not resolve the host hooks.example.com"},
    };
    revdesk::address_policy nothing_allowed;
    for (auto const& r : rows) {
        BOOST_TEST_CONTEXT(r.name) {
            int calls = 0;
            auto stub = scripted_resolver({r.answer}, calls);
            run(io, [&]() -> asio::awaitable<void> {
                auto checked = co_await revdesk::check_webhook_destination(
                    "https://hooks.example.com/h", false, nothing_allowed, stub);
                BOOST_TEST(calls == 1);
                BOOST_TEST(std::holds_alternative<revdesk::webhook_target>(checked) == r.accepted);
                if (auto* p = std::get_if<problem>(&checked)) {
                    BOOST_TEST(p->message.find(r.message_part) != std::string::npos, p->message);
                    // The resolved addresses stay out of the message (::1 is also a range name).
                    for (auto const& address : r.answer) {
                        if (r.message_part.find(address) == std::string::npos) {
                            BOOST_TEST(p->message.find(address) == std::string::npos, p->message);
                        }
                    }
                }
            });
        }
    }

    run(io, [&]() -> asio::awaitable<void> {
        // An allowed range passes; an IP literal is never resolved.
        revdesk::address_policy loopback_allowed;
        loopback_allowed.allow(*revdesk::cidr::parse("127.0.0.0/8"));
        int calls = 0;
        auto stub = scripted_resolver({{"127.0.0.1"}}, calls);
        auto named = co_await revdesk::check_webhook_destination("https://hooks.example.com/h",
                                                                 false, loopback_allowed, stub);
        BOOST_TEST(std::holds_alternative<revdesk::webhook_target>(named));
        auto literal = co_await revdesk::check_webhook_destination("https://127.0.0.1/h", false,
                                                                   loopback_allowed, stub);
        BOOST_TEST(std::holds_alternative<revdesk::webhook_target>(literal));
        BOOST_TEST(calls == 1);

        // A name that does not exist, and a resolver that does not return in time.
        http::resolve_function missing =
            [](std::string const&,
               std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
            ec = asio::error::host_not_found;
            co_return std::vector<asio::ip::address>{};
        };
        auto unknown = co_await revdesk::check_webhook_destination("https://hooks.example.com/h",
                                                                   false, nothing_allowed, missing);
        BOOST_TEST_REQUIRE(std::holds_alternative<problem>(unknown));
        BOOST_TEST(std::get<problem>(unknown).message.find("could not resolve") !=
                   std::string::npos);

        http::resolve_function slow =
            [this](std::string const&,
                   std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
            asio::steady_timer wait(io, 10s);
            auto [cancelled] = co_await wait.async_wait(http::use_nothrow);
            ec = cancelled;
            co_return std::vector<asio::ip::address>{asio::ip::make_address("8.8.8.8")};
        };
        auto started = std::chrono::steady_clock::now();
        auto late = co_await revdesk::check_webhook_destination(
            "https://hooks.example.com/h", false, nothing_allowed, slow, 100ms);
        BOOST_TEST((std::chrono::steady_clock::now() - started < 5s));
        BOOST_TEST_REQUIRE(std::holds_alternative<problem>(late));
        BOOST_TEST(std::get<problem>(late).message.find("timed out") != std::string::npos);
    });
}

BOOST_AUTO_TEST_CASE(rebound_name_is_blocked_at_delivery) {
    // The name resolves to a public address when the subscription is checked, then to loopback
    // when the delivery connects (DNS rebinding). Nothing is allowed, so loopback is rejected.
    canary target(io);
    policy = revdesk::address_policy{};
    int calls = 0;
    resolve = scripted_resolver({{"8.8.8.8"}, {"127.0.0.1"}}, calls);
    revdesk::dispatcher_options options;
    options.retries.schedule = {20ms, 20ms};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto url = "http://rebind.example.com:" + std::to_string(target.port()) + "/h";
        auto checked = co_await revdesk::check_webhook_destination(url, true, policy, resolve);
        BOOST_TEST_REQUIRE(std::holds_alternative<revdesk::webhook_target>(checked));
        BOOST_TEST(calls == 1);

        auto s = subscription(url, event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
        co_await pause(200ms);

        BOOST_TEST(calls == 2);
        BOOST_TEST(target.connections == 0);
        BOOST_TEST_REQUIRE(recorded.size() == 1u);
        BOOST_TEST(recorded[0].record.error == "blocked");
        BOOST_TEST(recorded[0].record.status == 0);
        BOOST_TEST(recorded[0].message.state == revdesk::delivery_state::failed);
        auto attempts = co_await store.list_attempts(s.id, 10);
        BOOST_TEST_REQUIRE(attempts.size() == 1u);
        BOOST_TEST(attempts[0].error == "blocked");
    });
}

BOOST_AUTO_TEST_CASE(mixed_answer_is_blocked_at_delivery) {
    // Loopback is allowed here, so only the private second address blocks the name.
    canary target(io);
    int calls = 0;
    resolve = scripted_resolver({{"127.0.0.1", "10.9.8.7"}}, calls);
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription("http://mixed.example.com:" + std::to_string(target.port()) + "/h",
                              event_type::new_call);
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
        co_await pause(100ms);
        BOOST_TEST(target.connections == 0);
        BOOST_TEST(recorded[0].record.error == "blocked");
        BOOST_TEST(recorded[0].message.state == revdesk::delivery_state::failed);
    });
}

BOOST_AUTO_TEST_CASE(redirect_is_not_followed) {
    canary elsewhere(io);
    std::map<std::string, std::string> locations{
        {"/metadata", "http://169.254.169.254/"},
        {"/loopback", "http://127.0.0.1:" + std::to_string(elsewhere.port()) + "/"},
    };
    auto url = responder([&](http::request const& r) -> asio::awaitable<http::response> {
        http::response res;
        res.status = 307;
        res.headers.add("Location", locations.at(r.target));
        co_return res;
    });
    revdesk::dispatcher_options options;
    options.retries.schedule = {20ms, 20ms};
    make_dispatcher(options);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        for (auto const& [path, location] : locations) {
            co_await dispatcher->subscribe(subscription(url + path, event_type::new_call));
        }
        co_await dispatcher->publish(event(event_type::new_call), std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(2));
        co_await pause(200ms);

        BOOST_TEST(recorded.size() == 2u);
        for (auto const& r : recorded) {
            BOOST_TEST_CONTEXT(r.message.subscription_id) {
                BOOST_TEST(r.record.status == 307);
                BOOST_TEST(r.record.error.empty());
                BOOST_TEST(r.message.state == revdesk::delivery_state::failed);
            }
        }
        for (auto const& [path, location] : locations) {
            BOOST_TEST_CONTEXT(path) {
                BOOST_TEST(received[path].size() == 1u);
            }
        }
        BOOST_TEST(elsewhere.connections == 0);
        BOOST_TEST((co_await store.load_pending()).empty());
    });
}

BOOST_AUTO_TEST_CASE(signed_bytes_are_wire_bytes) {
    // Raw U+2028 (E2 80 A8), an escaped one, non-ASCII letters, an emoji, "</x>", a fraction
    // and an integer, spread over lines with odd spacing. The dispatcher does not validate
    // payloads, so the fraction can be a JSON number here.
    std::string const payload =
        "{\n  \"text\" : \"Zo\xC3\xAB \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80"
        " </x> raw\xE2\x80\xA8sep escaped\\u2028sep\",\n"
        "  \"ratio\":0.1, \"id\":4821 ,\"same\":0.10}";
    manual_clock clock;
    wire_capture capture(io);
    revdesk::dispatcher_options options;
    options.clock = clock.function();
    make_dispatcher(options);
    auto s = subscription("http://127.0.0.1:" + std::to_string(capture.port()) + "/wire",
                          event_type::new_call);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::new_call, payload),
                                     std::array{event_type::new_call});
        BOOST_TEST_REQUIRE(co_await attempts_recorded(1));
    });

    BOOST_TEST_REQUIRE(capture.requests.size() == 1u);
    auto const& got = capture.requests[0];
    BOOST_TEST(got.body == payload);
    BOOST_TEST(got.field("Content-Length") == std::to_string(payload.size()));
    BOOST_TEST(got.field("webhook-id") == recorded[0].message.id);
    BOOST_TEST(got.field("webhook-timestamp") == std::to_string(clock.now / 1000));
    auto expected = revdesk::test::python_signature(s.secret, got.field("webhook-id"),
                                                    got.field("webhook-timestamp"), got.body);
    BOOST_TEST(got.field("webhook-signature") == expected);
}

BOOST_AUTO_TEST_CASE(malformed_secret_fails_the_attempt) {
    auto url = receiver(always(200));
    make_dispatcher();
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription(url + "/bad-secret", event_type::sms_sent);
        s.secret = "whsec_%%";
        co_await dispatcher->subscribe(s);
        co_await dispatcher->publish(event(event_type::sms_sent), std::array{event_type::sms_sent});
        BOOST_TEST(co_await attempts_recorded(1));
        co_await pause(50ms);
        BOOST_TEST((co_await store.load_pending()).empty());
    });

    BOOST_TEST(received["/bad-secret"].empty());
    BOOST_TEST_REQUIRE(recorded.size() == 1u);
    BOOST_TEST(recorded[0].record.error == "blocked");
    BOOST_TEST(recorded[0].record.response_body.find("could not be built") != std::string::npos);
    BOOST_TEST((recorded[0].message.state == revdesk::delivery_state::failed));
}

BOOST_AUTO_TEST_CASE(user_agent_with_control_character_rejected) {
    revdesk::dispatcher_options options;
    options.user_agent = "revdesk\r\nX-Injected: 1";
    BOOST_CHECK_THROW(make_dispatcher(options), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(failed_disable_keeps_subscription_enabled) {
    controlled_store failing(io, store);
    make_dispatcher({}, &failing);
    run(io, [&]() -> asio::awaitable<void> {
        co_await dispatcher->start();
        auto s = subscription("http://127.0.0.1:9/x", event_type::sms_sent);
        co_await dispatcher->subscribe(s);

        failing.fail = true;
        auto off = s;
        off.enabled = false;
        bool threw = false;
        try {
            co_await dispatcher->update_subscription(off);
        } catch (std::runtime_error const&) {
            threw = true;
        }
        BOOST_TEST(threw);
        auto indexed = dispatcher->subscriptions().find(s.id);
        BOOST_TEST_REQUIRE(indexed != nullptr);
        BOOST_TEST(indexed->enabled);
    });
}

BOOST_AUTO_TEST_SUITE_END()
