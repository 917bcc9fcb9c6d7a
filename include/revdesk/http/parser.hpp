// Strict, sans-I/O HTTP/1.1 parsers for requests and responses (RFC 9110, RFC 9112).
//
// The parsers take bytes in pieces of any size and never touch a socket. Each one reads one
// message at a time and stops right after its last byte, so pipelined bytes stay with the caller.
// The rules they enforce, their deliberate differences from llhttp and the error-to-status table
// are listed in docs/http-conformance.md. In short:
// - Lines end in CRLF only: a bare LF or a bare CR anywhere in the start line, a field line or a
//   chunk line is `error::bad_line_ending`.
// - Obsolete line folding, whitespace before a field's colon and control characters in the
//   target, names and values are rejected.
// - The body length follows RFC 9112 section 6.3. Content-Length must be one plain decimal value.
//   Transfer-Encoding must be exactly `chunked` (other codings are `unsupported_transfer_coding`),
//   never together with Content-Length and never in an HTTP/1.0 message.
// - Chunk extensions are parsed, bounded and dropped. Trailer fields are parsed, bounded and
//   dropped: they never reach `headers`, so nothing in a trailer can change how the message is
//   understood.
// - Header names and values are stored as received, values without leading and trailing
//   whitespace. The parser does not check Host: call `validate_host` on a parsed request.
//
// Thread safety: a parser object is not safe for concurrent use; distinct objects are
// independent.
#pragma once

#include <revdesk/http/error.hpp>
#include <revdesk/http/message.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace revdesk::http {

/// Bounds on what a parser accepts. Exceeding one fails the message with the error named in each
/// member's comment. Every size is in bytes and counts the line's CRLF only where stated.
struct limits {
    /// The start line without its CRLF (`start_line_too_long`).
    std::size_t max_start_line = 8 * 1024;
    /// One field line without its CRLF, in the header and the trailer section (`field_too_long`).
    std::size_t max_field = 8 * 1024;
    /// Number of header fields (`too_many_fields`).
    std::size_t max_fields = 100;
    /// The whole header section: the start line, every field line and the empty line, with their
    /// CRLFs (`header_too_large`). For a response, interim 1xx responses count too.
    std::size_t max_header_bytes = 64 * 1024;
    /// The body after removing chunked framing (`body_too_large`). A Content-Length or chunk
    /// size that exceeds it fails as soon as it is read, before any of its data.
    std::size_t max_body = 1024 * 1024;
    /// Hex digits of one chunk size, leading zeros included (`chunk_size_too_long`).
    std::size_t max_chunk_size_digits = 16;
    /// The chunk extensions of one chunk-size line, from the end of the size to the CR
    /// (`chunk_extension_too_long`).
    std::size_t max_chunk_extension = 1024;
    /// The trailer section: every trailer field line and the final empty line, with their CRLFs
    /// (`trailer_too_large`).
    std::size_t max_trailer_bytes = 8 * 1024;
};

} // namespace revdesk::http

// The state machine shared by both parsers needs `limits` complete.
#include <revdesk/http/detail/parser_core.hpp>

namespace revdesk::http {

/// Parses one HTTP/1.1 (or 1.0) request at a time from a byte stream.
///
/// Accepted methods are those llhttp 8.1 accepts for HTTP (GET, HEAD, POST, PUT, DELETE, CONNECT,
/// OPTIONS, TRACE, PATCH and the WebDAV, UPnP and link methods); any other token fails with
/// `error::unknown_method`. Empty lines before a request line are skipped (RFC 9112 section 2.2)
/// and count towards `limits::max_header_bytes`. The body is complete in `get().body` once
/// `done()` is true. After a CONNECT request or an accepted protocol upgrade the bytes that follow
/// are not HTTP: the caller must stop feeding them to the parser.
class request_parser {
public:
    explicit request_parser(limits l = {});

    /// Parses bytes from `input` and returns how many it consumed. Stops right after the last
    /// byte of one message, so bytes of a pipelined next request stay unconsumed. Returns 0 once
    /// `done()` is true, until `release()` or `reset()`. On a violation sets `ec` to an
    /// `http::error` and returns the bytes consumed up to it. The parser then stays failed, and
    /// every later call sets the same `ec`, until `reset()`. Input may be split anywhere: the
    /// verdict and the message do not depend on how the bytes are divided between calls.
    /// `input` is not kept after the call returns.
    std::size_t feed(std::string_view input, std::error_code& ec);

    /// Returns whether the start line and header fields are parsed and the body framing is valid.
    /// From then on `get()` contains method, target, version and headers.
    bool header_done() const noexcept;

    /// Returns whether the whole message, body included, is parsed.
    bool done() const noexcept;

    /// Returns the message being parsed. Its fields are complete once `header_done()` is true,
    /// its body once `done()` is true.
    request& get() noexcept;

    /// Moves the message out and resets the parser for the next one.
    request release();

    /// Forgets the message, any partial input and any error, but keeps the limits.
    void reset();

private:
    detail::parser_core<request> core_;
};

/// Parses one HTTP/1.1 (or 1.0) response at a time from a byte stream.
///
/// Interim 1xx responses other than 101 are parsed and skipped: the parser goes on to the final
/// response. Responses with status 1xx, 204 or 304, and every response after
/// `expect_no_body()`, end with their header section. A response with neither Content-Length nor
/// Transfer-Encoding has a body delimited by the end of the stream, which `feed_eof` completes.
class response_parser {
public:
    explicit response_parser(limits l = {});

    /// Declares that the response has no body whatever its framing fields contain, as for the
    /// response to a HEAD request. Applies to the current message only: call it before feeding,
    /// again after every `reset()` or `release()`.
    void expect_no_body();

    /// Keeps at most `cap` body bytes in `get().body` and drops the rest while still following
    /// the framing up to the end of the message. `limits::max_body` still bounds the whole body,
    /// kept and dropped. The cap stays in force across `reset()` and `release()`.
    void set_body_cap(std::size_t cap);

    /// Stores only the header fields whose names are in `names` (compared case-insensitively)
    /// and drops the others after checking them like any field: they still count towards
    /// `limits::max_fields`, and Content-Length and Transfer-Encoding still frame the body. An
    /// empty span, the default, keeps every field. `names` is not copied and must outlive the
    /// parser or the next call. Stays in force across `reset()` and `release()`. Keep
    /// `Connection` when the caller uses `response::keep_alive()`, which reads it.
    void keep_only(std::span<std::string_view const> names);

    /// Returns whether body bytes were dropped because of `set_body_cap`.
    bool truncated() const noexcept;

    /// Parses bytes from `input` and returns how many it consumed, with the contract of
    /// `request_parser::feed`.
    std::size_t feed(std::string_view input, std::error_code& ec);

    /// Reports that the peer closed the stream. Completes a body delimited by the end of the
    /// stream and leaves a complete message as it is. In any other state sets `ec` to
    /// `error::unexpected_eof` and fails the parser.
    void feed_eof(std::error_code& ec);

    /// Returns whether the final response's status line and header fields are parsed and its
    /// framing is valid.
    bool header_done() const noexcept;

    /// Returns whether the whole final response, body included, is parsed.
    bool done() const noexcept;

    /// Returns the response being parsed, with the completeness rules of `request_parser::get`.
    response& get() noexcept;

    /// Moves the message out and resets the parser for the next one.
    response release();

    /// Forgets the message, any partial input, any error and `expect_no_body()`, but keeps the
    /// limits and the body cap.
    void reset();

private:
    detail::parser_core<response> core_;
};

/// Checks the Host field of a parsed request as RFC 9112 section 3.2 requires of a server:
/// an HTTP/1.1 request needs exactly one Host field (`error::missing_host`,
/// `error::multiple_host`), and its value must be empty or `uri-host [":" port]`
/// (`error::bad_host`). An HTTP/1.0 request may omit it. Returns a clear code when it is valid.
std::error_code validate_host(request const& r) noexcept;

/// Rewrites an absolute-form target (`http://host/path?query`) to the origin-form of the same
/// resource (`/path?query`, with `/` for an empty path), as an origin server reads a target of
/// that form (RFC 9112 section 3.2.2). Leaves the other forms as they are.
void use_origin_form(request& r);

} // namespace revdesk::http

#include <revdesk/http/impl/parser.ipp>
