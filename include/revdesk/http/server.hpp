// An awaitable HTTP/1.1 server loop: keep-alive, limits, deadlines and graceful stop.
#pragma once

#include <revdesk/http/message.hpp>
#include <revdesk/http/parser.hpp>
#include <revdesk/http/serializer.hpp>
#include <revdesk/http/stream.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/write.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace revdesk::http {

/// Limits and deadlines of a server. The defaults suit an API that receives small JSON bodies.
struct server_options {
    http::limits limits;

    /// Time from a request's first byte to the end of its header section. A new connection also
    /// gets this time to finish its TLS handshake, then again to start its first request.
    std::chrono::milliseconds header_timeout{10'000};

    /// Time from the end of the header section to the end of the body.
    std::chrono::milliseconds body_timeout{30'000};

    /// Time a kept-alive connection may wait for the first byte of its next request.
    std::chrono::milliseconds idle_timeout{60'000};

    /// Time to write one response.
    std::chrono::milliseconds write_timeout{30'000};

    /// Connections served at once; further clients wait in the listen backlog.
    std::size_t max_connections = 10'000;

    /// Called with the client's address when a session ends with an unexpected error or the handler
    /// throws. The server goes on either way.
    std::function<void(std::string_view what)> on_error;
};

namespace detail {

// Returns the whole content of `file`; throws naming `what` and the file when it cannot be read.
inline std::string read_pem_file(std::string const& file, std::string_view what) {
    std::ifstream in(file, std::ios::binary);
    std::string text;
    if (in) {
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (!in && !in.eof()) {
        throw std::runtime_error("cannot read the " + std::string(what) + " file \"" + file +
                                 "\": " + std::strerror(errno));
    }
    return text;
}

// Selects HTTP/1.1 when the client offers it in ALPN, and otherwise no protocol. The server
// supports only HTTP/1.x, so a client that offers h2 first must not assume h2.
inline int select_http11(SSL*, unsigned char const** out, unsigned char* out_size,
                         unsigned char const* offered, unsigned int offered_size, void*) {
    static constexpr unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, out_size, http11, sizeof http11, offered, offered_size) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

} // namespace detail

/// Returns a TLS context for `server`: the certificate chain in `certificate_file` (PEM, the
/// server's certificate first, then intermediates) and its private key in `key_file` (PEM,
/// unencrypted).
///
/// It accepts TLS 1.2 and 1.3 only; TLS 1.2 uses forward-secret AEAD cipher suites (ECDHE with
/// AES-GCM or ChaCha20-Poly1305), TLS 1.3 the OpenSSL defaults. Compression and renegotiation
/// are off, and ALPN selects `http/1.1`. Throws `std::runtime_error` naming the file when a file
/// cannot be read, contains no certificate or no unencrypted key, or the key does not match the
/// certificate.
inline asio::ssl::context server_tls_context(std::string const& certificate_file,
                                             std::string const& key_file) {
    auto certificate_pem = detail::read_pem_file(certificate_file, "TLS certificate");
    auto key_pem = detail::read_pem_file(key_file, "TLS private key");

    asio::ssl::context tls(asio::ssl::context::tls_server);
    SSL_CTX* ctx = tls.native_handle();
    tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    SSL_CTX_set_alpn_select_cb(ctx, &detail::select_http11, nullptr);
    // No passphrase prompt on the terminal: an encrypted key fails to load instead.
    tls.set_password_callback(
        [](std::size_t, asio::ssl::context::password_purpose) { return std::string(); });

    std::error_code ec;
    tls.use_certificate_chain(asio::buffer(certificate_pem), ec);
    if (ec) {
        ERR_clear_error();
        throw std::runtime_error("the TLS certificate file \"" + certificate_file +
                                 "\" contains no valid PEM certificate (" + ec.message() +
                                 "); give the certificate chain in PEM, starting with "
                                 "-----BEGIN CERTIFICATE-----");
    }

    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), &BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, SSL_CTX_get_default_passwd_cb(ctx),
                                      SSL_CTX_get_default_passwd_cb_userdata(ctx))
            : nullptr,
        &EVP_PKEY_free);
    if (!key) {
        ERR_clear_error();
        throw std::runtime_error("the TLS private key file \"" + key_file +
                                 "\" contains no unencrypted PEM private key; give the key "
                                 "in PEM without a passphrase");
    }
    if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        throw std::runtime_error("the private key in \"" + key_file +
                                 "\" does not match the certificate in \"" + certificate_file +
                                 "\"; give the key that was created with the certificate");
    }
    return tls;
}

/// Extra facts about a request that are not part of the message.
struct request_context {
    asio::ip::tcp::endpoint remote;
    bool tls = false;
};

/// A request handler. It returns the response; throwing makes the server respond 500 and close
/// the connection.
using handler = std::function<asio::awaitable<response>(request&, request_context const&)>;

/// An HTTP/1.1 server that serves each connection in its own coroutine.
///
/// Every connection has one deadline at a time (header, body, idle or write, see
/// `server_options`); a client that trickles bytes is cut off at the deadline, not kept alive by
/// each byte. A malformed request gets the status of its error and the connection closes.
///
/// Thread safety: none. Create, run and stop the server from one thread (one `io_context` run by
/// one thread, or a strand).
class server {
public:
    /// Prepares a server whose handler is `h`. When `tls` is given, every connection starts with
    /// a TLS handshake; the context must outlive the server.
    server(asio::any_io_executor executor, handler h, server_options options = {},
           asio::ssl::context* tls = nullptr)
        : executor_(std::move(executor))
        , acceptor_(executor_)
        , handler_(std::move(h))
        , options_(std::move(options))
        , tls_(tls)
        , sessions_changed_(executor_) {}

    server(server const&) = delete;
    server& operator=(server const&) = delete;

    /// Binds and listens on `endpoint`. Throws `std::system_error` when the address is taken.
    void listen(asio::ip::tcp::endpoint const& endpoint) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(asio::socket_base::max_listen_connections);
    }

    /// Returns the bound address, with the port the system chose when it was 0.
    asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

    /// Accepts connections until `stop()`. Failed accepts (such as running out of file
    /// descriptors) back off from 10 ms up to 1 s instead of spinning.
    asio::awaitable<void> run() {
        auto backoff = std::chrono::milliseconds(10);
        while (acceptor_.is_open()) {
            co_await wait_for_free_slot();
            if (!acceptor_.is_open()) {
                break;
            }

            auto [ec, socket] = co_await acceptor_.async_accept(use_nothrow);
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
                break;
            }
            if (ec) {
                report("accept failed: " + ec.message());
                asio::steady_timer pause(executor_, backoff);
                co_await pause.async_wait(use_nothrow);
                backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
                continue;
            }
            backoff = std::chrono::milliseconds(10);
            start_session(std::move(socket));
        }
    }

    /// Stops accepting. Idle connections close at once; busy ones close after their current
    /// response.
    void stop() {
        stopping_ = true;
        std::error_code ignored;
        acceptor_.close(ignored);
        for (auto& s : sessions_) {
            if (s->idle) {
                s->connection->close();
            }
        }
        sessions_changed_.cancel();
    }

    /// Stops, then waits until every connection has closed or `deadline` has passed. At the
    /// deadline it closes what is left and cancels those sessions: the operation a handler awaits
    /// completes with `operation_aborted`. Returns the number of connections closed by force.
    ///
    /// NOTE: a handler that ignores cancellation keeps its session, and the server, in use until
    /// it returns; the server must outlive it.
    asio::awaitable<std::size_t> shutdown(std::chrono::milliseconds deadline) {
        stop();
        auto until = std::chrono::steady_clock::now() + deadline;
        while (!sessions_.empty() && std::chrono::steady_clock::now() < until) {
            sessions_changed_.expires_at(until);
            co_await sessions_changed_.async_wait(use_nothrow);
        }
        auto forced = sessions_.size();
        for (auto& s : sessions_) {
            s->forced = true;
            s->connection->close();
            // A deadline in the past ends the session's watchdog, which cancels `serve`.
            s->set_deadline(clock::time_point::min());
        }
        co_return forced;
    }

    /// Returns the number of open connections.
    std::size_t connections() const noexcept { return sessions_.size(); }

private:
    using clock = std::chrono::steady_clock;

    struct session_state {
        explicit session_state(asio::any_io_executor const& executor)
            : watchdog(executor) {}

        // Moves the deadline; the watchdog re-arms itself for the new one.
        void set_deadline(clock::time_point at) {
            deadline = at;
            watchdog.cancel();
        }

        std::unique_ptr<http::stream> connection;
        request_context context;
        clock::time_point deadline = clock::time_point::max();
        asio::steady_timer watchdog;
        bool idle = true;    // waiting for the first byte of a request
        bool forced = false; // closed and cancelled by `shutdown` at its deadline
    };
    using session_list = std::list<std::shared_ptr<session_state>>;

    asio::awaitable<void> wait_for_free_slot() {
        while (sessions_.size() >= options_.max_connections && acceptor_.is_open()) {
            sessions_changed_.expires_at(clock::time_point::max());
            co_await sessions_changed_.async_wait(use_nothrow);
        }
    }

    void start_session(asio::ip::tcp::socket socket) {
        auto state = std::make_shared<session_state>(executor_);
        std::error_code ignored;
        state->context.remote = socket.remote_endpoint(ignored);
        state->context.tls = tls_ != nullptr;
        state->connection = tls_ ? std::make_unique<http::stream>(std::move(socket), *tls_)
                                 : std::make_unique<http::stream>(std::move(socket));
        auto position = sessions_.insert(sessions_.end(), state);

        using namespace asio::experimental::awaitable_operators;
        asio::co_spawn(executor_, serve(*state) || watch(*state),
                       [this, position](std::exception_ptr failure, auto) {
                           if (failure) {
                               report_exception(failure);
                           }
                           (*position)->connection->close();
                           sessions_.erase(position);
                           sessions_changed_.cancel();
                       });
    }

    // Returns whether an HTTP/1.1 client waits for `100 Continue` before sending the body.
    static bool expects_continue(request const& r) noexcept {
        auto expect = r.headers.find("Expect");
        return r.http_version >= 11 && expect && iequals(*expect, "100-continue");
    }

    // Closes the connection once its deadline passes. The deadline may move while it waits.
    asio::awaitable<void> watch(session_state& s) {
        while (clock::now() < s.deadline) {
            s.watchdog.expires_at(s.deadline);
            co_await s.watchdog.async_wait(use_nothrow);
        }
    }

    asio::awaitable<void> serve(session_state& s) {
        auto& connection = *s.connection;
        if (connection.is_tls()) {
            // A client that connects and stays silent, or stalls in the handshake, is closed at
            // the header deadline. A failed handshake closes the connection without a report,
            // because scanners cause many of them.
            s.set_deadline(clock::now() + options_.header_timeout);
            if (!co_await starts_with_tls(s)) {
                co_return;
            }
            if (auto ec = co_await connection.handshake(asio::ssl::stream_base::server)) {
                co_return;
            }
        }

        request_parser parser(options_.limits);
        std::string buffered;
        // 8 KiB per connection, not zeroed: idle connections are cheap, and large bodies take a
        // few more reads.
        constexpr std::size_t read_size = 8 * 1024;
        auto chunk = std::make_unique_for_overwrite<char[]>(read_size);
        bool first_request = true;
        while (!stopping_ || !buffered.empty()) {
            // Phase 1: read until one whole request is parsed. Bytes already buffered belong to
            // a pipelined request. A new connection gets only the header deadline to start its
            // first request, so connections that never send anything do not pile up.
            s.idle = buffered.empty();
            s.set_deadline(clock::now() + (s.idle && !first_request ? options_.idle_timeout
                                                                    : options_.header_timeout));
            first_request = false;
            bool header_seen = false;
            std::error_code parse_error;
            while (!parser.done()) {
                if (!buffered.empty()) {
                    auto used = parser.feed(buffered, parse_error);
                    buffered.erase(0, used);
                    if (parse_error) {
                        break;
                    }
                    if (!header_seen && parser.header_done()) {
                        header_seen = true;
                        s.set_deadline(clock::now() + options_.body_timeout);
                        if (!parser.done() && expects_continue(parser.get())) {
                            co_await connection.write("HTTP/1.1 100 Continue\r\n\r\n");
                        }
                    }
                    if (parser.done()) {
                        break;
                    }
                }
                auto [ec, n] = co_await connection.read_some(asio::buffer(chunk.get(), read_size));
                if (ec) {
                    if (!is_expected_end(ec)) {
                        report("read from " + describe(s) + " failed: " + ec.message());
                    }
                    co_return;
                }
                if (s.idle) {
                    s.idle = false;
                    s.set_deadline(clock::now() + options_.header_timeout);
                }
                buffered.append(chunk.get(), n);
            }

            if (parse_error) {
                co_await send_error(s, status_for(parse_error), parse_error.message());
                co_return;
            }

            // Phase 2: respond. The handler's time does not count against the client.
            auto req = parser.release();
            bool keep_alive = req.keep_alive();
            response res;
            if (auto host_error = validate_host(req)) {
                co_await send_error(s, 400, host_error.message());
                co_return;
            }
            use_origin_form(req);
            s.set_deadline(clock::time_point::max());
            bool handler_failed = false;
            try {
                res = co_await handler_(req, s.context);
            } catch (std::exception const& e) {
                if (s.forced) {
                    co_return; // cancelled by shutdown, not a failure of the handler
                }
                // The path only: a query string may carry values that do not belong in a log.
                report("handler failed for " + req.method + " " +
                       req.target.substr(0, req.target.find('?')) + ": " + e.what());
                handler_failed = true;
            }
            if (s.forced) {
                co_return;
            }
            if (handler_failed) {
                co_await send_error(s, 500, "internal error");
                co_return;
            }

            keep_alive = keep_alive && !stopping_ && res.keep_alive();
            if (!keep_alive) {
                res.headers.set("Connection", "close");
            }
            res.http_version = 11;
            auto bytes = serialize(res);
            if (req.method == "HEAD") {
                // A response to HEAD has the fields of the GET response, Content-Length
                // included, but no body (RFC 9110, section 9.3.2).
                bytes.resize(bytes.size() - res.body.size());
            }
            s.set_deadline(clock::now() + options_.write_timeout);
            if (auto [ec, written] = co_await connection.write(bytes); ec) {
                co_return;
            }
            if (!keep_alive) {
                co_return;
            }
        }
    }

    // Waits for the first byte of a TLS connection and returns whether it starts a TLS handshake
    // record. Otherwise the client most likely sent plain HTTP to this HTTPS port, so it receives
    // a plain HTTP 400 that explains this before the connection closes.
    asio::awaitable<bool> starts_with_tls(session_state& s) {
        auto& socket = s.connection->socket();
        unsigned char first = 0;
        auto [ec, n] = co_await socket.async_receive(asio::buffer(&first, 1),
                                                     asio::socket_base::message_peek, use_nothrow);
        if (ec || n == 0) {
            co_return false;
        }
        constexpr unsigned char tls_handshake_record = 0x16;
        if (first == tls_handshake_record) {
            co_return true;
        }
        // Reads the bytes the client sent, so that closing the socket does not send a reset that
        // could discard the response.
        auto unread = std::make_unique_for_overwrite<char[]>(8 * 1024);
        // The result does not matter: the response goes out either way.
        co_await socket.async_receive(asio::buffer(unread.get(), 8 * 1024), use_nothrow);
        auto bytes = serialize(error_response(
            400, "this port speaks HTTPS only: send the request with an https:// URL"));
        s.set_deadline(clock::now() + options_.write_timeout);
        co_await asio::async_write(socket, asio::buffer(bytes), use_nothrow);
        co_return false;
    }

    // Answers a request that could not be served and closes the connection: after a framing
    // error the rest of the stream cannot be trusted.
    asio::awaitable<void> send_error(session_state& s, int status, std::string_view message) {
        auto res = error_response(status, message);
        s.set_deadline(clock::now() + options_.write_timeout);
        auto bytes = serialize(res);
        co_await s.connection->write(bytes);
        // NOTE: the connection then closes without draining request bytes still unread, such as
        // the rest of a rejected body. The kernel answers those with a reset, which over a real
        // network can discard this response before the client reads it; on loopback it arrives.
    }

    // The JSON error response of the server itself, with `Connection: close`.
    static response error_response(int status, std::string_view message) {
        response res;
        res.status = status;
        res.headers.set("Content-Type", "application/json");
        res.headers.set("Connection", "close");
        res.body =
            R"({"error":{"code":")" + std::string(error_code_for(status)) + R"(","message":")";
        for (char c : message) {
            if (c == '"' || c == '\\') {
                res.body.push_back('\\');
            }
            res.body.push_back(static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
        }
        res.body += R"(","field":null}})";
        return res;
    }

    // The machine-readable code of an error answered by the server itself, before any handler.
    static std::string_view error_code_for(int status) noexcept {
        switch (status) {
        case 408:
            return "request_timeout";
        case 413:
            return "body_too_large";
        case 414:
            return "uri_too_long";
        case 431:
            return "header_too_large";
        case 501:
            return "not_implemented";
        case 505:
            return "http_version_not_supported";
        default:
            return status >= 500 ? "internal" : "bad_request";
        }
    }

    static std::string describe(session_state const& s) {
        return s.context.remote.address().to_string() + ":" +
               std::to_string(s.context.remote.port());
    }

    void report(std::string_view what) const {
        if (options_.on_error) {
            options_.on_error(what);
        }
    }

    void report_exception(std::exception_ptr failure) const {
        try {
            std::rethrow_exception(failure);
        } catch (std::exception const& e) {
            report(std::string("session failed: ") + e.what());
        } catch (...) {
            report("session failed with an unknown exception");
        }
    }

    asio::any_io_executor executor_;
    asio::ip::tcp::acceptor acceptor_;
    handler handler_;
    server_options options_;
    asio::ssl::context* tls_;
    session_list sessions_;
    asio::steady_timer sessions_changed_; // cancelled whenever a session ends or stop() runs
    bool stopping_ = false;
};

} // namespace revdesk::http
