// Definitions for revdesk/http/error.hpp.
#pragma once

namespace revdesk::http {

namespace detail {

class codec_category final : public std::error_category {
public:
    char const* name() const noexcept override { return "revdesk.http"; }

    std::string message(int value) const override {
        switch (static_cast<error>(value)) {
        case error::bad_request_line:
            return "invalid request line: expected method SP target SP version";
        case error::bad_method:
            return "invalid method: not a token";
        case error::unknown_method:
            return "method not implemented";
        case error::bad_target:
            return "invalid request target";
        case error::bad_version:
            return "invalid HTTP version: expected HTTP/1.0 or HTTP/1.1";
        case error::version_not_supported:
            return "HTTP version not supported: expected HTTP/1.0 or HTTP/1.1";
        case error::bad_status_line:
            return "invalid status line: expected version SP status-code SP reason";
        case error::bad_status_code:
            return "invalid status code: expected three digits in 100..599";
        case error::bad_reason:
            return "invalid reason phrase: control character";
        case error::bad_line_ending:
            return "invalid line ending: expected CRLF, got a bare CR or LF";
        case error::bad_field_name:
            return "invalid field name or missing colon";
        case error::space_before_colon:
            return "invalid field line: whitespace between field name and colon";
        case error::bad_field_value:
            return "invalid field value: control character";
        case error::obs_fold:
            return "obsolete line folding in a field value is not accepted";
        case error::space_after_start_line:
            return "invalid field line: whitespace right after the start line";
        case error::bad_content_length:
            return "invalid Content-Length: expected decimal digits within 64 bits";
        case error::multiple_content_length:
            return "invalid Content-Length: more than one value";
        case error::content_length_and_transfer_encoding:
            return "message has both Content-Length and Transfer-Encoding";
        case error::transfer_encoding_in_http10:
            return "Transfer-Encoding is not allowed in an HTTP/1.0 message";
        case error::bad_transfer_encoding:
            return "invalid Transfer-Encoding: chunked must appear once, as the final coding";
        case error::unsupported_transfer_coding:
            return "transfer coding not implemented: only chunked is supported";
        case error::bad_chunk_size:
            return "invalid chunk size: expected hexadecimal digits";
        case error::bad_chunk_extension:
            return "invalid chunk extension";
        case error::bad_chunk_end:
            return "invalid chunk: data not followed by CRLF";
        case error::bad_trailer:
            return "invalid trailer field line";
        case error::start_line_too_long:
            return "the request line or status line is too long (limit 8 KiB by default); shorten "
                   "the target";
        case error::field_too_long:
            return "a header field line is too long (limit 8 KiB by default); shorten or drop it";
        case error::too_many_fields:
            return "too many header fields (limit 100 by default); send fewer fields";
        case error::header_too_large:
            return "the header section is too large (limit 64 KiB by default); send fewer or "
                   "shorter fields";
        case error::body_too_large:
            return "the body is too large (limit 1 MiB by default); send a smaller body";
        case error::chunk_size_too_long:
            return "a chunk size has too many digits (limit 16 by default)";
        case error::chunk_extension_too_long:
            return "chunk extensions are too long (limit 1 KiB by default); drop them";
        case error::trailer_too_large:
            return "the trailer section is too large (limit 8 KiB by default); send fewer trailer "
                   "fields";
        case error::unexpected_eof:
            return "stream ended before the end of the message";
        case error::missing_host:
            return "HTTP/1.1 request without a Host field";
        case error::multiple_host:
            return "request with more than one Host field";
        case error::bad_host:
            return "invalid Host field value";
        }
        return "unknown revdesk.http error " + std::to_string(value);
    }
};

} // namespace detail

inline std::error_category const& category() noexcept {
    static detail::codec_category const instance;
    return instance;
}

inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), category()};
}

inline int status_for(std::error_code ec) noexcept {
    if (!ec) {
        return 0;
    }
    if (ec.category() != category()) {
        return 500;
    }
    switch (static_cast<error>(ec.value())) {
    case error::body_too_large:
    case error::chunk_extension_too_long:
        return 413;
    case error::start_line_too_long:
        return 414;
    case error::field_too_long:
    case error::too_many_fields:
    case error::header_too_large:
    case error::trailer_too_large:
        return 431;
    case error::unknown_method:
    case error::unsupported_transfer_coding:
        return 501;
    case error::version_not_supported:
        return 505;
    default:
        return 400;
    }
}

} // namespace revdesk::http
