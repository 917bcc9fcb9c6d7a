#include <revdesk/http/server.hpp>

#define BOOST_TEST_MODULE http_server_hostile
#include <boost/test/unit_test.hpp>

#include "../support/test_support.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

// The server against clients that misbehave on purpose: too many of them, too slow, malformed,
// or still busy when the server stops. Each client is a raw TCP socket on loopback.

using namespace std::chrono_literals;
namespace http = revdesk::http;
using revdesk::test::run;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

auto const loopback = asio::ip::make_address("127.0.0.1");

http::response ok(std::string body) {
    http::response r;
    r.status = 200;
    r.body = std::move(body);
    return r;
}

asio::awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(http::use_nothrow);
}

asio::awaitable<tcp::socket> dial(std::uint16_t port) {
    tcp::socket s(co_await asio::this_coro::executor);
    co_await s.async_connect({loopback, port}, asio::use_awaitable);
    co_return s;
}

asio::awaitable<std::error_code> write(tcp::socket& socket, std::string_view bytes) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()),
                                              http::use_nothrow);
    co_return ec;
}

// Reads one response; returns it, or nothing when the connection closed, broke or `limit` passed
// first.
asio::awaitable<std::optional<http::response>> read_response(tcp::socket& s,
                                                             std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    auto reader = [&]() -> asio::awaitable<std::optional<http::response>> {
        http::response_parser parser;
        char buffer[4096];
        while (!parser.done()) {
            auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), http::use_nothrow);
            if (ec) {
                co_return std::nullopt;
            }
            std::error_code parse_error;
            parser.feed({buffer, n}, parse_error);
            if (parse_error) {
                co_return std::nullopt;
            }
        }
        co_return parser.release();
    };
    auto r = co_await (reader() || pause(limit));
    if (r.index() == 0) {
        co_return std::get<0>(std::move(r));
    }
    co_return std::nullopt;
}

// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
asio::awaitable<std::pair<std::string, bool>> read_until_close(tcp::socket& s,
                                                               std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    std::string all;
    auto reader = [&]() -> asio::awaitable<void> {
        char buffer[4096];
        while (true) {
            auto [ec, n] = co_await s.async_read_some(asio::buffer(buffer), http::use_nothrow);
            all.append(buffer, n);
            if (ec) {
                co_return;
            }
        }
    };
    auto r = co_await (reader() || pause(limit));
    co_return std::pair{all, r.index() == 0};
}

// Returns how many bytes of `answer` follow its first complete response.
std::size_t bytes_after_first_response(std::string_view answer) {
    http::response_parser parser;
    std::error_code ec;
    auto used = parser.feed(answer, ec);
    if (!parser.done()) {
        parser.feed_eof(ec);
    }
    return answer.size() - used;
}

// A server on a loopback port, running until the fixture ends.
struct serving {
    http::server server;

    serving(asio::io_context& io, http::handler h, http::server_options options = {})
        : server(io.get_executor(), std::move(h), std::move(options)) {
        server.listen({loopback, 0});
        asio::co_spawn(io, server.run(), asio::detached);
    }
    ~serving() { server.stop(); }

    std::uint16_t port() const { return server.local_endpoint().port(); }
};

struct fixture {
    asio::io_context io;
};

/// What the child process of `server_backs_off_failed_accepts` measured.
struct backoff_report {
    int failures_in_window = -1; // failed accepts reported during the 2 s window
    int served = 0;              // 1 when the waiting client got its response afterwards
    int setup_error = 0;         // errno of a failed setup step, 0 when setup worked
};

// Runs in a forked child: a server whose process has no free file descriptor, so that every
// accept fails with EMFILE while a client waits in the listen backlog. Counts the failures over
// 2 s, then frees the descriptors and checks that the waiting client gets its response.
backoff_report run_out_of_descriptors() {
    backoff_report report;
    asio::io_context io;
    int failures = 0;
    http::server_options options;
    options.on_error = [&](std::string_view what) {
        if (what.starts_with("accept failed")) {
            ++failures;
        }
    };
    http::server server(
        io.get_executor(),
        [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok("served");
        },
        options);
    server.listen({loopback, 0});

    tcp::socket client(io);
    client.connect(server.local_endpoint());
    std::string request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    asio::write(client, asio::buffer(request));

    // Lowers the soft limit, then takes every descriptor below it.
    rlimit original{};
    getrlimit(RLIMIT_NOFILE, &original);
    rlimit lowered = original;
    lowered.rlim_cur = std::min<rlim_t>(original.rlim_cur, 256);
    if (setrlimit(RLIMIT_NOFILE, &lowered) != 0) {
        report.setup_error = errno;
        return report;
    }
    std::vector<int> held_descriptors;
    while (true) {
        int fd = dup(0);
        if (fd < 0) {
            break;
        }
        held_descriptors.push_back(fd);
    }
    if (errno != EMFILE) {
        report.setup_error = errno;
        return report;
    }

    asio::co_spawn(io, server.run(), asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await pause(2s);
            report.failures_in_window = failures;
            for (int fd : held_descriptors) {
                close(fd);
            }
            setrlimit(RLIMIT_NOFILE, &original);
            // The backoff is at most 1 s, so the next accept comes well within this limit.
            auto answer = co_await read_response(client, 10s);
            report.served = answer && answer->body == "served" ? 1 : 0;
            server.stop();
        },
        asio::detached);
    io.run_for(20s);
    return report;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(server_hostile, fixture)

BOOST_AUTO_TEST_CASE(server_caps_concurrent_connections) {
    http::server_options options;
    options.max_connections = 2;
    serving s(
        io,
        [](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            co_return ok(r.target);
        },
        options);
    run(io, [&]() -> asio::awaitable<void> {
        std::vector<tcp::socket> clients;
        for (int i = 1; i <= 3; ++i) {
            clients.push_back(co_await dial(s.port()));
            auto request = "GET /" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
            BOOST_TEST(!co_await write(clients.back(), request));
        }

        // Two clients are served and stay connected (keep-alive).
        for (int i = 1; i <= 2; ++i) {
            auto answer = co_await read_response(clients[i - 1], 5s);
            BOOST_TEST_REQUIRE(answer.has_value());
            BOOST_TEST(answer->body == "/" + std::to_string(i));
        }

        // The third waits in the listen backlog: nothing for it while both slots are taken.
        auto early = co_await read_response(clients[2], 500ms);
        BOOST_TEST(!early.has_value());
        BOOST_TEST(s.server.connections() == 2u);

        // Once one client leaves, the third is accepted and served.
        clients[0].close();
        auto late = co_await read_response(clients[2], 5s);
        BOOST_TEST_REQUIRE(late.has_value());
        BOOST_TEST(late->body == "/3");
        BOOST_TEST(s.server.connections() <= 2u);
    });
}

BOOST_AUTO_TEST_CASE(server_backs_off_failed_accepts) {
    int channel[2];
    BOOST_TEST_REQUIRE(pipe(channel) == 0);
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t child = fork();
    BOOST_TEST_REQUIRE(child >= 0);
    if (child == 0) {
        close(channel[0]);
        auto report = run_out_of_descriptors();
        auto written = ::write(channel[1], &report, sizeof report);
        _exit(written == sizeof report ? 0 : 1);
    }
    close(channel[1]);

    backoff_report report;
    pollfd readable{channel[0], POLLIN, 0};
    bool answered = poll(&readable, 1, 60'000) == 1 &&
                    ::read(channel[0], &report, sizeof report) == sizeof report;
    close(channel[0]);
    if (!answered) {
        kill(child, SIGKILL);
    }
    int status = 0;
    waitpid(child, &status, 0);

    BOOST_TEST_REQUIRE(answered);
    BOOST_TEST_REQUIRE(report.setup_error == 0,
                       "setup failed: " << std::strerror(report.setup_error));
    // With a backoff from 10 ms doubling up to 1 s, 2 s hold about 8 attempts; a loop that
    // retries at once makes thousands.
    BOOST_TEST(report.failures_in_window >= 2);
    BOOST_TEST(report.failures_in_window <= 40);
    BOOST_TEST(report.served == 1);
}

BOOST_AUTO_TEST_CASE(server_closes_after_error_response) {
    struct case_t {
        std::string name;
        std::string request;
        int status;
    };
    std::vector<case_t> const cases = {
        {"two Content-Length fields",
         "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
        {"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 400},
        {"unknown method", "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501},
        {"unsupported transfer coding",
         "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"long field",
         "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + std::string(9000, 'a') + "\r\n\r\n", 431},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        {"declared body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
         413},
        {"handler throws", "GET /throw HTTP/1.1\r\nHost: x\r\n\r\n", 500},
    };
    std::vector<std::string> served;
    serving s(
        io, [&](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            served.push_back(r.target);
            if (r.target == "/throw") {
                throw std::runtime_error("handler failure on purpose");
            }
            co_return ok("fine");
        });
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            served.clear();
            run(io, [&]() -> asio::awaitable<void> {
                auto socket = co_await dial(s.port());
                // A valid keep-alive request follows in the same write; it must not be served.
                auto bytes = c.request + "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
                co_await write(socket, bytes);
                auto [answer, closed] = co_await read_until_close(socket, 5s);
                BOOST_TEST(answer.starts_with("HTTP/1.1 " + std::to_string(c.status) + " "),
                           answer.substr(0, 40));
                BOOST_TEST(answer.find("\r\nConnection: close\r\n") != std::string::npos);
                BOOST_TEST(bytes_after_first_response(answer) == 0u);
                BOOST_TEST(closed);
            });
            bool after_served = std::find(served.begin(), served.end(), "/after") != served.end();
            BOOST_TEST(!after_served);
        }
    }
}

BOOST_AUTO_TEST_CASE(server_answers_413_while_body_still_arrives) {
    // The client keeps sending a 2 MB body that the server rejected from its Content-Length; the
    // 413 must still reach the client.
    serving s(io,
              [](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
                  co_return ok("");
              });
    run(io, [&]() -> asio::awaitable<void> {
        auto socket = co_await dial(s.port());
        std::string head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n";
        std::string body(2'000'000, 'b');
        co_await write(socket, head);
        asio::co_spawn(
            socket.get_executor(), [&]() -> asio::awaitable<void> { co_await write(socket, body); },
            asio::detached);
        auto [answer, closed] = co_await read_until_close(socket, 5s);
        BOOST_TEST(answer.starts_with("HTTP/1.1 413 "), answer.substr(0, 40));
        BOOST_TEST(closed);
        socket.close();
        co_await pause(50ms); // lets the cancelled write finish before `body` goes away
    });
}

BOOST_AUTO_TEST_CASE(server_cuts_trickling_body_at_deadline) {
    struct case_t {
        std::string name;
        std::string head;
        std::string body; // sent one byte per 100 ms
    };
    std::vector<case_t> const cases = {
        {"Content-Length", "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
         std::string(1000, 'z')},
        {"chunked", "POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         [] {
             std::string chunks;
             for (int i = 0; i < 200; ++i) {
                 chunks += "1\r\nz\r\n";
             }
             return chunks + "0\r\n\r\n";
         }()},
    };
    http::server_options options;
    options.body_timeout = 500ms;
    int served = 0;
    serving s(
        io,
        [&](http::request&, http::request_context const&) -> asio::awaitable<http::response> {
            ++served;
            co_return ok("");
        },
        options);
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            run(io, [&]() -> asio::awaitable<void> {
                auto socket = co_await dial(s.port());
                co_await write(socket, c.head);
                auto started = clock_type::now();
                // Stops after 8 s even if the server never cuts the client off.
                std::size_t sent = 0;
                while (sent < c.body.size() && clock_type::now() - started < 8s) {
                    if (co_await write(socket, std::string_view(c.body).substr(sent, 1))) {
                        break;
                    }
                    ++sent;
                    co_await pause(100ms);
                }
                auto [answer, closed] = co_await read_until_close(socket, 5s);
                auto took = clock_type::now() - started;
                BOOST_TEST(closed);
                BOOST_TEST(!answer.starts_with("HTTP/1.1 200"));
                BOOST_TEST(sent < c.body.size());
                BOOST_TEST((took >= 500ms));
                BOOST_TEST((took < 6s));
            });
        }
    }
    BOOST_TEST(served == 0);
}

BOOST_AUTO_TEST_CASE(server_shutdown_forces_stuck_handler_at_deadline) {
    bool handler_started = false;
    bool handler_cancelled = false;
    serving s(
        io, [&](http::request& r, http::request_context const&) -> asio::awaitable<http::response> {
            if (r.target == "/stuck") {
                handler_started = true;
                asio::steady_timer forever(co_await asio::this_coro::executor, 24h);
                auto [ec] = co_await forever.async_wait(http::use_nothrow);
                handler_cancelled = ec == asio::error::operation_aborted;
            }
            co_return ok("fine");
        });
    run(io, [&]() -> asio::awaitable<void> {
        // One idle keep-alive connection and one whose handler never finishes.
        auto idle = co_await dial(s.port());
        co_await write(idle, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n");
        auto first = co_await read_response(idle, 5s);
        BOOST_TEST_REQUIRE(first.has_value());

        auto stuck = co_await dial(s.port());
        co_await write(stuck, "GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n");
        while (!handler_started) {
            co_await pause(10ms);
        }
        BOOST_TEST(s.server.connections() == 2u);

        auto started = clock_type::now();
        std::optional<std::size_t> forced;
        asio::co_spawn(
            io, [&]() -> asio::awaitable<void> { forced = co_await s.server.shutdown(300ms); },
            asio::detached);

        auto [idle_answer, idle_closed] = co_await read_until_close(idle, 5s);
        BOOST_TEST(idle_closed);
        BOOST_TEST(idle_answer.empty());

        auto [stuck_answer, stuck_closed] = co_await read_until_close(stuck, 5s);
        BOOST_TEST(stuck_closed);
        BOOST_TEST(stuck_answer.empty());
        while (!forced && clock_type::now() - started < 5s) {
            co_await pause(10ms);
        }
        auto took = clock_type::now() - started;
        BOOST_TEST_REQUIRE(forced.has_value());
        BOOST_TEST(*forced == 1u);
        BOOST_TEST((took >= 300ms));
        BOOST_TEST((took < 5s));

        // The forced session ends too: its handler is cancelled rather than left running.
        while (s.server.connections() != 0 && clock_type::now() - started < 5s) {
            co_await pause(10ms);
        }
        BOOST_TEST(s.server.connections() == 0u);
        BOOST_TEST(handler_cancelled);
    });
}

BOOST_AUTO_TEST_SUITE_END()
