// The state machine behind request_parser and response_parser. Included by
// revdesk/http/parser.hpp once `limits` is complete; include that header instead.
#pragma once

#include <revdesk/http/detail/parser_chars.hpp>
#include <revdesk/http/error.hpp>
#include <revdesk/http/message.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace revdesk::http::detail {

/// Returns whether `method` is one of the HTTP methods llhttp 8.1 accepts, so that the codec never
/// accepts a method that llhttp rejects.
inline bool is_known_method(std::string_view method) noexcept {
    static constexpr std::string_view methods[] = {
        "GET",         "POST",       "PUT",        "DELETE", "HEAD",     "OPTIONS", "PATCH",
        "CONNECT",     "TRACE",      "COPY",       "LOCK",   "MKCOL",    "MOVE",    "PROPFIND",
        "PROPPATCH",   "SEARCH",     "UNLOCK",     "BIND",   "REBIND",   "UNBIND",  "ACL",
        "REPORT",      "MKACTIVITY", "CHECKOUT",   "MERGE",  "M-SEARCH", "NOTIFY",  "SUBSCRIBE",
        "UNSUBSCRIBE", "PURGE",      "MKCALENDAR", "LINK",   "UNLINK",   "SOURCE",
    };
    return std::find(std::begin(methods), std::end(methods), method) != std::end(methods);
}

/// Parses `HTTP/DIGIT.DIGIT`: returns 10 or 11, or sets `e`.
inline version parse_version(std::string_view v, error& e) noexcept {
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !is_digit(v[5]) || v[6] != '.' ||
        !is_digit(v[7])) {
        e = error::bad_version;
        return 0;
    }
    if (v[5] == '1' && (v[7] == '0' || v[7] == '1')) {
        return v[7] == '0' ? 10 : 11;
    }
    e = error::version_not_supported;
    return 0;
}

/// Returns whether `s` is `uri-host [":" port]` (RFC 3986 section 3.2), where uri-host is an
/// IPv6 literal in brackets or a reg-name / IPv4 address of unreserved, sub-delims and
/// percent-encoded characters. The host must not be empty; with `require_port` the port must not
/// be empty either (the authority-form of a CONNECT request).
inline bool is_authority(std::string_view s, bool require_port) noexcept {
    std::string_view host;
    std::string_view rest;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos || close < 3) {
            return false;
        }
        for (char c : s.substr(1, close - 1)) {
            if (!is_hex(c) && c != ':' && c != '.') {
                return false;
            }
        }
        host = s.substr(0, close + 1);
        rest = s.substr(close + 1);
    } else {
        auto colon = s.find(':');
        host = s.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view{} : s.substr(colon);
        for (std::size_t i = 0; i < host.size(); ++i) {
            char c = host[i];
            if (c == '%') {
                if (i + 2 >= host.size() || !is_hex(host[i + 1]) || !is_hex(host[i + 2])) {
                    return false;
                }
                i += 2;
            } else if (!is_target_char(c) || c == ':' || c == '@' || c == '/' || c == '?') {
                return false;
            }
        }
    }
    if (!rest.empty()) {
        if (rest.front() != ':') {
            return false;
        }
        rest.remove_prefix(1);
        if (!std::all_of(rest.begin(), rest.end(), is_digit)) {
            return false;
        }
    }
    if (host.empty()) {
        return false;
    }
    return !require_port || !rest.empty();
}

/// Returns whether `s` is the userinfo of RFC 3986 section 3.2.1: unreserved, sub-delims, ':'
/// and percent-encoded characters.
inline bool is_userinfo(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) {
                return false;
            }
            i += 2;
        } else if (!is_target_char(c) || c == '@' || c == '/' || c == '?') {
            return false;
        }
    }
    return true;
}

/// Returns whether every character of `s` is allowed in a path or query (RFC 3986 pchar, '/',
/// '?') with each '%' starting a percent-encoded octet.
inline bool is_path_and_query(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) {
                return false;
            }
            i += 2;
        } else if (!is_target_char(c)) {
            return false;
        }
    }
    return true;
}

/// Checks the request-target of RFC 9112 section 3.2 for `method`. Returns whether it is valid.
/// The forms: origin-form (`/path?query`), absolute-form (`scheme://authority/path?query`),
/// authority-form (`host:port`, CONNECT only) and asterisk-form (`*`, OPTIONS only). Characters
/// must be those RFC 3986 allows in a URI, with every '%' starting a percent-encoded octet. A
/// fragment ('#') is not part of a request target. The absolute-form requires an authority, as
/// the http and https schemes do (RFC 9110 section 4.2).
inline bool is_valid_target(std::string_view method, std::string_view target) noexcept {
    if (target == "*") {
        return method == "OPTIONS";
    }
    if (method == "CONNECT") {
        return is_authority(target, true);
    }
    if (target.front() == '/') {
        return is_path_and_query(target);
    }

    // RFC 3986 lets a scheme continue with digits, '+', '-' and '.', but llhttp 8.1 accepts
    // letters only, and so does this parser: http and https need nothing else.
    auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    std::size_t i = 0;
    while (i < target.size() && is_alpha(target[i])) {
        ++i;
    }
    if (i == 0 || target.substr(i, 3) != "://") {
        return false;
    }
    std::string_view rest = target.substr(i + 3);
    std::size_t authority_end = std::min(rest.find('/'), rest.find('?'));
    std::string_view authority = rest.substr(0, authority_end);
    std::size_t at = authority.rfind('@');
    if (at != std::string_view::npos) {
        if (!is_userinfo(authority.substr(0, at))) {
            return false;
        }
        authority.remove_prefix(at + 1);
    }
    if (!is_authority(authority, false)) {
        return false;
    }
    return authority_end == std::string_view::npos || is_path_and_query(rest.substr(authority_end));
}

enum class parse_state : std::uint8_t {
    // Whole lines, split at LF.
    start_line,
    fields,
    trailers,
    // Bulk body bytes.
    body_length, // Content-Length body
    body_eof,    // body delimited by the end of the stream
    chunk_data,
    // The chunk-size line, one byte at a time (RFC 9112 section 7.1.1).
    chunk_size,           // hex digits
    chunk_ext_name_start, // after ';'
    chunk_ext_name,
    chunk_ext_value_start, // after '='
    chunk_ext_token,
    chunk_ext_quoted,
    chunk_ext_quoted_end, // after the closing '"'
    chunk_line_lf,        // CR seen, LF expected
    chunk_data_cr,
    chunk_data_lf,
    // Final states.
    done,
    failed,
};

/// Parser state shared by requests and responses; `Message` is `request` or `response`.
template <class Message>
class parser_core {
public:
    static constexpr bool is_request = std::is_same_v<Message, request>;

    explicit parser_core(limits const& l)
        : limits_(l)
        , caps_{to_signed(l.max_start_line), to_signed(l.max_field), to_signed(l.max_header_bytes),
                to_signed(l.max_trailer_bytes)} {}

    std::size_t feed(std::string_view input, std::error_code& ec);
    void feed_eof(std::error_code& ec);

    bool header_done() const noexcept { return header_done_; }
    bool done() const noexcept { return state_ == parse_state::done; }
    Message& get() noexcept { return message_; }

    Message release() {
        Message out = std::move(message_);
        reset();
        return out;
    }

    void reset();

    void expect_no_body() noexcept { no_body_ = true; }
    void set_body_cap(std::size_t cap) noexcept { body_cap_ = cap; }
    void keep_only(std::span<std::string_view const> names) noexcept { kept_ = names; }
    bool truncated() const noexcept { return truncated_; }

private:
    // The line limits as signed numbers, so that a budget can go below zero. Clamped far below
    // the maximum so that no sum overflows.
    struct signed_caps {
        long long max_start_line;
        long long max_field;
        long long max_header_bytes;
        long long max_trailer_bytes;
    };

    static long long to_signed(std::size_t v) noexcept {
        constexpr auto max = static_cast<std::size_t>(std::numeric_limits<long long>::max() / 4);
        return static_cast<long long>(std::min(v, max));
    }

    struct line_cap {
        long long max_content; // max line content (without CRLF), negative when none fits
        error too_long;        // the error when the content is longer
    };

    void fail(error e) noexcept {
        error_ = e;
        state_ = parse_state::failed;
    }

    line_cap current_line_cap() const noexcept;
    std::size_t consume_line(std::string_view in);
    void handle_line(std::string_view line);
    error parse_start_line(std::string_view line);
    error parse_field(std::string_view line, bool trailer);
    bool is_kept(std::string_view name) const noexcept;
    error on_content_length(std::string_view raw_value);
    error on_transfer_encoding(std::string_view raw_value);
    void finish_header();
    std::size_t consume_counted(std::string_view in);
    std::size_t consume_until_eof(std::string_view in);
    std::size_t consume_chunk_line(std::string_view in);
    void end_chunk_line();
    void append_body(std::string_view bytes);

    limits limits_;
    signed_caps caps_;
    Message message_;
    parse_state state_ = parse_state::start_line;
    error error_{};
    std::string partial_;           // the start of a line whose LF has not arrived yet
    std::size_t header_bytes_ = 0;  // header section bytes so far, interim responses included
    std::size_t trailer_bytes_ = 0; // trailer section bytes so far
    std::uint64_t content_length_ = 0;
    std::uint64_t remaining_ = 0;     // bytes left of the Content-Length body or current chunk
    std::uint64_t body_received_ = 0; // body bytes declared or read so far, dropped ones included
    std::uint64_t chunk_size_ = 0;
    std::size_t chunk_digits_ = 0;
    std::size_t chunk_ext_bytes_ = 0;
    std::size_t body_cap_ = std::numeric_limits<std::size_t>::max();
    std::size_t field_count_ = 0;             // header fields so far, kept or not
    std::span<std::string_view const> kept_; // the names of the fields to keep; empty keeps all
    bool has_content_length_ = false;
    bool has_transfer_encoding_ = false;
    bool chunked_ = false;
    bool header_done_ = false;
    bool no_body_ = false;
    bool truncated_ = false;
};

template <class Message>
void parser_core<Message>::reset() {
    message_ = Message{};
    field_count_ = 0;
    state_ = parse_state::start_line;
    error_ = {};
    partial_.clear();
    header_bytes_ = 0;
    trailer_bytes_ = 0;
    content_length_ = 0;
    remaining_ = 0;
    body_received_ = 0;
    chunk_size_ = 0;
    chunk_digits_ = 0;
    chunk_ext_bytes_ = 0;
    has_content_length_ = false;
    has_transfer_encoding_ = false;
    chunked_ = false;
    header_done_ = false;
    no_body_ = false;
    truncated_ = false;
}

template <class Message>
std::size_t parser_core<Message>::feed(std::string_view input, std::error_code& ec) {
    ec.clear();
    std::size_t pos = 0;
    while (pos < input.size() && state_ != parse_state::done && state_ != parse_state::failed) {
        std::string_view rest = input.substr(pos);
        switch (state_) {
        case parse_state::start_line:
        case parse_state::fields:
        case parse_state::trailers:
            pos += consume_line(rest);
            break;
        case parse_state::body_length:
        case parse_state::chunk_data:
            pos += consume_counted(rest);
            break;
        case parse_state::body_eof:
            pos += consume_until_eof(rest);
            break;
        default:
            pos += consume_chunk_line(rest);
            break;
        }
    }
    if (state_ == parse_state::failed) {
        ec = error_;
    }
    return pos;
}

template <class Message>
void parser_core<Message>::feed_eof(std::error_code& ec) {
    ec.clear();
    if (state_ == parse_state::body_eof) {
        state_ = parse_state::done;
    } else if (state_ != parse_state::done && state_ != parse_state::failed) {
        fail(error::unexpected_eof);
    }
    if (state_ == parse_state::failed) {
        ec = error_;
    }
}

// A line's own limit and the space left in its section combine into one cap, decided before the
// line's first byte. Checking that single cap first, both on a partial line and on a complete
// one, makes the error the same however the input is split.
template <class Message>
typename parser_core<Message>::line_cap parser_core<Message>::current_line_cap() const noexcept {
    long long line_max = 0;
    error line_error{};
    long long budget = 0; // section bytes left for this line's content (its CRLF taken off)
    error budget_error{};
    if (state_ == parse_state::trailers) {
        line_max = caps_.max_field;
        line_error = error::field_too_long;
        budget = caps_.max_trailer_bytes - static_cast<long long>(trailer_bytes_) - 2;
        budget_error = error::trailer_too_large;
    } else {
        bool start = state_ == parse_state::start_line;
        line_max = start ? caps_.max_start_line : caps_.max_field;
        line_error = start ? error::start_line_too_long : error::field_too_long;
        budget = caps_.max_header_bytes - static_cast<long long>(header_bytes_) - 2;
        budget_error = error::header_too_large;
    }
    if (line_max <= budget) {
        return {line_max, line_error};
    }
    return {budget, budget_error};
}

// Consumes whole lines while the state reads lines, so that a header section in one buffer is
// parsed without going back through `feed`.
template <class Message>
std::size_t parser_core<Message>::consume_line(std::string_view in) {
    std::size_t pos = 0;
    while (pos < in.size() && (state_ == parse_state::start_line || state_ == parse_state::fields ||
                               state_ == parse_state::trailers)) {
        std::string_view rest = in.substr(pos);
        line_cap cap = current_line_cap();
        auto const* lf = static_cast<char const*>(std::memchr(rest.data(), '\n', rest.size()));

        if (lf == nullptr) {
            // NOTE: an invalid byte in a partial line is reported only once the LF arrives or the
            // line exceeds its cap, so bytes that never contain an LF are buffered up to the cap.
            // A trailing CR may turn out to be the line's terminator, so it does not count yet.
            std::size_t seen = partial_.size() + rest.size() - (rest.back() == '\r' ? 1 : 0);
            if (static_cast<long long>(seen) > cap.max_content) {
                fail(cap.too_long);
                return in.size();
            }
            partial_.append(rest);
            return in.size();
        }

        std::size_t used = static_cast<std::size_t>(lf - rest.data()) + 1;
        pos += used;
        std::size_t total = partial_.size() + used; // the line with its LF
        char before_lf = used >= 2 ? rest[used - 2] : (partial_.empty() ? '\n' : partial_.back());
        bool has_cr = before_lf == '\r';
        std::size_t content = total - 1 - (has_cr ? 1 : 0);
        if (static_cast<long long>(content) > cap.max_content) {
            fail(cap.too_long);
            return pos;
        }
        if (!has_cr) {
            fail(error::bad_line_ending);
            return pos;
        }

        std::string_view line;
        if (partial_.empty()) {
            line = rest.substr(0, content);
        } else {
            partial_.append(rest.data(), used);
            line = std::string_view(partial_).substr(0, content);
        }
        if (state_ == parse_state::trailers) {
            trailer_bytes_ += total;
        } else {
            header_bytes_ += total;
        }
        handle_line(line);
        partial_.clear();
    }
    return pos;
}

template <class Message>
void parser_core<Message>::handle_line(std::string_view line) {
    error e{};
    switch (state_) {
    case parse_state::start_line:
        // RFC 9112 section 2.2: a server SHOULD ignore empty lines before the request line.
        if (is_request && line.empty()) {
            return;
        }
        e = parse_start_line(line);
        break;
    case parse_state::fields:
        if (line.empty()) {
            finish_header();
            return;
        }
        e = parse_field(line, false);
        break;
    case parse_state::trailers:
        if (line.empty()) {
            state_ = parse_state::done;
            return;
        }
        e = parse_field(line, true);
        break;
    default:
        return;
    }
    if (e != error{}) {
        // No valid line contains a CR, so a bare CR always lands here, whatever rule it broke
        // first: report it as the line-ending error it is. Searching only on this path keeps
        // valid lines to one pass.
        bool bare_cr = std::memchr(line.data(), '\r', line.size()) != nullptr;
        fail(bare_cr ? error::bad_line_ending : e);
    }
}

template <class Message>
error parser_core<Message>::parse_start_line(std::string_view line) {
    if constexpr (is_request) {
        // request-line = method SP request-target SP HTTP-version
        std::size_t method_end = span_of(line, cc_tchar);
        if (method_end == line.size()) {
            return error::bad_request_line;
        }
        if (line[method_end] != ' ') {
            return is_ows(line[method_end]) ? error::bad_request_line : error::bad_method;
        }
        if (method_end == 0) {
            return error::bad_request_line;
        }
        std::string_view method = line.substr(0, method_end);
        std::string_view rest = line.substr(method_end + 1);

        std::size_t target_end = rest.find(' ');
        if (target_end == 0 || target_end == std::string_view::npos) {
            return error::bad_request_line;
        }
        std::string_view target = rest.substr(0, target_end);
        std::string_view version_text = rest.substr(target_end + 1);
        if (version_text.find(' ') != std::string_view::npos) {
            return error::bad_request_line;
        }
        error e{};
        version v = parse_version(version_text, e);
        if (e != error{}) {
            return e;
        }
        if (!is_known_method(method)) {
            return error::unknown_method;
        }
        if (!is_valid_target(method, target)) {
            return error::bad_target;
        }
        message_.method.assign(method);
        message_.target.assign(target);
        message_.http_version = v;
    } else {
        // status-line = HTTP-version SP status-code SP [ reason-phrase ]
        std::size_t sp = line.find(' ');
        if (sp == std::string_view::npos) {
            return error::bad_status_line;
        }
        error e{};
        version v = parse_version(line.substr(0, sp), e);
        if (e != error{}) {
            return e;
        }
        std::string_view rest = line.substr(sp + 1);
        if (rest.size() < 3 || !is_digit(rest[0]) || !is_digit(rest[1]) || !is_digit(rest[2]) ||
            (rest.size() > 3 && is_digit(rest[3]))) {
            return error::bad_status_code;
        }
        int status = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
        if (status < 100 || status > 599) {
            return error::bad_status_code;
        }
        if (rest.size() == 3 || rest[3] != ' ') {
            return error::bad_status_line;
        }
        std::string_view reason = rest.substr(4);
        if (span_of(reason, cc_field_value) != reason.size()) {
            return error::bad_reason;
        }
        message_.http_version = v;
        message_.status = status;
        message_.reason.assign(reason);
    }
    state_ = parse_state::fields;
    return {};
}

template <class Message>
error parser_core<Message>::parse_field(std::string_view line, bool trailer) {
    // field-line = field-name ":" OWS field-value OWS
    error syntax{};
    std::size_t name_end = 0;
    if (is_ows(line.front())) {
        // RFC 9112 sections 2.2 and 5.2: whitespace after the start line and obs-fold are
        // rejected rather than consumed or unfolded.
        syntax = field_count_ == 0 ? error::space_after_start_line : error::obs_fold;
    } else {
        name_end = span_of(line, cc_tchar);
        if (name_end == line.size() || name_end == 0) {
            syntax = error::bad_field_name;
        } else if (line[name_end] != ':') {
            std::size_t after = name_end;
            while (after < line.size() && is_ows(line[after])) {
                ++after;
            }
            bool space = after > name_end && after < line.size() && line[after] == ':';
            syntax = space ? error::space_before_colon : error::bad_field_name;
        }
    }
    std::string_view raw_value = syntax == error{} ? line.substr(name_end + 1) : "";
    std::string_view value = trim_ows(raw_value);
    if (syntax == error{} && find_invalid_field_value_char(value) != value.size()) {
        syntax = error::bad_field_value;
    }
    if (syntax != error{}) {
        return trailer ? error::bad_trailer : syntax;
    }
    if (trailer) {
        // Trailer fields are checked and dropped: see the header comment of parser.hpp.
        return {};
    }

    std::string_view name = line.substr(0, name_end);
    if (field_count_ >= limits_.max_fields) {
        return error::too_many_fields;
    }
    ++field_count_;
    if (token_equals_lower(name, "content-length")) {
        if (error e = on_content_length(raw_value); e != error{}) {
            return e;
        }
    } else if (token_equals_lower(name, "transfer-encoding")) {
        if (error e = on_transfer_encoding(raw_value); e != error{}) {
            return e;
        }
    }
    if (!is_kept(name)) {
        return {};
    }
    if (message_.headers.empty()) {
        // Typical requests carry 5 to 15 fields, and growing the vector from empty cost about a
        // fifth of the parse (measured with callgrind in benchmarks/parser). Reserving here
        // rather than in reset() leaves a parser that is released and destroyed unallocated.
        message_.headers.reserve(kept_.empty() ? 16 : kept_.size());
    }
    message_.headers.add(std::string(name), std::string(value));
    return {};
}

template <class Message>
bool parser_core<Message>::is_kept(std::string_view name) const noexcept {
    return kept_.empty() || std::any_of(kept_.begin(), kept_.end(), [&](std::string_view k) {
               return iequals(k, name);
           });
}

// RFC 9112 section 6.3: Content-Length is one decimal number. RFC 9110 section 8.6 lets a
// recipient accept a list of identical values; this parser rejects every repetition instead.
template <class Message>
error parser_core<Message>::on_content_length(std::string_view raw_value) {
    if (has_transfer_encoding_) {
        return error::content_length_and_transfer_encoding;
    }
    // HTAB is valid OWS, but llhttp 8.1 rejects a trailing one in Content-Length, so the framing
    // fields accept SP only.
    if (raw_value.find('\t') != std::string_view::npos) {
        return error::bad_content_length;
    }
    std::string_view value = trim_ows(raw_value);
    if (has_content_length_ || value.find(',') != std::string_view::npos) {
        return error::multiple_content_length;
    }
    if (value.empty()) {
        return error::bad_content_length;
    }
    std::uint64_t n = 0;
    for (char c : value) {
        if (!is_digit(c)) {
            return error::bad_content_length;
        }
        auto digit = static_cast<std::uint64_t>(c - '0');
        if (n > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            return error::bad_content_length;
        }
        n = n * 10 + digit;
    }
    content_length_ = n;
    has_content_length_ = true;
    return {};
}

// RFC 9112 sections 6.1 and 6.3. Several Transfer-Encoding fields form one list, in order.
template <class Message>
error parser_core<Message>::on_transfer_encoding(std::string_view raw_value) {
    if (message_.http_version == 10) {
        return error::transfer_encoding_in_http10;
    }
    if (has_content_length_) {
        return error::content_length_and_transfer_encoding;
    }
    // llhttp 8.1 does not see `chunked` followed by HTAB as chunked: accept SP only, as for
    // Content-Length.
    if (raw_value.find('\t') != std::string_view::npos) {
        return error::bad_transfer_encoding;
    }
    std::string_view value = trim_ows(raw_value);
    has_transfer_encoding_ = true;
    if (!chunked_ && span_of(value, cc_tchar) == value.size() &&
        token_equals_lower(value, "chunked")) {
        chunked_ = true; // the usual value, without the list parsing below
        return {};
    }
    while (true) {
        std::size_t comma = value.find(',');
        std::string_view coding = trim_ows(value.substr(0, comma));
        if (coding.empty() || chunked_) {
            // An empty list element is rejected rather than skipped, so that the framing
            // never depends on how a recipient counts elements.
            return error::bad_transfer_encoding;
        }
        std::size_t name_end = span_of(coding, cc_tchar);
        std::string_view name = coding.substr(0, name_end);
        std::string_view params = trim_ows(coding.substr(name_end));
        if (name.empty() || (!params.empty() && params.front() != ';')) {
            return error::bad_transfer_encoding;
        }
        if (!token_equals_lower(name, "chunked")) {
            return error::unsupported_transfer_coding;
        }
        if (!params.empty()) {
            return error::bad_transfer_encoding; // chunked takes no parameters
        }
        chunked_ = true;
        if (comma == std::string_view::npos) {
            return {};
        }
        value.remove_prefix(comma + 1);
    }
}

template <class Message>
void parser_core<Message>::finish_header() {
    if constexpr (!is_request) {
        int status = message_.status;
        if (status >= 100 && status < 200 && status != 101) {
            // An interim response: drop it and read the next start line. Its bytes stay
            // counted in header_bytes_, which bounds a stream of interim responses.
            message_ = response{};
            field_count_ = 0;
            has_content_length_ = false;
            has_transfer_encoding_ = false;
            chunked_ = false;
            content_length_ = 0;
            state_ = parse_state::start_line;
            return;
        }
        if (no_body_ || status < 200 || status == 204 || status == 304) {
            header_done_ = true;
            state_ = parse_state::done;
            return;
        }
    }
    if (chunked_) {
        header_done_ = true;
        state_ = parse_state::chunk_size;
        return;
    }
    if (has_content_length_) {
        if (content_length_ > limits_.max_body) {
            fail(error::body_too_large);
            return;
        }
        header_done_ = true;
        remaining_ = content_length_;
        body_received_ = content_length_;
        // Reserving the whole declared size would let a peer make us allocate without sending.
        constexpr std::uint64_t max_reserve = 64 * 1024;
        message_.body.reserve(static_cast<std::size_t>(
            std::min({content_length_, max_reserve, static_cast<std::uint64_t>(body_cap_)})));
        state_ = content_length_ == 0 ? parse_state::done : parse_state::body_length;
        return;
    }
    header_done_ = true;
    // RFC 9112 section 6.3: a request without framing has no body; a response is read to EOF.
    state_ = is_request ? parse_state::done : parse_state::body_eof;
}

template <class Message>
void parser_core<Message>::append_body(std::string_view bytes) {
    if constexpr (!is_request) {
        std::size_t room = body_cap_ - std::min(body_cap_, message_.body.size());
        if (bytes.size() > room) {
            truncated_ = true;
            bytes = bytes.substr(0, room);
        }
    }
    message_.body.append(bytes);
}

template <class Message>
std::size_t parser_core<Message>::consume_counted(std::string_view in) {
    auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size()));
    append_body(in.substr(0, take));
    remaining_ -= take;
    if (remaining_ == 0) {
        state_ =
            state_ == parse_state::body_length ? parse_state::done : parse_state::chunk_data_cr;
    }
    return take;
}

template <class Message>
std::size_t parser_core<Message>::consume_until_eof(std::string_view in) {
    std::uint64_t room =
        limits_.max_body - std::min<std::uint64_t>(limits_.max_body, body_received_);
    if (in.size() > room) {
        auto take = static_cast<std::size_t>(room);
        append_body(in.substr(0, take));
        body_received_ += take;
        fail(error::body_too_large);
        return take + 1;
    }
    append_body(in);
    body_received_ += in.size();
    return in.size();
}

// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
// chunk-ext-val  = token / quoted-string
// Three deliberate restrictions match llhttp 8.1: no BWS (whitespace) anywhere in the extensions,
// no quoted-pair (backslash) inside a quoted value, and no extension after a token value. Senders
// must not generate BWS (RFC 9110 section 5.6.3), and whitespace in chunk lines is a known source
// of disagreement between parsers, which is what request smuggling exploits.
template <class Message>
std::size_t parser_core<Message>::consume_chunk_line(std::string_view in) {
    using ps = parse_state;
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        ps s = state_;

        if (s == ps::chunk_data_cr || s == ps::chunk_data_lf) {
            if (s == ps::chunk_data_cr && c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') {
                ++i; // the usual CRLF, both bytes at once
                s = ps::chunk_data_lf;
                c = '\n';
            }
            if (c != (s == ps::chunk_data_cr ? '\r' : '\n')) {
                fail(error::bad_chunk_end);
                return i + 1;
            }
            if (s == ps::chunk_data_cr) {
                state_ = ps::chunk_data_lf;
            } else {
                state_ = ps::chunk_size;
                chunk_size_ = 0;
                chunk_digits_ = 0;
                chunk_ext_bytes_ = 0;
            }
            continue;
        }
        if (s == ps::chunk_line_lf) {
            if (c != '\n') {
                fail(error::bad_line_ending);
                return i + 1;
            }
            end_chunk_line();
            return i + 1;
        }
        if (c == '\n') {
            fail(error::bad_line_ending);
            return i + 1;
        }
        if (s == ps::chunk_size) {
            if (is_hex(c)) {
                // The run of digits at once; a declared size over the body limit fails at the
                // digit that makes it so, before any data.
                std::uint64_t room =
                    limits_.max_body - std::min<std::uint64_t>(limits_.max_body, body_received_);
                std::uint64_t size = chunk_size_;
                std::size_t digits = chunk_digits_;
                for (; i < in.size() && is_hex(in[i]); ++i) {
                    if (++digits > limits_.max_chunk_size_digits) {
                        fail(error::chunk_size_too_long);
                        return i + 1;
                    }
                    if (size > (std::numeric_limits<std::uint64_t>::max() >> 4)) {
                        fail(error::bad_chunk_size);
                        return i + 1;
                    }
                    size = size * 16 + hex_value(in[i]);
                    if (size > room) {
                        fail(error::body_too_large);
                        return i + 1;
                    }
                }
                chunk_size_ = size;
                chunk_digits_ = digits;
                --i; // the outer loop steps to the first byte after the digits
                continue;
            }
            if (chunk_digits_ == 0 || (c != '\r' && c != ';')) {
                fail(error::bad_chunk_size);
                return i + 1;
            }
        }
        if (c == '\r') {
            bool complete = s == ps::chunk_size || s == ps::chunk_ext_name ||
                            s == ps::chunk_ext_token || s == ps::chunk_ext_quoted_end;
            if (!complete) {
                fail(error::bad_chunk_extension);
                return i + 1;
            }
            state_ = ps::chunk_line_lf;
            continue;
        }

        // Every byte from the ';' to the CR is an extension byte.
        if (++chunk_ext_bytes_ > limits_.max_chunk_extension) {
            fail(error::chunk_extension_too_long);
            return i + 1;
        }
        bool ok = true;
        switch (s) {
        case ps::chunk_size:
        case ps::chunk_ext_quoted_end:
            ok = c == ';';
            state_ = ps::chunk_ext_name_start;
            break;
        case ps::chunk_ext_token:
            // NOTE: a token value must be the last extension of its line (no ';' after it),
            // because llhttp 8.1 rejects that form and this parser accepts nothing llhttp rejects.
            ok = is_tchar(c);
            break;
        case ps::chunk_ext_name_start:
            ok = is_tchar(c);
            state_ = ps::chunk_ext_name;
            break;
        case ps::chunk_ext_name:
            if (c == ';') {
                state_ = ps::chunk_ext_name_start;
            } else if (c == '=') {
                state_ = ps::chunk_ext_value_start;
            } else {
                ok = is_tchar(c);
            }
            break;
        case ps::chunk_ext_value_start:
            ok = is_tchar(c) || c == '"';
            state_ = c == '"' ? ps::chunk_ext_quoted : ps::chunk_ext_token;
            break;
        case ps::chunk_ext_quoted:
            if (c == '"') {
                state_ = ps::chunk_ext_quoted_end;
            } else {
                ok = is_qdtext(c);
            }
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            fail(error::bad_chunk_extension);
            return i + 1;
        }
    }
    return in.size();
}

template <class Message>
void parser_core<Message>::end_chunk_line() {
    if (chunk_size_ == 0) {
        trailer_bytes_ = 0;
        state_ = parse_state::trailers;
        return;
    }
    body_received_ += chunk_size_;
    remaining_ = chunk_size_;
    state_ = parse_state::chunk_data;
}

} // namespace revdesk::http::detail
