#include <revdesk/http/client.hpp>

#define BOOST_TEST_MODULE http_client_hostile
#include <boost/test/unit_test.hpp>

#include "../support/test_support.hpp"

#include <revdesk/http/server.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

// The client against receivers that misbehave on purpose. Each receiver is a raw TCP acceptor on
// loopback that reads the request and then writes scripted bytes, so that every case controls
// exactly what reaches the client, when, and how the connection ends.

using namespace std::chrono_literals;
namespace http = revdesk::http;
using revdesk::test::run;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

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

revdesk::webhook_target plain_target(std::uint16_t port) {
    return target_for("http", "127.0.0.1", port, true);
}

http::request post(std::string body) {
    http::request r;
    r.method = "POST";
    r.target = "/hook";
    r.headers.add("Content-Type", "application/json");
    r.body = std::move(body);
    return r;
}

asio::awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(http::use_nothrow);
}

// Reads one whole request from `socket`; returns false when the peer closed or sent garbage.
asio::awaitable<bool> read_request(tcp::socket& socket) {
    http::request_parser parser;
    char buffer[4096];
    while (!parser.done()) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), http::use_nothrow);
        if (ec) {
            co_return false;
        }
        std::error_code parse_error;
        parser.feed({buffer, n}, parse_error);
        if (parse_error) {
            co_return false;
        }
    }
    co_return true;
}

asio::awaitable<std::error_code> write(tcp::socket& socket, std::string_view bytes) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()),
                                              http::use_nothrow);
    co_return ec;
}

// Keeps the connection open, discarding what arrives, until the peer closes it or `limit` passes.
asio::awaitable<void> hold(tcp::socket& socket, std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    auto drain = [&]() -> asio::awaitable<void> {
        char buffer[1024];
        while (true) {
            auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), http::use_nothrow);
            if (ec) {
                co_return;
            }
        }
    };
    co_await (drain() || pause(limit));
}

// Closes `socket` with a TCP reset instead of a FIN: SO_LINGER with a zero timeout.
void reset(tcp::socket& socket) {
    std::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
}

/// A raw TCP receiver on a loopback port. Every accepted connection runs `script` with the
/// socket and the connection's number (1 for the first). The socket closes with a FIN when the
/// script returns, unless the script closed it otherwise.
///
/// The destructor closes the acceptor and every open connection, then runs the `io_context` until
/// every script has returned (10 s at most), so that no script outlives the variables of the
/// test case that it refers to.
class scripted_receiver {
public:
    using script = std::function<asio::awaitable<void>(tcp::socket&, int connection)>;

    scripted_receiver(asio::io_context& io, script s)
        : io_(io)
        , acceptor_(io, {loopback, 0})
        , script_(std::move(s)) {
        accepting_ = true;
        asio::co_spawn(io, accept_loop(), asio::detached);
    }

    ~scripted_receiver() {
        std::error_code ignored;
        acceptor_.close(ignored);
        for (auto* socket : open_) {
            socket->close(ignored);
        }
        io_.restart();
        auto until = clock_type::now() + 10s;
        while ((accepting_ || !open_.empty()) && clock_type::now() < until) {
            io_.run_for(20ms);
        }
    }

    scripted_receiver(scripted_receiver const&) = delete;
    scripted_receiver& operator=(scripted_receiver const&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    /// Returns the number of connections accepted so far.
    int accepted() const noexcept { return accepted_; }

private:
    asio::awaitable<void> accept_loop() {
        while (true) {
            auto [ec, socket] = co_await acceptor_.async_accept(http::use_nothrow);
            if (ec) {
                break;
            }
            ++accepted_;
            asio::co_spawn(io_, serve(std::move(socket), accepted_), asio::detached);
        }
        accepting_ = false;
    }

    asio::awaitable<void> serve(tcp::socket socket, int connection) {
        open_.insert(&socket);
        co_await script_(socket, connection);
        open_.erase(&socket);
    }

    asio::io_context& io_;
    tcp::acceptor acceptor_;
    script script_;
    std::set<tcp::socket*> open_; // sockets of the scripts still running
    int accepted_ = 0;
    bool accepting_ = false;
};

// A script that reads the request, writes `response` and closes the connection.
scripted_receiver::script answer_and_close(std::string response) {
    return [response](tcp::socket& socket, int) -> asio::awaitable<void> {
        if (co_await read_request(socket)) {
            co_await write(socket, response);
        }
    };
}

// A script that reads the request, writes `response` and keeps the connection open.
scripted_receiver::script answer_and_hold(std::string response) {
    return [response](tcp::socket& socket, int) -> asio::awaitable<void> {
        if (co_await read_request(socket)) {
            co_await write(socket, response);
            co_await hold(socket, 30s);
        }
    };
}

/// A TLS server on loopback with a given certificate that responds 200 and counts its requests.
class counting_tls_server {
public:
    counting_tls_server(asio::io_context& io, std::string const& cert_file,
                        std::string const& key_file)
        : tls_(asio::ssl::context::tls_server) {
        tls_.use_certificate_chain_file(cert_file);
        tls_.use_private_key_file(key_file, asio::ssl::context::pem);
        server_.emplace(
            io.get_executor(),
            [this](http::request&,
                   http::request_context const&) -> asio::awaitable<http::response> {
                ++served_;
                http::response res;
                res.status = 200;
                co_return res;
            },
            http::server_options{}, &tls_);
        server_->listen({loopback, 0});
        asio::co_spawn(io, server_->run(), asio::detached);
    }

    std::uint16_t port() const { return server_->local_endpoint().port(); }
    int served() const { return served_; }
    void stop() { server_->stop(); }

private:
    asio::ssl::context tls_;
    std::optional<http::server> server_;
    int served_ = 0;
};

struct fixture {
    asio::io_context io;
    asio::ssl::context client_tls{asio::ssl::context::tls_client};
    revdesk::test::test_certificates certs;

    fixture() {
        client_tls.set_verify_mode(asio::ssl::verify_peer);
        client_tls.load_verify_file(certs.ca_file);
    }

    http::client make_client(http::client_options options = {}) {
        return http::client(io.get_executor(), client_tls, allow_loopback(), options);
    }

    static clock_type::time_point deadline(std::chrono::milliseconds d = 10s) {
        return clock_type::now() + d;
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(client_hostile, fixture)

BOOST_AUTO_TEST_CASE(send_reads_body_to_eof_without_pooling) {
    struct case_t {
        std::string name;
        std::string response;
        int version;
        std::string body;
    };
    std::vector<case_t> const cases = {
        {"HTTP/1.0 without framing", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold style",
         10, "old style"},
        {"HTTP/1.1 with Connection: close",
         "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", 11, "to the end"},
        {"HTTP/1.1 without framing", "HTTP/1.1 202 Accepted\r\n\r\naccepted", 11, "accepted"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            scripted_receiver receiver(io, answer_and_close(c.response));
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                BOOST_TEST((r.error == http::failure::none), r.detail);
                BOOST_TEST(r.response.http_version == c.version);
                BOOST_TEST(r.response.body == c.body);
                BOOST_TEST(!r.body_truncated);
                BOOST_TEST(client.idle_connections() == 0u);
            });
        }
    }
}

BOOST_AUTO_TEST_CASE(send_does_not_pool_http10_connection) {
    // The receiver frames the body and keeps the connection open, but HTTP/1.0 without
    // keep-alive means the connection ends with this exchange.
    scripted_receiver receiver(io,
                               answer_and_hold("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto first = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((first.error == http::failure::none), first.detail);
        BOOST_TEST(first.response.body == "ok");
        BOOST_TEST(client.idle_connections() == 0u);

        auto second = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((second.error == http::failure::none), second.detail);
        BOOST_TEST(receiver.accepted() == 2);
    });
}

BOOST_AUTO_TEST_CASE(send_keeps_named_response_fields_and_connection) {
    // Only Retry-After is asked for, but Connection: close must still end the connection.
    scripted_receiver receiver(
        io, answer_and_hold("HTTP/1.1 429 Slow Down\r\nServer: x\r\nRetry-After: 30\r\n"
                            "Connection: close\r\nContent-Length: 4\r\n\r\nslow"));
    http::client_options options;
    options.kept_response_fields = {"Retry-After"};
    auto client = make_client(options);
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::none), r.detail);
        BOOST_TEST(r.response.status == 429);
        BOOST_TEST(r.response.body == "slow");
        BOOST_TEST(r.response.headers.find("Retry-After").value_or("") == "30");
        BOOST_TEST(!r.response.headers.find("Server").has_value());
        BOOST_TEST(!r.response.headers.find("Content-Length").has_value());
        BOOST_TEST(client.idle_connections() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(send_reads_head_response_without_body) {
    // The fields describe the body a GET would get; none follows, and the connection stays open.
    scripted_receiver receiver(io,
                               answer_and_hold("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"));
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        http::request head;
        head.method = "HEAD";
        head.target = "/hook";
        auto r = co_await client.send(plain_target(receiver.port()), head, deadline(5s));
        BOOST_TEST((r.error == http::failure::none), to_string(r.error) << ": " << r.detail);
        BOOST_TEST(r.response.status == 200);
        BOOST_TEST(r.response.body.empty());
        BOOST_TEST(client.idle_connections() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(send_fails_io_when_closed_before_status) {
    struct case_t {
        std::string name;
        bool with_reset;
    };
    for (auto const& c : {case_t{"reset", true}, case_t{"FIN", false}}) {
        BOOST_TEST_CONTEXT(c.name) {
            scripted_receiver receiver(io, [&](tcp::socket& socket, int) -> asio::awaitable<void> {
                if (co_await read_request(socket) && c.with_reset) {
                    reset(socket);
                }
            });
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                BOOST_TEST((r.error == http::failure::io), to_string(r.error) << ": " << r.detail);
                BOOST_TEST(r.response.status == 0);
                BOOST_TEST(client.idle_connections() == 0u);
            });
        }
    }
}

BOOST_AUTO_TEST_CASE(send_records_status_of_cut_body) {
    scripted_receiver receiver(
        io, answer_and_close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"));
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto first = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((first.error == http::failure::none), first.detail);
        BOOST_TEST(first.response.status == 200);
        BOOST_TEST(first.response.body == "only this");
        BOOST_TEST(first.body_truncated);
        BOOST_TEST(client.idle_connections() == 0u);

        // The next exchange opens a new connection.
        auto second = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST(second.response.status == 200);
        BOOST_TEST(receiver.accepted() == 2);
    });
}

BOOST_AUTO_TEST_CASE(send_skips_interim_responses) {
    // Written in pieces with pauses, so the interim responses and the final one arrive in
    // separate reads.
    std::vector<std::string> const pieces = {
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        "HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\ncreated",
    };
    scripted_receiver receiver(io, [&](tcp::socket& socket, int) -> asio::awaitable<void> {
        if (!co_await read_request(socket)) {
            co_return;
        }
        for (auto const& piece : pieces) {
            co_await write(socket, piece);
            co_await pause(50ms);
        }
        co_await hold(socket, 30s);
    });
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::none), r.detail);
        BOOST_TEST(r.response.status == 201);
        BOOST_TEST(r.response.reason == "Created");
        BOOST_TEST(r.response.body == "created");
        BOOST_TEST(!r.response.headers.find("Link").has_value());
        BOOST_TEST(client.idle_connections() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(send_fails_protocol_on_malformed_status_line) {
    std::vector<std::string> const responses = {
        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "ICY 200 OK\r\n\r\n",
        "<html>not http</html>\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    };
    // The last response is valid; it proves that the receiver and the checks work.
    for (std::size_t i = 0; i < responses.size(); ++i) {
        bool valid = i + 1 == responses.size();
        BOOST_TEST_CONTEXT("response " << i << ": " << responses[i]) {
            scripted_receiver receiver(io, answer_and_hold(responses[i]));
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto started = clock_type::now();
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                if (valid) {
                    BOOST_TEST((r.error == http::failure::none), r.detail);
                } else {
                    BOOST_TEST((r.error == http::failure::protocol), to_string(r.error)
                                                                         << ": " << r.detail);
                    BOOST_TEST(r.detail.find("invalid response") != std::string::npos, r.detail);
                    BOOST_TEST(client.idle_connections() == 0u);
                }
                // A parse error ends the exchange at once, well before the 10 s deadline.
                BOOST_TEST((clock_type::now() - started < 5s));
            });
        }
    }
}

BOOST_AUTO_TEST_CASE(send_caps_endless_body) {
    struct case_t {
        std::string name;
        std::string head;
        std::string piece; // written again and again until the client closes
    };
    std::string const block(16 * 1024, 'x');
    std::vector<case_t> const cases = {
        {"delimited by EOF", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", block},
        {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         "4000\r\n" + block + "\r\n"},
        {"huge Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", block},
        // Beyond the parser's default body limit of 1 MiB: the status still counts.
        {"Content-Length over 1 MiB",
         "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n", block},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            bool write_failed = false;
            scripted_receiver receiver(io, [&](tcp::socket& socket, int) -> asio::awaitable<void> {
                if (!co_await read_request(socket) || co_await write(socket, c.head)) {
                    co_return;
                }
                // Bounded so that the receiver stops by itself even if the client never closes.
                auto until = clock_type::now() + 30s;
                while (clock_type::now() < until) {
                    if (co_await write(socket, c.piece)) {
                        write_failed = true;
                        co_return;
                    }
                }
            });
            http::client_options options;
            options.max_response_body = 1024;
            auto client = make_client(options);
            run(io, [&]() -> asio::awaitable<void> {
                auto started = clock_type::now();
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline(20s));
                BOOST_TEST((r.error == http::failure::none), r.detail);
                BOOST_TEST(r.response.status == 200);
                BOOST_TEST(r.response.body == std::string(1024, 'x'));
                BOOST_TEST(r.body_truncated);
                BOOST_TEST(client.idle_connections() == 0u);
                BOOST_TEST((clock_type::now() - started < 10s));

                // The client closed the connection instead of draining it: the receiver's
                // writes fail once the socket buffers are full.
                auto until = clock_type::now() + 20s;
                while (!write_failed && clock_type::now() < until) {
                    co_await pause(20ms);
                }
                BOOST_TEST(write_failed);
            });
        }
    }
}

BOOST_AUTO_TEST_CASE(send_fails_on_huge_header_block) {
    struct case_t {
        std::string name;
        std::string head;
        std::string piece; // written again and again until the client closes
    };
    std::vector<case_t> const cases = {
        {"many fields", "HTTP/1.1 200 OK\r\n", "X-Filler: " + std::string(200, 'a') + "\r\n"},
        {"one endless field", "HTTP/1.1 200 OK\r\nX-Endless: ", std::string(4096, 'a')},
        {"endless interim responses", "", "HTTP/1.1 100 Continue\r\n\r\n"},
        {"endless status line", "HTTP/1.1 200 ", std::string(4096, 'a')},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            std::size_t written = 0;
            scripted_receiver receiver(io, [&](tcp::socket& socket, int) -> asio::awaitable<void> {
                if (!co_await read_request(socket) || co_await write(socket, c.head)) {
                    co_return;
                }
                // At most 64 MiB: far past the client's limits and its socket buffers.
                while (written < 64u * 1024 * 1024) {
                    if (co_await write(socket, c.piece)) {
                        co_return;
                    }
                    written += c.piece.size();
                }
            });
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto started = clock_type::now();
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline(20s));
                BOOST_TEST((r.error == http::failure::protocol), to_string(r.error)
                                                                     << ": " << r.detail);
                BOOST_TEST(client.idle_connections() == 0u);
                BOOST_TEST((clock_type::now() - started < 10s));
            });
            // The client stopped at its header limit (64 KiB by default). The receiver's further
            // writes filled the socket buffers, which are far smaller than 64 MiB, and then failed.
            BOOST_TEST(written < 32u * 1024 * 1024);
        }
    }
}

BOOST_AUTO_TEST_CASE(send_never_follows_redirect) {
    scripted_receiver elsewhere(io,
                                answer_and_close("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    auto location = "http://127.0.0.1:" + std::to_string(elsewhere.port()) + "/moved";
    for (int status : {301, 302, 303, 307, 308}) {
        BOOST_TEST_CONTEXT("status " << status) {
            scripted_receiver receiver(io, answer_and_hold("HTTP/1.1 " + std::to_string(status) +
                                                           " Moved\r\nLocation: " + location +
                                                           "\r\nContent-Length: 0\r\n\r\n"));
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto r =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                BOOST_TEST((r.error == http::failure::none), r.detail);
                BOOST_TEST(r.response.status == status);
                BOOST_TEST(r.response.headers.find("Location").value_or("") == location);
                co_await pause(50ms);
            });
        }
    }
    BOOST_TEST(elsewhere.accepted() == 0);
}

BOOST_AUTO_TEST_CASE(send_times_out_when_receiver_never_answers) {
    scripted_receiver receiver(io, [](tcp::socket& socket, int) -> asio::awaitable<void> {
        if (co_await read_request(socket)) {
            co_await hold(socket, 30s);
        }
    });
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto started = clock_type::now();
        auto r = co_await client.send(plain_target(receiver.port()), post("{}"), deadline(500ms));
        auto took = clock_type::now() - started;
        BOOST_TEST((r.error == http::failure::timeout), to_string(r.error) << ": " << r.detail);
        // Timers never fire early; the upper bound only guards against a hang.
        BOOST_TEST((took >= 500ms));
        BOOST_TEST((took < 10s));
        BOOST_TEST(client.idle_connections() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(send_cuts_trickling_response_at_deadline) {
    // 300 bytes at one per 100 ms take 30 s: a deadline renewed by each byte would never fire.
    std::string const response =
        "HTTP/1.1 200 OK\r\nContent-Length: 260\r\n\r\n" + std::string(260, 'y');
    std::size_t sent = 0;
    scripted_receiver receiver(io, [&](tcp::socket& socket, int) -> asio::awaitable<void> {
        if (!co_await read_request(socket)) {
            co_return;
        }
        for (; sent < response.size(); ++sent) {
            if (co_await write(socket, std::string_view(response).substr(sent, 1))) {
                co_return;
            }
            co_await pause(100ms);
        }
    });
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto started = clock_type::now();
        auto r = co_await client.send(plain_target(receiver.port()), post("{}"), deadline(1s));
        auto took = clock_type::now() - started;
        BOOST_TEST((r.error == http::failure::timeout), to_string(r.error) << ": " << r.detail);
        BOOST_TEST((took >= 1s));
        BOOST_TEST((took < 8s));
        BOOST_TEST(sent < response.size());
        BOOST_TEST(client.idle_connections() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(send_retries_when_pooled_connection_closed) {
    struct case_t {
        std::string name;
        bool with_reset;
    };
    for (auto const& c : {case_t{"FIN", false}, case_t{"reset", true}}) {
        BOOST_TEST_CONTEXT(c.name) {
            int requests = 0;
            bool first_closed = false;
            scripted_receiver receiver(
                io, [&](tcp::socket& socket, int n) -> asio::awaitable<void> {
                    while (co_await read_request(socket)) {
                        ++requests;
                        co_await write(socket, "HTTP/1.1 200 OK\r\nContent-Length: " +
                                                   std::to_string(std::to_string(n).size()) +
                                                   "\r\n\r\n" + std::to_string(n));
                        if (n == 1) {
                            // Closes the first connection while the client keeps it idle.
                            co_await pause(50ms);
                            if (c.with_reset) {
                                reset(socket);
                            }
                            first_closed = true;
                            co_return;
                        }
                    }
                });
            auto client = make_client();
            run(io, [&]() -> asio::awaitable<void> {
                auto first =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                BOOST_TEST((first.error == http::failure::none), first.detail);
                BOOST_TEST(first.response.body == "1");
                BOOST_TEST(client.idle_connections() == 1u);

                while (!first_closed) {
                    co_await pause(10ms);
                }
                co_await pause(100ms); // lets the FIN or RST reach the client's socket

                auto second =
                    co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
                BOOST_TEST((second.error == http::failure::none), to_string(second.error)
                                                                      << ": " << second.detail);
                BOOST_TEST(second.response.body == "2");
                BOOST_TEST(receiver.accepted() == 2);
                BOOST_TEST(client.idle_connections() == 1u);
            });
            BOOST_TEST(requests == 2);
        }
    }
}

BOOST_AUTO_TEST_CASE(send_drops_pooled_connection_with_unsolicited_bytes) {
    // After its response, the receiver sends a second one that no request asked for. Reusing
    // the connection would hand that stale 500 to the next request as its response.
    scripted_receiver receiver(io, [&](tcp::socket& socket, int n) -> asio::awaitable<void> {
        if (!co_await read_request(socket)) {
            co_return;
        }
        co_await write(socket, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + std::to_string(n));
        co_await pause(50ms);
        co_await write(socket, "HTTP/1.1 500 Stale\r\nContent-Length: 5\r\n\r\nstale");
        if (co_await read_request(socket)) {
            co_await write(socket, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreuse");
        }
        co_await hold(socket, 30s);
    });
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto first = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST(first.response.body == "1");
        BOOST_TEST(client.idle_connections() == 1u);
        co_await pause(200ms); // the stale response arrives while the connection is idle

        auto second = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((second.error == http::failure::none), second.detail);
        BOOST_TEST(second.response.status == 200);
        BOOST_TEST(second.response.body == "2");
        BOOST_TEST(receiver.accepted() == 2);
    });
}

BOOST_AUTO_TEST_CASE(send_reuses_pooled_tls_connection) {
    // The check for bytes on an idle connection must not mistake TLS records that arrive with
    // every handshake, such as TLS 1.3 session tickets, for unsolicited data.
    asio::ssl::context tls(asio::ssl::context::tls_server);
    tls.use_certificate_chain_file(certs.cert_file);
    tls.use_private_key_file(certs.key_file, asio::ssl::context::pem);
    std::set<std::uint16_t> client_ports; // one per connection the requests came on
    http::server server(
        io.get_executor(),
        [&](http::request&,
            http::request_context const& context) -> asio::awaitable<http::response> {
            client_ports.insert(context.remote.port());
            http::response res;
            res.status = 200;
            res.body = "ok";
            co_return res;
        },
        {}, &tls);
    server.listen({loopback, 0});
    asio::co_spawn(io, server.run(), asio::detached);

    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto target = target_for("https", "127.0.0.1", server.local_endpoint().port(), true);
        for (int i = 0; i < 3; ++i) {
            auto r = co_await client.send(target, post("{}"), deadline());
            BOOST_TEST((r.error == http::failure::none), to_string(r.error) << ": " << r.detail);
            BOOST_TEST(r.response.body == "ok");
            BOOST_TEST(client.idle_connections() == 1u);
            co_await pause(50ms);
        }
    });
    server.stop();
    BOOST_TEST(client_ports.size() == 1u);
}

BOOST_AUTO_TEST_CASE(send_rejects_switching_protocols) {
    // The request asked for no upgrade, so a 101 is invalid and the connection is unusable for
    // HTTP afterwards.
    scripted_receiver receiver(
        io, answer_and_hold("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\n\r\n"));
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(plain_target(receiver.port()), post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::protocol), to_string(r.error) << ": " << r.detail);
        BOOST_TEST(client.idle_connections() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(send_fails_tls_on_untrusted_certificate) {
    // A self-signed certificate for the right name, which the client's CA did not sign.
    revdesk::test::temp_dir dir;
    revdesk::test::shell("cd '" + dir.path().string() +
                         "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                         "-nodes -keyout self.key -out self.pem -days 2 -subj '/CN=localhost' "
                         "-addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>&1");
    counting_tls_server server(io, dir.file("self.pem"), dir.file("self.key"));

    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("https", "127.0.0.1", server.port(), true),
                                      post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::tls), to_string(r.error) << ": " << r.detail);
        BOOST_TEST(r.detail.find("TLS handshake") != std::string::npos, r.detail);
        BOOST_TEST(r.detail.find("certificate verify failed") != std::string::npos, r.detail);
    });
    server.stop();
    BOOST_TEST(server.served() == 0);
}

BOOST_AUTO_TEST_CASE(send_rejects_certificate_without_subject_alt_name) {
    // Signed by the CA the client trusts, for CN=localhost, but without a subjectAltName.
    auto directory = std::filesystem::path(certs.ca_file).parent_path().string();
    revdesk::test::shell(
        "cd '" + directory +
        "' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout cn.key -out cn.csr -subj '/CN=localhost' 2>&1"
        " && openssl x509 -req -in cn.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cn.pem "
        "-days 2 2>&1");
    counting_tls_server server(io, directory + "/cn.pem", directory + "/cn.key");

    // `localhost` resolves to 127.0.0.1 only, whatever the machine's hosts file contains.
    http::resolve_function loopback_only =
        [](std::string const&,
           std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
        ec = {};
        co_return std::vector<asio::ip::address>{asio::ip::make_address("127.0.0.1")};
    };
    http::client client(io.get_executor(), client_tls, allow_loopback(), {}, loopback_only);
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("https", "localhost", server.port(), false),
                                      post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::tls), to_string(r.error) << ": " << r.detail);
        BOOST_TEST(r.detail.find("hostname mismatch") != std::string::npos, r.detail);
    });
    server.stop();
    BOOST_TEST(server.served() == 0);
}

BOOST_AUTO_TEST_CASE(send_fails_tls_when_receiver_speaks_plain_http) {
    scripted_receiver receiver(io, [](tcp::socket& socket, int) -> asio::awaitable<void> {
        char buffer[1024];
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), http::use_nothrow);
        if (!ec) {
            co_await write(socket, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
        co_await hold(socket, 30s);
    });
    auto client = make_client();
    run(io, [&]() -> asio::awaitable<void> {
        auto r = co_await client.send(target_for("https", "127.0.0.1", receiver.port(), true),
                                      post("{}"), deadline());
        BOOST_TEST((r.error == http::failure::tls), to_string(r.error) << ": " << r.detail);
    });
}

BOOST_AUTO_TEST_SUITE_END()
