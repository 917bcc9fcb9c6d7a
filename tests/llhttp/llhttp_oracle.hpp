// A test-only oracle: runs llhttp 8.1 (Node.js's HTTP parser, from Debian's node-llhttp) over a
// byte stream of requests and collects what it parsed, in a form that compares with
// revdesk::http::request. Link the executable with llhttp's api.c, http.c and llhttp.c.
#pragma once

#include <llhttp.h>

#include <string>
#include <string_view>
#include <vector>

namespace revdesk::test {

/// One request as llhttp reported it.
struct oracle_message {
    std::string method;
    std::string target;
    int http_version = 0;                                    // 10 for HTTP/1.0, 11 for HTTP/1.1
    std::vector<std::pair<std::string, std::string>> fields; // header fields, trailers excluded
    std::string body;
    bool keep_alive = false;
    bool upgrade = false; // llhttp stopped after this message: CONNECT or Upgrade
};

/// How llhttp ended on a stream.
enum class oracle_verdict {
    accept,     // every byte belongs to a complete message, or follows one that closes the
                // connection or switches protocols
    reject,     // llhttp_execute returned an error
    incomplete, // no error, but the stream ends inside a message (llhttp_finish fails)
};

struct oracle_result {
    oracle_verdict verdict = oracle_verdict::accept;
    std::vector<oracle_message> messages;
    std::string error;  // llhttp's errno name, for a reject
    std::string reason; // llhttp's error reason, for a reject
};

namespace detail {

struct oracle_state {
    oracle_result result;
    oracle_message current;
    std::string field;
    std::string value;
    bool in_value = false;
    bool in_trailers = false;

    void flush_field() {
        if (!in_trailers && (!field.empty() || in_value)) {
            // llhttp hands over the value without leading whitespace; trailing whitespace is
            // taken off here so both parsers report values the same way.
            while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
                value.pop_back();
            }
            current.fields.emplace_back(field, value);
        }
        field.clear();
        value.clear();
        in_value = false;
    }
};

inline oracle_state& state_of(llhttp_t* p) {
    return *static_cast<oracle_state*>(p->data);
}

inline int on_message_begin(llhttp_t* p) {
    auto& s = state_of(p);
    s.current = {};
    s.field.clear();
    s.value.clear();
    s.in_value = false;
    s.in_trailers = false;
    return 0;
}

inline int on_url(llhttp_t* p, char const* at, std::size_t n) {
    state_of(p).current.target.append(at, n);
    return 0;
}

inline int on_header_field(llhttp_t* p, char const* at, std::size_t n) {
    auto& s = state_of(p);
    if (s.in_value) {
        s.flush_field();
    }
    s.field.append(at, n);
    return 0;
}

inline int on_header_value(llhttp_t* p, char const* at, std::size_t n) {
    auto& s = state_of(p);
    s.in_value = true;
    s.value.append(at, n);
    return 0;
}

inline int on_header_value_complete(llhttp_t* p) {
    auto& s = state_of(p);
    s.in_value = true;
    s.flush_field();
    return 0;
}

inline int on_headers_complete(llhttp_t* p) {
    auto& s = state_of(p);
    if (s.in_value || !s.field.empty()) {
        s.flush_field();
    }
    s.in_trailers = true;
    s.current.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    s.current.http_version = p->http_major * 10 + p->http_minor;
    return 0;
}

inline int on_body(llhttp_t* p, char const* at, std::size_t n) {
    state_of(p).current.body.append(at, n);
    return 0;
}

// A server stops reading after a message that closes the connection or switches protocols, so
// the oracle pauses there and the bytes after it are not compared.
inline int on_message_complete(llhttp_t* p) {
    auto& s = state_of(p);
    s.current.keep_alive = llhttp_should_keep_alive(p) != 0;
    s.current.upgrade = p->upgrade != 0;
    bool stop = !s.current.keep_alive || s.current.upgrade;
    s.result.messages.push_back(std::move(s.current));
    s.current = {};
    return stop ? HPE_PAUSED : 0;
}

} // namespace detail

/// Parses `input` as a stream of requests with llhttp in its default (strict) mode, then reports
/// the end of the stream to it. Stops after a message that is not keep-alive or that upgrades.
inline oracle_result llhttp_parse_requests(std::string_view input) {
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_message_begin = detail::on_message_begin;
    settings.on_url = detail::on_url;
    settings.on_header_field = detail::on_header_field;
    settings.on_header_value = detail::on_header_value;
    settings.on_header_value_complete = detail::on_header_value_complete;
    settings.on_headers_complete = detail::on_headers_complete;
    settings.on_body = detail::on_body;
    settings.on_message_complete = detail::on_message_complete;

    detail::oracle_state state;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = &state;

    llhttp_errno_t err = llhttp_execute(&parser, input.data(), input.size());
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        if (!state.result.messages.empty()) {
            state.result.messages.back().upgrade = true;
        }
        state.result.verdict = oracle_verdict::accept;
        return state.result;
    }
    if (err != HPE_OK) {
        state.result.verdict = oracle_verdict::reject;
        state.result.error = llhttp_errno_name(err);
        char const* reason = llhttp_get_error_reason(&parser);
        state.result.reason = reason != nullptr ? reason : "";
        return state.result;
    }
    err = llhttp_finish(&parser);
    state.result.verdict = err == HPE_OK ? oracle_verdict::accept : oracle_verdict::incomplete;
    return state.result;
}

} // namespace revdesk::test
