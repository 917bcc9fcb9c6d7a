// Error codes of the HTTP/1.1 codec and the status code a server responds with to each.
#pragma once

#include <string>
#include <system_error>

namespace revdesk::http {

/// One failure of the HTTP/1.1 parser, each a distinct rule of RFC 9110 / RFC 9112 or a limit.
/// The values start at 1 so that a default-constructed error code means success.
enum class error {
    // Start line.
    bad_request_line = 1,  ///< The request line is not `method SP target SP version`.
    bad_method,            ///< The method is not a token.
    unknown_method,        ///< The method is a token but not one this codec implements (501).
    bad_target,            ///< The request target has an invalid character or form.
    bad_version,           ///< The version is not `HTTP/DIGIT.DIGIT`.
    version_not_supported, ///< A well-formed version other than HTTP/1.0 and HTTP/1.1 (505).
    bad_status_line,       ///< The status line is not `version SP status-code SP [reason]`.
    bad_status_code,       ///< The status code is not three digits in 100..599.
    bad_reason,            ///< The reason phrase has a control character.

    // Line structure and header fields.
    bad_line_ending,         ///< A line ends in bare LF, or a bare CR appears in a line.
    bad_field_name,          ///< A field line has an empty or invalid name, or no colon.
    space_before_colon,      ///< Whitespace between a field name and its colon.
    bad_field_value,         ///< A field value has a control character (NUL, DEL, ...).
    obs_fold,                ///< A field line starts with whitespace (obsolete line folding).
    space_after_start_line,  ///< Whitespace begins the line right after the start line.
    bad_content_length,      ///< Content-Length is not plain decimal digits or overflows 64 bits.
    multiple_content_length, ///< Content-Length appears more than once or holds a list.
    content_length_and_transfer_encoding, ///< Both Content-Length and Transfer-Encoding.
    transfer_encoding_in_http10,          ///< Transfer-Encoding in an HTTP/1.0 message.
    bad_transfer_encoding,                ///< Transfer-Encoding is malformed or has chunked
                                          ///< other than once and last.
    unsupported_transfer_coding,          ///< A transfer coding other than chunked (501).

    // Chunked body.
    bad_chunk_size,      ///< The chunk-size line does not start with hex digits.
    bad_chunk_extension, ///< A chunk extension does not follow the chunk-ext grammar.
    bad_chunk_end,       ///< Chunk data is not followed by CRLF.
    bad_trailer,         ///< A trailer field line is malformed.

    // Limits (see `limits`).
    start_line_too_long,      ///< The start line is longer than `max_start_line` (414).
    field_too_long,           ///< A field line is longer than `max_field` (431).
    too_many_fields,          ///< More header fields than `max_fields` (431).
    header_too_large,         ///< The header section is larger than `max_header_bytes` (431).
    body_too_large,           ///< The body is or is declared larger than `max_body` (413).
    chunk_size_too_long,      ///< A chunk size has more than `max_chunk_size_digits` digits.
    chunk_extension_too_long, ///< Chunk extensions longer than `max_chunk_extension` (413).
    trailer_too_large,        ///< The trailer section is larger than `max_trailer_bytes` (431).

    // End of stream.
    unexpected_eof, ///< The stream ended inside a message.

    // Host checks of `validate_host`, which the parser itself never reports.
    missing_host,  ///< An HTTP/1.1 request without a Host field.
    multiple_host, ///< More than one Host field.
    bad_host,      ///< A Host value that is not `uri-host [":" port]`.
};

/// Returns the error category of `error` (name "revdesk.http"). The object lives for the whole
/// program and is safe to use from any thread.
std::error_category const& category() noexcept;

/// Wraps `e` in a `std::error_code` of `category()`.
std::error_code make_error_code(error e) noexcept;

/// Returns the status code of the response to a request that failed with `ec`: 413 for body and
/// chunk-extension limits, 414 for a long request line, 431 for header and trailer limits, 501
/// for an unknown method or transfer coding, 505 for an unsupported version and 400 for every
/// other codec error. Returns 500 for an error of another category and 0 when `ec` is clear.
int status_for(std::error_code ec) noexcept;

} // namespace revdesk::http

template <>
struct std::is_error_code_enum<revdesk::http::error> : std::true_type {};

#include <revdesk/http/impl/codec_error.ipp>
