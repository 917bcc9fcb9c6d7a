#include <revdesk/http/client.hpp>
#include <revdesk/http/server.hpp>

#define BOOST_TEST_MODULE http_exchange
#include <boost/test/unit_test.hpp>

#include "../support/test_support.hpp"

#include <asio/read.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

using namespace std::chrono_literals;
namespace http = revdesk::http;
using revdesk::test::run;

namespace {

auto const loopback = asio::ip::make_address("127.0.0.1");

revdesk::address_policy allow_loopback() {
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("127.0.0.1/32"));
    return policy;
}

revdesk::webhook_target target_for(std::string scheme, std::string host, std::uint16_t port,
                                   bool is_ip) {
    revdesk::webhook_target t;
    t.scheme = std::move(scheme);
    t.host = std::move(host);
    t.port = port;
    t.target = "/hook";
    t.host_is_ip = is_ip;
    return t;
}

http::request post(std::string body) {
    http::request r;
    r.method = "POST";
    r.target = "/hook";
    r.headers.add("Content-Type", "application/json");
    r.body = std::move(body);
    return r;
}

// Resolves every name to 127.0.0.1.
http::resolve_function resolve_to_loopback() {
    return [](std::string const&,
              std::error_code&) -> asio::awaitable<std::vector<asio::ip::address>> {
        co_return std::vector<asio::ip::address>{loopback};
    };
}

http::response ok(std::string body) {
    http::response r;
    r.status = 200;
    r.body = std::move(body);
    return r;
}

// A server on a loopback port, running until the fixture ends.
struct serving {
    asio::io_context& io;
    http::server server;

    serving(asio::io_context& context, http::handler h, http::server_options options = {},
            asio::ssl::context* tls = nullptr)
        : io(context)
        , server(context.get_executor(), std::move(h), std::move(options), tls) {
        server.listen({loopback, 0});
        asio::co_spawn(io, server.run(), asio::detached);
    }
    ~serving() { server.stop(); }

    std::uint16_t port() const { return server.local_endpoint().port(); }
};

struct fixture {
    asio::io_context io;
    asio::ssl::context client_tls{asio::ssl::context::tls_client};
    revdesk::test::test_certificates certs;

    fixture() {
        client_tls.set_verify_mode(asio::ssl::verify_peer);
        client_tls.load_verify_file(certs.ca_file);
    }

    asio::ssl::context server_tls(std::string const& cert) {
        asio::ssl::context tls(asio::ssl::context::tls_server);
        tls.use_certificate_chain_file(cert);
        tls.use_private_key_file(certs.key_file, asio::ssl::context::pem);
        return tls;
    }

    auto deadline(std::chrono::milliseconds d = 5s) { return std::chrono::steady_clock::now() + d; }
};

// Opens a raw TCP connection to `port` for hostile-client tests.
asio::awaitable<asio::ip::tcp::socket> dial(std::uint16_t port) {
    asio::ip::tcp::socket s(co_await asio::this_coro::executor);
    co_await s.async_connect({loopback, port}, asio::use_awaitable);
    co_return s;
}

// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
asio::awaitable<std::pair<std::string, bool>> read_until_close(asio::ip::tcp::socket& s,
                                                               std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    std::string all;
    auto reader = [&]() -> asio::awaitable<bool> {
        char buffer[4096];
        while (true) {
            auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), http::use_nothrow);
            all.append(buffer, n);
            if (ec) {
                co_return true;
            }
        }
    };
    asio::steady_timer timer(s.get_executor(), limit);
    auto r = co_await (reader() || timer.async_wait(http::use_nothrow));
    co_return std::pair{all, r.index() == 0};
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(exchange, fixture)

BOOST_AUTO_TEST_CASE(exchange_plain_reuses_connection) {
    int served = 0;
    serving s(
        io, [&](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            ++served;
            co_return ok(r.method + " " + r.target + " " + r.body);
        });
    http::client client(io.get_executor(), client_tls, allow_loopback());
    auto target = target_for("http", "127.0.0.1", s.port(), true);

    run(io, [&]() -> asio::awaitable<void> {
        auto first = co_await client.send(target, post("one"), deadline());
        BOOST_TEST((first.error == http::failure::none));
        BOOST_TEST(first.response.status == 200);
        BOOST_TEST(first.response.body == "POST /hook one");
        BOOST_TEST(client.idle_connections() == 1u);

        auto second = co_await client.send(target, post("two"), deadline());
        BOOST_TEST(second.response.body == "POST /hook two");
        BOOST_TEST(client.idle_connections() == 1u);
        BOOST_TEST(s.server.connections() == 1u);
    });
    BOOST_TEST(served == 2);
}

BOOST_AUTO_TEST_CASE(exchange_tls_verifies_peer) {
    auto tls = server_tls(certs.cert_file);
    serving s(
        io,
        [](http::request& r, http::request_context const& c) -> asio::awaitable<http::response> {
            co_return ok(c.tls ? "tls " + std::string(*r.headers.find("Host")) : "plain");
        },
        {}, &tls);
    http::client client(io.get_executor(), client_tls, allow_loopback(), {}, resolve_to_loopback());

    run(io, [&]() -> asio::awaitable<void> {
        auto by_name = co_await client.send(target_for("https", "localhost", s.port(), false),
                                            post("{}"), deadline());
        BOOST_TEST((by_name.error == http::failure::none), by_name.detail);
        BOOST_TEST(by_name.response.body == "tls localhost:" + std::to_string(s.port()));

        auto by_ip = co_await client.send(target_for("https", "127.0.0.1", s.port(), true),
                                          post("{}"), deadline());
        BOOST_TEST((by_ip.error == http::failure::none), by_ip.detail);
    });
}

BOOST_AUTO_TEST_CASE(exchange_tls_rejects_other_name) {
    auto tls = server_tls(certs.cert_file);
    serving s(
        io,
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("");
        },
        {}, &tls);
    http::client client(io.get_executor(), client_tls, allow_loopback(), {}, resolve_to_loopback());

    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("https", "receiver.example", s.port(), false),
                                      post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::tls));
        BOOST_TEST(r.detail.find("TLS handshake") != std::string::npos);
    });
}

BOOST_AUTO_TEST_CASE(exchange_tls_rejects_expired_certificate) {
    auto tls = server_tls(certs.expired_cert_file);
    serving s(
        io,
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("");
        },
        {}, &tls);
    http::client client(io.get_executor(), client_tls, allow_loopback(), {}, resolve_to_loopback());

    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("https", "localhost", s.port(), false), post("{}"),
                                      deadline());
        BOOST_TEST((r.error == http::failure::tls));
    });
}

BOOST_AUTO_TEST_CASE(exchange_blocked_address_never_connects) {
    asio::ip::tcp::acceptor acceptor(io, {loopback, 0});
    bool accepted = false;
    acceptor.async_accept([&](std::error_code ec, asio::ip::tcp::socket) { accepted = !ec; });
    auto port = acceptor.local_endpoint().port();

    // The name looked public when it was checked at subscription time; now it resolves to loopback.
    http::client client(io.get_executor(), client_tls, revdesk::address_policy{}, {},
                        resolve_to_loopback());
    run(io, [&]() -> asio::awaitable<void> {
        auto by_name = co_await client.send(target_for("https", "rebinding.example", port, false),
                                            post("{}"), deadline());
        BOOST_TEST((by_name.error == http::failure::blocked));
        BOOST_TEST(by_name.detail.find("127.0.0.1") != std::string::npos);

        auto by_ip = co_await client.send(target_for("http", "127.0.0.1", port, true), post("{}"),
                                          deadline());
        BOOST_TEST((by_ip.error == http::failure::blocked));

        asio::steady_timer settle(io, 100ms);
        co_await settle.async_wait(asio::use_awaitable);
    });
    BOOST_TEST(!accepted);
}

BOOST_AUTO_TEST_CASE(exchange_does_not_follow_redirect) {
    int served = 0;
    serving s(io,
              [&](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  ++served;
                  http::response r;
                  r.status = 307;
                  r.headers.add("Location", "http://169.254.169.254/latest/meta-data/");
                  co_return r;
              });
    http::client client(io.get_executor(), client_tls, allow_loopback());
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("http", "127.0.0.1", s.port(), true), post("{}"),
                                      deadline());
        BOOST_TEST((r.error == http::failure::none));
        BOOST_TEST(r.response.status == 307);
    });
    BOOST_TEST(served == 1);
}

BOOST_AUTO_TEST_CASE(exchange_times_out_at_deadline) {
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  asio::steady_timer wait(co_await asio::this_coro::executor, 30s);
                  co_await wait.async_wait(http::use_nothrow);
                  co_return ok("");
              });
    // On the caller's executor, then on a thread of the client's own.
    for (std::size_t threads : {0u, 1u}) {
        http::client_options options;
        options.threads = threads;
        http::client client(io.get_executor(), client_tls, allow_loopback(), options);
        run(io, [&]() -> asio::awaitable<void> {
            auto started = std::chrono::steady_clock::now();
            auto r = co_await client.send(target_for("http", "127.0.0.1", s.port(), true),
                                          post("{}"), deadline(300ms));
            BOOST_TEST((r.error == http::failure::timeout), "threads " << threads);
            BOOST_TEST((std::chrono::steady_clock::now() - started < 10s));
            BOOST_TEST(client.idle_connections() == 0u);
        });
    }
}

BOOST_AUTO_TEST_CASE(exchange_on_pooled_connection_times_out_at_deadline) {
    serving s(
        io, [](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            if (r.body == "hang") {
                asio::steady_timer wait(co_await asio::this_coro::executor, 30s);
                co_await wait.async_wait(http::use_nothrow);
            }
            co_return ok(r.body);
        });
    http::client client(io.get_executor(), client_tls, allow_loopback());
    auto target = target_for("http", "127.0.0.1", s.port(), true);
    run(io, [&]() -> asio::awaitable<void> {
        auto first = co_await client.send(target, post("first"), deadline());
        BOOST_TEST(first.response.body == "first");
        BOOST_TEST(client.idle_connections() == 1u);

        // The pooled connection carries the request that never gets its response.
        auto started = std::chrono::steady_clock::now();
        auto hung = co_await client.send(target, post("hang"), deadline(300ms));
        BOOST_TEST((hung.error == http::failure::timeout));
        BOOST_TEST(hung.detail == "no response before the deadline");
        BOOST_TEST((std::chrono::steady_clock::now() - started < 10s));
        BOOST_TEST(client.idle_connections() == 0u);

        // The next exchange opens a new connection and gets its response.
        auto after = co_await client.send(target, post("after"), deadline());
        BOOST_TEST((after.error == http::failure::none), after.detail);
        BOOST_TEST(after.response.body == "after");
    });
}

BOOST_AUTO_TEST_CASE(exchange_caps_response_body) {
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  co_return ok(std::string(512 * 1024, 'x'));
              });
    http::client_options options;
    options.max_response_body = 1024;
    http::client client(io.get_executor(), client_tls, allow_loopback(), options);
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("http", "127.0.0.1", s.port(), true), post("{}"),
                                      deadline());
        BOOST_TEST((r.error == http::failure::none));
        BOOST_TEST(r.response.status == 200);
        BOOST_TEST(r.response.body.size() == 1024u);
        BOOST_TEST(r.body_truncated);
        BOOST_TEST(client.idle_connections() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(exchange_connection_refused) {
    std::uint16_t port = 0;
    {
        asio::ip::tcp::acceptor closed(io, {loopback, 0});
        port = closed.local_endpoint().port();
    }
    http::client client(io.get_executor(), client_tls, allow_loopback());
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("http", "127.0.0.1", port, true), post("{}"),
                                      deadline());
        BOOST_TEST((r.error == http::failure::connect));
    });
}

BOOST_AUTO_TEST_CASE(exchange_runs_on_client_threads) {
    auto tls = server_tls(certs.cert_file);
    serving s(
        io,
        [](http::request& r, http::request_context const& c) -> asio::awaitable<http::response> {
            co_return ok((c.tls ? "tls " : "plain ") + r.body);
        },
        {}, &tls);

    // The resolver runs where the exchange runs, so it records which threads carried them.
    std::mutex mutex;
    std::set<std::thread::id> resolved_on;
    http::resolve_function resolve =
        [&](std::string const&,
            std::error_code&) -> asio::awaitable<std::vector<asio::ip::address>> {
        {
            std::lock_guard lock(mutex);
            resolved_on.insert(std::this_thread::get_id());
        }
        co_return std::vector<asio::ip::address>{loopback};
    };
    http::client_options options;
    options.threads = 2;
    http::client client(io.get_executor(), client_tls, allow_loopback(), options, resolve);
    auto target = target_for("https", "localhost", s.port(), false);

    constexpr int exchanges = 64;
    int answered = 0;
    run(io, [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        asio::steady_timer all_done(executor, std::chrono::steady_clock::time_point::max());
        for (int i = 0; i < exchanges; ++i) {
            auto exchange = [&, i]() -> asio::awaitable<void> {
                auto body = std::to_string(i);
                auto r = co_await client.send(target, post(body), deadline());
                // Back on the caller's thread, whichever thread carried the exchange.
                BOOST_TEST(io.get_executor().running_in_this_thread());
                BOOST_TEST((r.error == http::failure::none), r.detail);
                BOOST_TEST(r.response.body == "tls " + body);
                if (++answered == exchanges) {
                    all_done.cancel();
                }
            };
            asio::co_spawn(executor, exchange(), asio::detached);
        }
        co_await all_done.async_wait(http::use_nothrow);
        BOOST_TEST(client.idle_connections() > 0u);

        // A pooled connection carries the next exchange without a new lookup.
        auto lookups = resolved_on.size();
        auto again = co_await client.send(target, post("again"), deadline());
        BOOST_TEST(again.response.body == "tls again");
        BOOST_TEST(resolved_on.size() == lookups);
    });
    BOOST_TEST(answered == exchanges);
    std::lock_guard lock(mutex);
    BOOST_TEST(resolved_on.size() == 2u);
    BOOST_TEST(!resolved_on.contains(std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(server_rejects_malformed_request_and_closes) {
    int served = 0;
    serving s(io,
              [&](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  ++served;
                  co_return ok("");
              });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string smuggle =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\n"
            "hello";
        co_await asio::async_write(socket, asio::buffer(smuggle), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 400"));
        BOOST_TEST(closed);
    });
    BOOST_TEST(served == 0);
}

BOOST_AUTO_TEST_CASE(server_requires_host) {
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  co_return ok("");
              });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string no_host = "GET /healthz HTTP/1.1\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(no_host), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 400"));
        BOOST_TEST(closed);
    });
}

BOOST_AUTO_TEST_CASE(server_serves_pipelined_requests) {
    serving s(
        io, [](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok(r.target);
        });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: "
                          "x\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(two), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(closed);
        auto first = answer.find("\r\n\r\n/a");
        auto second = answer.find("\r\n\r\n/b");
        BOOST_TEST(first != std::string::npos);
        BOOST_TEST(second != std::string::npos);
        BOOST_TEST(first < second);
    });
}

BOOST_AUTO_TEST_CASE(server_reads_absolute_form_as_origin_form) {
    serving s(
        io, [](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("[" + r.target + "]");
        });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string three = "GET http://x/a/b?c=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET HTTP://x:80?d=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET http://x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(three), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(closed);
        BOOST_TEST(answer.find("[/a/b?c=1]") != std::string::npos, answer);
        BOOST_TEST(answer.find("[/?d=2]") != std::string::npos, answer);
        BOOST_TEST(answer.find("[/]") != std::string::npos, answer);
    });
}

BOOST_AUTO_TEST_CASE(server_cuts_trickling_header_at_deadline) {
    http::server_options options;
    options.header_timeout = 400ms;
    serving s(
        io,
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("");
        },
        options);
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string request = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        auto started = std::chrono::steady_clock::now();
        std::size_t sent = 0;
        for (; sent < request.size(); ++sent) {
            auto [ec, n] = co_await asio::async_write(socket, asio::buffer(&request[sent], 1),
                                                      http::use_nothrow);
            if (ec) {
                break;
            }
            asio::steady_timer pause(socket.get_executor(), 50ms);
            co_await pause.async_wait(asio::use_awaitable);
        }
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(closed);
        BOOST_TEST(answer.empty());
        BOOST_TEST(sent < request.size());
        BOOST_TEST((std::chrono::steady_clock::now() - started < 3s));
    });
}

BOOST_AUTO_TEST_CASE(server_closes_idle_keep_alive) {
    http::server_options options;
    options.idle_timeout = 300ms;
    serving s(
        io,
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("fine");
        },
        options);
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string one = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(one), asio::use_awaitable);
        auto started = std::chrono::steady_clock::now();
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 200"));
        BOOST_TEST(closed);
        BOOST_TEST((std::chrono::steady_clock::now() - started < 4s));
    });
}

BOOST_AUTO_TEST_CASE(server_shutdown_finishes_in_flight) {
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  asio::steady_timer work(co_await asio::this_coro::executor, 300ms);
                  co_await work.async_wait(asio::use_awaitable);
                  co_return ok("finished");
              });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string one = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(one), asio::use_awaitable);
        asio::steady_timer settle(socket.get_executor(), 50ms);
        co_await settle.async_wait(asio::use_awaitable);

        std::size_t forced = 99;
        asio::co_spawn(
            socket.get_executor(),
            [&]() -> asio::awaitable<void> { forced = co_await s.server.shutdown(5s); },
            asio::detached);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 200"));
        BOOST_TEST(answer.find("Connection: close") != std::string::npos);
        BOOST_TEST(answer.ends_with("finished"));
        BOOST_TEST(closed);

        asio::steady_timer wait(socket.get_executor(), 100ms);
        co_await wait.async_wait(asio::use_awaitable);
        BOOST_TEST(forced == 0u);
    });
}

BOOST_AUTO_TEST_CASE(server_head_response_has_no_body) {
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  co_return ok("abc");
              });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string two = "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(two), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(closed);
        auto second = answer.find("HTTP/1.1 200", 1);
        BOOST_TEST_REQUIRE(second != std::string::npos);
        auto head = answer.substr(0, second);
        BOOST_TEST(head.find("Content-Length: 3") != std::string::npos);
        BOOST_TEST(head.ends_with("\r\n\r\n"));
        BOOST_TEST(answer.ends_with("\r\n\r\nabc"));
    });
}

BOOST_AUTO_TEST_CASE(server_answers_expect_continue) {
    serving s(
        io, [](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("got " + r.body);
        });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string head = "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                           "Content-Length: 2\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);

        std::string interim(25, '\0');
        co_await asio::async_read(socket, asio::buffer(interim), asio::use_awaitable);
        BOOST_TEST(interim == "HTTP/1.1 100 Continue\r\n\r\n");

        co_await asio::async_write(socket, asio::buffer(std::string("hi")), asio::use_awaitable);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 200"));
        BOOST_TEST(answer.ends_with("got hi"));
    });
}

BOOST_AUTO_TEST_CASE(server_closes_silent_new_connection) {
    http::server_options options;
    options.header_timeout = 300ms;
    options.idle_timeout = 60s;
    serving s(
        io,
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("");
        },
        options);
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        auto started = std::chrono::steady_clock::now();
        auto [answer, closed] = co_await read_until_close(socket, 10s);
        BOOST_TEST(closed);
        BOOST_TEST(answer.empty());
        BOOST_TEST((std::chrono::steady_clock::now() - started < 5s));
    });
}

BOOST_AUTO_TEST_SUITE_END()
