// An awaitable HTTP/1.1 client for webhook deliveries: checked destinations, TLS, a keep-alive pool
// per origin, one deadline per exchange and capped response reads.
#pragma once

#include <revdesk/destination.hpp>
#include <revdesk/http/message.hpp>
#include <revdesk/http/parser.hpp>
#include <revdesk/http/serializer.hpp>
#include <revdesk/http/stream.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/steady_timer.hpp>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace revdesk::http {

/// Resolves a host name to its addresses. Injectable, so that tests can return any address.
using resolve_function = std::function<asio::awaitable<std::vector<asio::ip::address>>(
    std::string const& host, std::error_code& ec)>;

/// Returns a resolver that calls the system's getaddrinfo for the executor of the coroutine that
/// awaits it. It keeps no state, so any thread may call it.
inline resolve_function system_resolver() {
    return [](std::string const& host,
              std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
        asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
        auto [error, results] = co_await resolver.async_resolve(host, "", use_nothrow);
        std::vector<asio::ip::address> addresses;
        ec = error;
        for (auto const& entry : results) {
            addresses.push_back(entry.endpoint().address());
        }
        co_return addresses;
    };
}

/// Returns the value of the `Host` field of requests to `t`: the host, in brackets when it is an
/// IPv6 address, then `:` and the port unless the port is the scheme's default.
inline std::string host_field(webhook_target const& t) {
    auto host = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
    bool default_port =
        (t.scheme == "https" && t.port == 443) || (t.scheme == "http" && t.port == 80);
    return default_port ? host : host + ":" + std::to_string(t.port);
}

/// Limits of a client.
struct client_options {
    /// Bytes of a response body that are kept; a longer body is cut there, and the connection
    /// is closed instead of reused.
    std::size_t max_response_body = 16 * 1024;

    /// Limits on the response's status line and header section. Its `max_body` does not apply:
    /// the client keeps `max_response_body` bytes and stops reading there, so a status that
    /// arrives with a body of any declared length counts.
    http::limits response_limits;

    /// The names of the response header fields to keep, such as `Retry-After`. Empty keeps
    /// every field. The others are checked and then dropped without being copied. The client
    /// also keeps `Connection`, which decides whether a connection is reused.
    std::vector<std::string> kept_response_fields;

    /// Idle connections kept per origin.
    std::size_t max_idle_per_origin = 64;

    /// How long an idle connection stays in the pool.
    std::chrono::milliseconds idle_timeout{30'000};

    /// Threads of the client's own that carry the exchanges. With 0, every exchange runs on the
    /// client's executor. With more, each exchange goes to the thread with the fewest exchanges
    /// in flight. Each thread keeps its own connections, so the idle limit above applies per
    /// thread.
    /// NOTE: on a 2-core machine one or two threads lowered the fan-out benchmark's deliveries
    /// per second, also when exchanges were handed over in batches (benchmarks/profile-notes.md).
    std::size_t threads = 0;
};

/// The classes of failure of an exchange, recorded with each attempt.
enum class failure {
    none,     ///< A response arrived.
    timeout,  ///< The deadline passed.
    dns,      ///< The name did not resolve.
    blocked,  ///< The destination was refused: by the address policy, or because the URL or
              ///< request could not be made valid (see dispatcher).
    connect,  ///< No address accepted a connection.
    tls,      ///< The TLS handshake or certificate check failed.
    protocol, ///< The response was not valid HTTP/1.1.
    io,       ///< The connection broke while writing or reading.
};

/// Returns the stable name of a failure class, such as `timeout`.
inline std::string_view to_string(failure f) noexcept {
    switch (f) {
    case failure::none:
        return "none";
    case failure::timeout:
        return "timeout";
    case failure::dns:
        return "dns";
    case failure::blocked:
        return "blocked";
    case failure::connect:
        return "connect";
    case failure::tls:
        return "tls";
    case failure::protocol:
        return "protocol";
    case failure::io:
        return "io";
    }
    return "unknown";
}

/// The result of one request/response exchange.
struct exchange_result {
    failure error = failure::none;
    std::string detail;      ///< A sentence on the failure; empty on success.
    http::response response; ///< The response (body capped) when `error` is `none`.
    bool body_truncated = false;
};

/// Sends requests to webhook receivers.
///
/// Each exchange resolves the host, checks every address with the `address_policy` (one refused
/// address refuses the name), connects only to an address it has just checked, verifies the
/// peer's certificate and host name over TLS (with SNI), writes the request and reads one
/// response. Redirects are never followed: a 3xx is returned like any other status. A connection
/// whose response was read whole and allows keep-alive goes back to a pool per origin; it is
/// reused only if the receiver neither closed it nor sent anything while it was idle.
///
/// Thread safety: call `send` from one thread or strand, the one of the client's executor.
/// With `client_options::threads` set, the exchanges run on the client's own threads, and
/// `resolve` is then called from those threads, several at once. Destroy the client only when no
/// `send` is in flight.
class client {
public:
    /// `tls` must be set up to verify peers (`verify_peer` and trust anchors) and must outlive
    /// the client. A null `resolve` uses the system resolver.
    client(asio::any_io_executor executor, asio::ssl::context& tls, address_policy policy,
           client_options options = {}, resolve_function resolve = {})
        : executor_(std::move(executor))
        , tls_(tls)
        , policy_(std::move(policy))
        , options_(options)
        , resolve_(resolve ? std::move(resolve) : system_resolver()) {
        options_.response_limits.max_body = std::numeric_limits<std::size_t>::max();
        if (!options_.kept_response_fields.empty()) {
            options_.kept_response_fields.push_back("Connection");
            kept_names_.assign(options_.kept_response_fields.begin(),
                               options_.kept_response_fields.end());
        }
        if (options_.threads == 0) {
            lanes_.push_back(std::make_unique<lane>(executor_));
        }
        for (std::size_t i = 0; i < options_.threads; ++i) {
            lanes_.push_back(std::make_unique<lane>());
        }
    }

    client(client const&) = delete;
    client& operator=(client const&) = delete;

    ~client() {
        for (auto& l : lanes_) {
            l->stop();
        }
    }

    /// Sends `req` to `target` and reads the response, all before `deadline`.
    ///
    /// Never throws for network failures: they come back in `exchange_result::error`. Sets the
    /// `Host` field from the target. Throws std::invalid_argument when serialize() rejects the
    /// request.
    asio::awaitable<exchange_result> send(webhook_target const& target, request req,
                                          std::chrono::steady_clock::time_point deadline) {
        req.headers.set("Host", host_field(target));
        co_return co_await send_serialized(target, serialize(req), deadline);
    }

    /// Sends `bytes`, one whole request in wire form, to `target` and reads the response, all
    /// before `deadline`. The caller has checked and serialized the request, `Host` field
    /// included, for example with request_prefix and host_field. The response to a request that
    /// starts with `HEAD ` is read without a body. Fails like send().
    asio::awaitable<exchange_result>
    send_serialized(webhook_target const& target, std::string bytes,
                    std::chrono::steady_clock::time_point deadline) {
        // The exchange touches its lane only while it runs normally, because a frame that is
        // destroyed unfinished, after the client, must not reach into it.
        auto& chosen = least_busy_lane();
        ++chosen.in_flight;
        exchange_result result;
        try {
            if (!chosen.io) {
                result = co_await exchange_within(chosen, target, std::move(bytes), deadline);
            } else {
                result = co_await asio::co_spawn(
                    chosen.executor, exchange_within(chosen, target, std::move(bytes), deadline),
                    asio::use_awaitable);
            }
        } catch (...) {
            --chosen.in_flight;
            throw;
        }
        --chosen.in_flight;
        co_return result;
    }

    /// Returns the number of idle pooled connections, over all origins and threads.
    std::size_t idle_connections() const noexcept {
        std::size_t n = 0;
        for (auto const& l : lanes_) {
            n += l->idle.load(std::memory_order_relaxed);
        }
        return n;
    }

private:
    using clock = std::chrono::steady_clock;

    struct pooled {
        std::unique_ptr<http::stream> connection;
        clock::time_point idle_since;
    };

    // An executor that runs exchanges, with the idle connections opened on it. A lane of the
    // client's own owns an io_context and the thread that runs it, and the other kind borrows the
    // client's executor. Only the lane's executor touches `pool`, and only the client's executor
    // touches `in_flight`.
    struct lane {
        explicit lane(asio::any_io_executor borrowed)
            : executor(std::move(borrowed)) {}

        lane()
            : io(std::in_place, 1)
            , executor(io->get_executor())
            , work(asio::make_work_guard(*io)) {
            thread = std::thread([this] { io->run(); });
        }

        void stop() {
            if (!io) {
                return;
            }
            work.reset();
            io->stop();
            if (thread.joinable()) {
                thread.join();
            }
            // The pooled sockets belong to the io_context, so they go first.
            pool.clear();
            io.reset();
        }

        std::optional<asio::io_context> io;
        asio::any_io_executor executor;
        std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
        std::map<std::string, std::vector<pooled>> pool;
        std::vector<std::unique_ptr<char[]>> spare_buffers;
        std::atomic<std::size_t> idle = 0;
        std::size_t in_flight = 0;
        std::thread thread;
    };

    // Spare read buffers kept per lane: enough for the exchanges that usually run at once.
    static constexpr std::size_t max_spare_buffers = 256;
    static constexpr std::size_t read_size = 16 * 1024;

    // Reusing read buffers spares each exchange a 16 KiB allocation, which made the heap shrink
    // and grow again, page faults included. They are not zeroed: filling 16 KiB per exchange
    // cost an eighth of a delivery's instructions (callgrind, benchmarks/profile-notes.md).
    static std::unique_ptr<char[]> take_buffer(lane& l) {
        if (l.spare_buffers.empty()) {
            return std::make_unique_for_overwrite<char[]>(read_size);
        }
        auto buffer = std::move(l.spare_buffers.back());
        l.spare_buffers.pop_back();
        return buffer;
    }

    static void give_back_buffer(lane& l, std::unique_ptr<char[]> buffer) {
        if (l.spare_buffers.size() < max_spare_buffers) {
            l.spare_buffers.push_back(std::move(buffer));
        }
    }

    // A slower lane finishes its exchanges later and so has more of them in flight, which steers
    // new ones to the others. Ties go round-robin.
    lane& least_busy_lane() noexcept {
        auto count = lanes_.size();
        auto best = next_lane_ % count;
        for (std::size_t i = 1; i < count; ++i) {
            auto candidate = (next_lane_ + i) % count;
            if (lanes_[candidate]->in_flight < lanes_[best]->in_flight) {
                best = candidate;
            }
        }
        ++next_lane_;
        return *lanes_[best];
    }

    // The deadline of one exchange, shared with the handler of its timer, which may run after
    // the exchange has ended. When the deadline passes, the connection in use is closed, and the
    // operation that waits on it ends.
    struct deadline_watch {
        bool expired = false;
        http::stream* connection = nullptr;
    };

    static exchange_result timed_out() {
        return exchange_result{failure::timeout, "no response before the deadline", {}, false};
    }

    // Runs one exchange on `l`'s executor under the deadline.
    //
    // A timer that closes the connection bounds the round trip: racing each exchange against a
    // timer with awaitable operators cost a seventh of a delivery's instructions (callgrind),
    // for the coroutines and the state of a parallel group. Connecting still races the timer,
    // because closing a socket cannot interrupt a name lookup.
    asio::awaitable<exchange_result> exchange_within(lane& l, webhook_target const& target,
                                                     std::string bytes,
                                                     clock::time_point deadline) {
        // A response to HEAD has no body whatever its framing fields state (RFC 9110
        // section 9.3.2).
        bool head = bytes.starts_with("HEAD ");
        auto origin = target.origin();

        asio::steady_timer timer(l.executor, deadline);
        auto watch = std::make_shared<deadline_watch>();
        timer.async_wait([watch](std::error_code ec) {
            if (!ec) {
                watch->expired = true;
                if (watch->connection) {
                    watch->connection->close();
                }
            }
        });
        auto buffer = take_buffer(l);

        // A pooled connection may have been closed by the receiver while idle. When it fails
        // before a single response byte arrives, the request goes once more on a fresh one.
        if (auto connection = take_idle(l, origin, options_.idle_timeout)) {
            watch->connection = connection.get();
            bool retry = false;
            bool reusable = false;
            auto result = co_await round_trip(origin, *connection, bytes, head, buffer.get(),
                                              &retry, &reusable);
            watch->connection = nullptr;
            if (!retry || watch->expired) {
                co_return finish_exchange(l, origin, *watch, std::move(result),
                                          std::move(connection), reusable, std::move(buffer));
            }
        }

        using namespace asio::experimental::awaitable_operators;
        exchange_result failed;
        auto connecting = co_await (connect(l, target, failed) || timer.async_wait(use_nothrow));
        if (connecting.index() == 1 || watch->expired) {
            co_return timed_out();
        }
        auto connection = std::get<0>(std::move(connecting));
        if (!connection) {
            co_return failed;
        }
        watch->connection = connection.get();
        bool reusable = false;
        auto result =
            co_await round_trip(origin, *connection, bytes, head, buffer.get(), nullptr, &reusable);
        watch->connection = nullptr;
        co_return finish_exchange(l, origin, *watch, std::move(result), std::move(connection),
                                  reusable, std::move(buffer));
    }

    // Ends an exchange after its round trip. Past the deadline the result is a timeout whatever
    // arrived. Otherwise a connection that can carry another request goes back to the pool.
    exchange_result finish_exchange(lane& l, std::string const& origin, deadline_watch const& watch,
                                    exchange_result result,
                                    std::unique_ptr<http::stream> connection, bool reusable,
                                    std::unique_ptr<char[]> buffer) {
        give_back_buffer(l, std::move(buffer));
        if (watch.expired) {
            return timed_out();
        }
        if (reusable) {
            give_back(l, origin, std::move(connection));
        }
        return result;
    }

    static std::unique_ptr<http::stream> take_idle(lane& l, std::string const& origin,
                                                   std::chrono::milliseconds idle_timeout) {
        auto it = l.pool.find(origin);
        if (it == l.pool.end()) {
            return nullptr;
        }
        auto& list = it->second;
        while (!list.empty()) {
            auto item = std::move(list.back());
            list.pop_back();
            l.idle.fetch_sub(1, std::memory_order_relaxed);
            if (clock::now() - item.idle_since < idle_timeout && still_idle(*item.connection)) {
                return std::move(item.connection);
            }
        }
        return nullptr;
    }

    // Returns whether a pooled connection can carry the next request: it is open, the receiver
    // has not closed it, and no bytes arrived while it was idle. Such bytes belong to no request,
    // and the next exchange would take them for its response.
    // NOTE: over TLS, bytes that asio's TLS engine has already taken from the socket but not yet
    // passed to OpenSSL are not seen here; a read that ended exactly at the end of a response
    // leaves none in practice.
    static bool still_idle(http::stream& connection) {
        auto& socket = connection.socket();
        if (!socket.is_open()) {
            return false;
        }
        if (connection.is_tls()) {
            SSL* ssl = connection.tls().native_handle();
            if (SSL_pending(ssl) > 0 || BIO_pending(SSL_get_rbio(ssl)) > 0) {
                return false;
            }
        }
        // Peeks one byte without blocking, in one system call: EAGAIN means nothing arrived; 0
        // means the receiver closed the connection.
        char byte = 0;
        auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

    void give_back(lane& l, std::string const& origin, std::unique_ptr<http::stream> connection) {
        auto& list = l.pool[origin];
        if (list.size() < options_.max_idle_per_origin) {
            list.push_back({std::move(connection), clock::now()});
            l.idle.fetch_add(1, std::memory_order_relaxed);
        }
    }

    asio::awaitable<std::unique_ptr<http::stream>> connect(lane& l, webhook_target const& target,
                                                           exchange_result& out) {
        std::vector<asio::ip::address> addresses;
        if (target.host_is_ip) {
            std::error_code ec;
            addresses.push_back(asio::ip::make_address(target.host, ec));
        } else {
            std::error_code ec;
            addresses = co_await resolve_(target.host, ec);
            if (ec || addresses.empty()) {
                out.error = failure::dns;
                out.detail = "could not resolve " + target.host + ": " +
                             (ec ? ec.message() : std::string("no addresses"));
                co_return nullptr;
            }
        }

        for (auto const& address : addresses) {
            if (auto refusal = policy_.refusal(address)) {
                out.error = failure::blocked;
                out.detail = target.host + " resolved to a rejected address: " + *refusal;
                co_return nullptr;
            }
        }

        asio::ip::tcp::socket socket(l.executor);
        std::error_code last;
        for (auto const& address : addresses) {
            std::error_code ignored;
            socket.close(ignored);
            auto [ec] = co_await socket.async_connect({address, target.port}, use_nothrow);
            if (!ec) {
                last = {};
                break;
            }
            last = ec;
        }
        if (last || !socket.is_open()) {
            out.error = failure::connect;
            out.detail = "could not connect to " + target.origin() + ": " + last.message();
            co_return nullptr;
        }
        socket.set_option(asio::ip::tcp::no_delay(true));

        if (target.scheme != "https") {
            co_return std::make_unique<http::stream>(std::move(socket));
        }

        auto connection = std::make_unique<http::stream>(std::move(socket), tls_);
        auto& tls = connection->tls();
        if (!target.host_is_ip &&
            !SSL_set_tlsext_host_name(tls.native_handle(), target.host.c_str())) {
            out.error = failure::tls;
            out.detail = "could not set the TLS server name " + target.host;
            co_return nullptr;
        }
        tls.set_verify_mode(asio::ssl::verify_peer);
        // OpenSSL checks the name against the certificate's subjectAltName only. A certificate
        // without one does not match through its subject's common name (RFC 6125 section 6.4.4).
        SSL* ssl = tls.native_handle();
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                   X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        bool expected_name_set =
            target.host_is_ip
                ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), target.host.c_str()) == 1
                : SSL_set1_host(ssl, target.host.c_str()) == 1;
        if (!expected_name_set) {
            out.error = failure::tls;
            out.detail = "could not set the expected TLS peer name " + target.host;
            co_return nullptr;
        }
        if (auto ec = co_await connection->handshake(asio::ssl::stream_base::client)) {
            out.error = failure::tls;
            out.detail = "TLS handshake with " + target.origin() + " failed: " + ec.message();
            auto verdict = SSL_get_verify_result(ssl);
            if (verdict != X509_V_OK) {
                // Such as "hostname mismatch" or "unable to get local issuer certificate".
                out.detail += std::string(" (") + X509_verify_cert_error_string(verdict) + ")";
            }
            co_return nullptr;
        }
        co_return connection;
    }

    // Writes one request and reads its response into `chunk` (`read_size` bytes), which has no
    // body when `head` is set. When `retry` is given and the connection fails before any
    // response byte, sets it instead of reporting the failure. Sets `reusable` when the
    // connection can carry another request.
    asio::awaitable<exchange_result> round_trip(std::string const& origin, http::stream& connection,
                                                std::string const& bytes, bool head, char* chunk,
                                                bool* retry, bool* reusable) {
        exchange_result out;
        if (auto [ec, written] = co_await connection.write(bytes); ec) {
            if (retry) {
                *retry = true;
                co_return out;
            }
            out.error = failure::io;
            out.detail = "writing the request to " + origin + " failed: " + ec.message();
            co_return out;
        }

        response_parser parser(options_.response_limits);
        if (head) {
            parser.expect_no_body();
        }
        parser.set_body_cap(options_.max_response_body);
        parser.keep_only(kept_names_);
        std::size_t received = 0;
        bool leftover = false;
        bool closed_by_peer = false;
        while (!parser.done()) {
            auto [ec, n] = co_await connection.read_some(asio::buffer(chunk, read_size));
            if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
                closed_by_peer = true;
                if (received == 0 && retry) {
                    *retry = true;
                    co_return out;
                }
                std::error_code parse_error;
                parser.feed_eof(parse_error);
                if (parse_error && !parser.header_done()) {
                    out.error = received == 0 ? failure::io : failure::protocol;
                    out.detail = "the connection to " + origin +
                                 " closed before a whole response: " + parse_error.message();
                    co_return out;
                }
                if (parse_error) {
                    // The status and fields arrived but the body was cut short. The status still
                    // counts; the connection is not reused.
                    out.body_truncated = true;
                }
                break;
            }
            if (ec) {
                if (received == 0 && retry) {
                    *retry = true;
                    co_return out;
                }
                out.error = failure::io;
                out.detail = "reading the response from " + origin + " failed: " + ec.message();
                co_return out;
            }
            received += n;
            std::error_code parse_error;
            auto used = parser.feed({chunk, n}, parse_error);
            if (parse_error) {
                out.error = failure::protocol;
                out.detail = "invalid response from " + origin + ": " + parse_error.message();
                co_return out;
            }
            if (parser.truncated()) {
                // The kept prefix is full: stop reading rather than drain a body of any size.
                out.body_truncated = true;
                break;
            }
            leftover = used < n;
        }

        if (parser.get().status == 101) {
            // The request asked for no upgrade (RFC 9110 section 15.2.2), and after a switch the
            // connection no longer speaks HTTP/1.1.
            out.error = failure::protocol;
            out.detail = "invalid response from " + origin +
                         ": 101 Switching Protocols to a request that asked for no upgrade";
            co_return out;
        }
        out.response = parser.release();
        *reusable = parser_finished_cleanly(out) && !leftover && !closed_by_peer &&
                    out.response.keep_alive();
        co_return out;
    }

    static bool parser_finished_cleanly(exchange_result const& r) noexcept {
        return !r.body_truncated && r.error == failure::none;
    }

    asio::any_io_executor executor_;
    asio::ssl::context& tls_;
    address_policy policy_;
    client_options options_;
    // Views of the strings in options_.kept_response_fields. They stay valid because the
    // client can be neither copied nor moved.
    std::vector<std::string_view> kept_names_;
    resolve_function resolve_;
    std::vector<std::unique_ptr<lane>> lanes_;
    std::size_t next_lane_ = 0;
};

} // namespace revdesk::http
