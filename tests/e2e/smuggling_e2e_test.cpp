// Request smuggling against the real revdesk-server binary. Each case sends one request over a
// raw TCP connection whose body hides a second, complete request: a DELETE of a webhook
// subscription with a valid API key. A server that frames the first request differently from
// a strict reading of RFC 9112 would run the hidden DELETE. After each case, curl checks that the
// subscription still exists.
#include <revdesk/http/parser.hpp>

#define BOOST_TEST_MODULE smuggling_e2e
#include <boost/test/unit_test.hpp>

#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using revdesk::test::curl;
using revdesk::test::quote;
using clock_type = std::chrono::steady_clock;

namespace {

std::string const api_key = "smuggling-test-key-41d9";

/// What came back on one raw connection.
struct raw_answer {
    std::string bytes;
    bool closed = false; // the server closed the connection before the read limit
};

// Connects to 127.0.0.1:`port`, writes `request` and reads until the server closes the connection
// or `limit` passes. Plain POSIX sockets keep the bytes exactly as written.
raw_answer exchange_raw(std::uint16_t port, std::string const& request,
                        std::chrono::milliseconds limit) {
    raw_answer answer;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    BOOST_TEST_REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        close(fd);
        BOOST_FAIL("cannot connect to the server on port " << port);
    }

    // The server may close before it has read everything; the rest is then dropped.
    std::size_t sent = 0;
    while (sent < request.size()) {
        auto n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            break;
        }
        sent += static_cast<std::size_t>(n);
    }

    auto until = clock_type::now() + limit;
    char buffer[4096];
    while (true) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now());
        if (left <= 0ms) {
            break;
        }
        pollfd readable{fd, POLLIN, 0};
        if (poll(&readable, 1, static_cast<int>(left.count())) <= 0) {
            continue;
        }
        auto n = recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) {
            answer.closed = true;
            break;
        }
        answer.bytes.append(buffer, static_cast<std::size_t>(n));
    }
    close(fd);
    return answer;
}

// Returns the status of each complete response in `bytes`, in order.
std::vector<int> statuses_in(std::string_view bytes) {
    std::vector<int> statuses;
    revdesk::http::response_parser parser;
    while (!bytes.empty()) {
        std::error_code ec;
        auto used = parser.feed(bytes, ec);
        if (ec || !parser.done()) {
            break;
        }
        bytes.remove_prefix(used);
        statuses.push_back(parser.release().status);
    }
    return statuses;
}

std::string hex(std::size_t n) {
    char text[32];
    std::snprintf(text, sizeof text, "%zx", n);
    return text;
}

/// One smuggling attempt: the bytes on the wire, built around the hidden request, and what the
/// server must do with them.
struct attempt {
    std::string name;
    std::function<std::string(std::string const& host, std::string const& hidden)> build;
    int status;           // status of the one response to the outer request
    bool closes;          // whether the server closes the connection after it
    bool deletes = false; // true only for the control case that sends the DELETE openly
};

// The outer request's start line and Host field; every case goes on from here.
std::string post_healthz(std::string const& host, std::string_view version = "HTTP/1.1") {
    return "POST /healthz " + std::string(version) + "\r\nHost: " + host + "\r\n";
}

std::string const chunked_end = "0\r\n\r\n";

std::string length_of(std::string const& text) {
    return std::to_string(text.size());
}

std::vector<attempt> attempts() {
    using s = std::string;
    return {
        // Controls: the hidden request works when sent openly, and is inert inside a valid body.
        {"control: pipelined DELETE",
         [](s const& host, s const& hidden) {
             return "GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n" + hidden;
         },
         200, false, true},
        {"control: DELETE as Content-Length body",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: " + length_of(hidden) + "\r\n\r\n" +
                    hidden;
         },
         405, false},

        // Content-Length together with Transfer-Encoding.
        {"Content-Length then Transfer-Encoding",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: " + length_of(chunked_end + hidden) +
                    "\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_end + hidden;
         },
         400, true},
        {"Transfer-Encoding then Content-Length",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\nContent-Length: " +
                    length_of(chunked_end + hidden) + "\r\n\r\n" + chunked_end + hidden;
         },
         400, true},

        // Content-Length values that a lenient parser reads as 0 or 5.
        {"two Content-Length, 0 first",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "Content-Length: 0\r\nContent-Length: " + length_of(hidden) + "\r\n\r\n" +
                    hidden;
         },
         400, true},
        {"two Content-Length, 0 last",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: " + length_of(hidden) +
                    "\r\nContent-Length: 0\r\n\r\n" + hidden;
         },
         400, true},
        {"Content-Length: +5",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: +5\r\n\r\nhello" + hidden;
         },
         400, true},
        {"Content-Length: 0 5",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: 0 5\r\n\r\nhello" + hidden;
         },
         400, true},
        {"Content-Length: 0x5",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: 0x5\r\n\r\nhello" + hidden;
         },
         400, true},
        {"Content-Length: 5,6",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: 5,6\r\n\r\nhello" + hidden;
         },
         400, true},
        {"Content-Length: 5, 5",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: 5, 5\r\n\r\nhello" + hidden;
         },
         400, true},
        {"Content-Length of 2^64 + 5",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: 18446744073709551621\r\n\r\nhello" +
                    hidden;
         },
         400, true},
        {"Content-Length with NUL",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + s("Content-Length: 5\0 0\r\n\r\nhello", 29) + hidden;
         },
         400, true},

        // Transfer-Encoding that a lenient parser reads as chunked, or as no body at all.
        {"Transfer-Encoding : chunked",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding : chunked\r\n\r\n" + chunked_end +
                    hidden;
         },
         400, true},
        {"Transfer-Encoding: chunked, gzip",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked, gzip\r\n\r\n" + chunked_end +
                    hidden;
         },
         400, true},
        {"Transfer-Encoding: gzip",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: gzip\r\n\r\n" + hidden;
         },
         501, true},
        {"Transfer-Encoding: gzip, chunked",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked_end +
                    hidden;
         },
         501, true},
        {"Transfer-Encoding: identity",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: identity\r\n\r\n" + hidden;
         },
         501, true},
        {"Transfer-Encoding twice",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    chunked_end + hidden;
         },
         400, true},
        {"Transfer-Encoding in HTTP/1.0",
         [](s const& host, s const& hidden) {
             return post_healthz(host, "HTTP/1.0") +
                    "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_end +
                    hidden;
         },
         400, true},
        {"Transfer-Encoding with NUL",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + s("Transfer-Encoding: chunked\0\r\n\r\n", 31) +
                    chunked_end + hidden;
         },
         400, true},

        // Field names are case-insensitive, so this one is chunked: the hidden request is the
        // data of its one chunk, and the outer request is served.
        {"tRANSFER-ENCODING: chunked",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "tRANSFER-ENCODING: chunked\r\n\r\n" + hex(hidden.size()) +
                    "\r\n" + hidden + "\r\n" + chunked_end;
         },
         405, false},

        // Line endings and folding that hide a Transfer-Encoding from one reader of the header.
        {"bare LF before Transfer-Encoding",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "X-Note: a\nTransfer-Encoding: chunked\r\nContent-Length: " +
                    length_of(chunked_end + hidden) + "\r\n\r\n" + chunked_end + hidden;
         },
         400, true},
        {"bare CR before Transfer-Encoding",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "X-Note: a\rTransfer-Encoding: chunked\r\nContent-Length: " +
                    length_of(chunked_end + hidden) + "\r\n\r\n" + chunked_end + hidden;
         },
         400, true},
        {"bare LF ending every line",
         [](s const& host, s const& hidden) {
             return "POST /healthz HTTP/1.1\nHost: " + host + "\nContent-Length: 0\n\n" + hidden;
         },
         400, true},
        {"obs-fold hiding Transfer-Encoding",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Content-Length: " + length_of(chunked_end + hidden) +
                    "\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\n\r\n" + chunked_end + hidden;
         },
         400, true},
        {"obs-fold continuing Transfer-Encoding",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\t, identity\r\n\r\n" +
                    chunked_end + hidden;
         },
         400, true},

        // Chunk lines that a lenient parser reads as the last chunk.
        {"chunk size 0x0",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n" + hidden;
         },
         400, true},
        {"chunk size of 2^64",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n\r\n" + hidden;
         },
         413, true},
        {"chunk size of 17 zero digits",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "Transfer-Encoding: chunked\r\n\r\n00000000000000000\r\n\r\n" + hidden;
         },
         400, true},
        {"chunk size with space before extension",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\r\n0 ;ext\r\n\r\n" +
                    hidden;
         },
         400, true},
        {"chunk extension with unterminated quote",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\r\n0;ext=\"open\r\n\r\n" +
                    hidden;
         },
         400, true},
        {"chunk extension ending in bare LF",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\r\n0;ext\n\r\n" + hidden;
         },
         400, true},
        {"chunk extension with LF in a quoted value",
         [](s const& host, s const& hidden) {
             return post_healthz(host) +
                    "Transfer-Encoding: chunked\r\n\r\n1;a=\"\n\"\r\nx\r\n0\r\n\r\n" + hidden;
         },
         400, true},
        {"chunk extension over the limit",
         [](s const& host, s const& hidden) {
             return post_healthz(host) + "Transfer-Encoding: chunked\r\n\r\n0;" + s(2000, 'e') +
                    "\r\n\r\n" + hidden;
         },
         413, true},
    };
}

struct smuggling {
    revdesk::test::temp_dir dir;
    revdesk::test::server_process server{REVDESK_SERVER_PATH,
                                         {"--store", "memory:", "--allow-target", "127.0.0.1/32"},
                                         api_key,
                                         dir.file("server.log")};

    std::string auth() const { return "-H " + quote("Authorization: Bearer " + api_key); }

    // The address part of the base URL, such as 127.0.0.1:41234.
    std::string host() const { return server.base_url().substr(std::string("http://").size()); }

    std::uint16_t port() const {
        auto h = host();
        return static_cast<std::uint16_t>(std::stoi(h.substr(h.rfind(':') + 1)));
    }

    std::string subscribe() const {
        auto body =
            R"({ "webhook_url": "https://127.0.0.1:9/hook", "event_type": "call_completed" })";
        auto reply = curl("-X POST " + server.base_url() + "/api/v1/webhook_subscriptions " +
                          auth() + " -H 'Content-Type: application/json' -d " + quote(body));
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
        return std::string(reply.json().at("id").as_string());
    }

    int subscription_status(std::string const& id) const {
        return curl(server.base_url() + "/api/v1/webhook_subscriptions/" + id + " " + auth())
            .status;
    }

    std::string hidden_delete(std::string const& id) const {
        return "DELETE /api/v1/webhook_subscriptions/" + id + " HTTP/1.1\r\nHost: " + host() +
               "\r\nAuthorization: Bearer " + api_key + "\r\nContent-Length: 0\r\n\r\n";
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(server, smuggling)

BOOST_AUTO_TEST_CASE(smuggled_delete_never_runs) {
    for (auto const& a : attempts()) {
        BOOST_TEST_CONTEXT(a.name) {
            auto id = subscribe();
            BOOST_TEST_REQUIRE(subscription_status(id) == 200);

            auto bytes = a.build(host(), hidden_delete(id));
            // A connection the server keeps open is read for 1 s; one it closes ends sooner.
            auto answer = exchange_raw(port(), bytes, a.closes ? 10s : 1s);
            auto statuses = statuses_in(answer.bytes);

            BOOST_TEST_REQUIRE(!statuses.empty(), "no response: " << answer.bytes);
            BOOST_TEST(statuses.front() == a.status, answer.bytes.substr(0, 200));
            BOOST_TEST(answer.closed == a.closes);
            if (a.deletes) {
                BOOST_TEST(statuses.size() == 2u);
                BOOST_TEST(subscription_status(id) == 404);
            } else {
                BOOST_TEST(statuses.size() == 1u, answer.bytes);
                BOOST_TEST(subscription_status(id) == 200);
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
