// A TCP connection that is either plain or wrapped in TLS, behind one interface.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstddef>
#include <optional>
#include <string_view>
#include <system_error>
#include <tuple>

namespace revdesk::http {

/// The completion token of every awaitable in this layer that reports errors as values: the
/// awaitable returns a tuple whose first element is the `std::error_code`.
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

/// A connected TCP socket, optionally under TLS. Reads and writes go through TLS when it is on.
///
/// Thread safety: none; one coroutine drives a stream at a time.
class stream {
public:
    using tcp = asio::ip::tcp;
    using tls_stream = asio::ssl::stream<tcp::socket>;

    explicit stream(tcp::socket socket)
        : tcp_(std::move(socket)) {}
    stream(tcp::socket socket, asio::ssl::context& tls)
        : tls_(std::in_place, std::move(socket), tls) {}

    bool is_tls() const noexcept { return tls_.has_value(); }

    tcp::socket& socket() noexcept { return tls_ ? tls_->next_layer() : *tcp_; }

    /// Returns the TLS stream; only valid when `is_tls()`.
    tls_stream& tls() noexcept { return *tls_; }

    /// Runs the TLS handshake as `side`; does nothing on a plain stream.
    asio::awaitable<std::error_code> handshake(asio::ssl::stream_base::handshake_type side) {
        if (!tls_) {
            co_return std::error_code{};
        }
        auto [ec] = co_await tls_->async_handshake(side, use_nothrow);
        co_return ec;
    }

    // Both operations below return asio's awaitable of the operation itself. A coroutine that
    // awaited it in between would allocate a frame of its own on every call.

    /// Reads what is available, at most `buffer.size()` bytes.
    asio::awaitable<std::tuple<std::error_code, std::size_t>>
    read_some(asio::mutable_buffer buffer) {
        if (tls_) {
            return tls_->async_read_some(buffer, use_nothrow);
        }
        return tcp_->async_read_some(buffer, use_nothrow);
    }

    /// Writes all of `bytes`, which must stay valid until the write completes. Returns the error
    /// and the number of bytes written.
    asio::awaitable<std::tuple<std::error_code, std::size_t>> write(std::string_view bytes) {
        auto buffer = asio::buffer(bytes.data(), bytes.size());
        if (tls_) {
            return asio::async_write(*tls_, buffer, use_nothrow);
        }
        return asio::async_write(*tcp_, buffer, use_nothrow);
    }

    /// Closes the socket at once, without a TLS close_notify. Safe to call more than once.
    void close() noexcept {
        std::error_code ignored;
        auto& s = socket();
        s.shutdown(tcp::socket::shutdown_both, ignored);
        s.close(ignored);
    }

    bool is_open() noexcept { return socket().is_open(); }

private:
    std::optional<tcp::socket> tcp_;
    std::optional<tls_stream> tls_;
};

/// Returns whether `ec` is an ordinary end of a connection (the peer closed it, the TLS stream was
/// truncated, or this side cancelled it) rather than a fault worth reporting.
inline bool is_expected_end(std::error_code const& ec) noexcept {
    return ec == asio::error::eof || ec == asio::error::operation_aborted ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == asio::error::bad_descriptor || ec == asio::ssl::error::stream_truncated;
}

} // namespace revdesk::http
