// Definitions for revdesk/http/serializer.hpp.
#pragma once

#include <revdesk/http/detail/parser_chars.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace revdesk::http {

namespace detail {

[[noreturn]] inline void throw_invalid(std::string_view what) {
    throw std::invalid_argument("revdesk::http::serialize: " + std::string(what));
}

inline void append_version(std::string& out, version v) {
    if (v != 10 && v != 11) {
        throw_invalid("invalid version " + std::to_string(v) + ": expected 10 or 11");
    }
    out += v == 10 ? "HTTP/1.0" : "HTTP/1.1";
}

/// The framing fields of a message, checked for consistency with each other and the version.
struct serializer_framing {
    bool has_content_length = false;
    std::uint64_t content_length = 0;
    bool chunked = false; // Transfer-Encoding present, chunked last
};

// Throws unless `name` is a token and `value` has no control character other than HTAB.
inline void check_field(std::string_view name, std::string_view value) {
    if (name.empty() || span_of(name, cc_tchar) != name.size()) {
        throw_invalid("invalid field name \"" + std::string(name) + "\": expected a token");
    }
    if (span_of(value, cc_field_value) != value.size()) {
        throw_invalid("invalid value of field " + std::string(name) + ": control character");
    }
}

inline bool is_framing_field(std::string_view name) noexcept {
    return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding");
}

inline void check_method_and_target(std::string_view method, std::string_view target) {
    if (method.empty() || span_of(method, cc_tchar) != method.size()) {
        throw_invalid("invalid method \"" + std::string(method) + "\": expected a token");
    }
    bool target_ok = !target.empty() && std::all_of(target.begin(), target.end(), [](char c) {
        return c > 0x20 && c < 0x7f;
    });
    if (!target_ok) {
        throw_invalid("invalid target: empty or a byte outside 0x21..0x7E");
    }
}

inline serializer_framing check_fields(fields const& headers, version v) {
    serializer_framing framing;
    bool has_transfer_encoding = false;
    std::string codings; // every Transfer-Encoding value, in order, as one list

    for (auto const& f : headers) {
        check_field(f.name, f.value);
        if (is_framing_field(f.name) && f.value.find('\t') != std::string::npos) {
            // The parser accepts only SP around framing values (see parser_core.hpp).
            throw_invalid("HTAB in the value of " + f.name);
        }
        if (iequals(f.name, "Content-Length")) {
            if (framing.has_content_length) {
                throw_invalid("more than one Content-Length field");
            }
            std::string_view value = trim_ows(f.value);
            std::uint64_t length = 0;
            bool valid = !value.empty();
            for (char c : value) {
                auto digit = static_cast<std::uint64_t>(c - '0');
                if (!is_digit(c) ||
                    length > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
                    valid = false;
                    break;
                }
                length = length * 10 + digit;
            }
            if (!valid) {
                throw_invalid("invalid Content-Length \"" + f.value +
                              "\": expected decimal digits within 64 bits");
            }
            framing.has_content_length = true;
            framing.content_length = length;
        } else if (iequals(f.name, "Transfer-Encoding")) {
            has_transfer_encoding = true;
            if (!codings.empty()) {
                codings += ',';
            }
            codings += f.value;
        }
    }

    if (has_transfer_encoding) {
        if (v == 10) {
            throw_invalid("Transfer-Encoding in an HTTP/1.0 message");
        }
        if (framing.has_content_length) {
            throw_invalid("both Content-Length and Transfer-Encoding");
        }
        // The parser needs chunked exactly once, as the final coding, and no empty element.
        std::string_view list = codings;
        bool last_is_chunked = false;
        while (true) {
            auto comma = list.find(',');
            std::string_view coding = trim_ows(list.substr(0, comma));
            if (coding.empty() || last_is_chunked) {
                throw_invalid("Transfer-Encoding \"" + codings +
                              "\": expected chunked once, as the final coding");
            }
            last_is_chunked = iequals(coding, "chunked");
            if (comma == std::string_view::npos) {
                break;
            }
            list.remove_prefix(comma + 1);
        }
        if (!last_is_chunked) {
            throw_invalid("Transfer-Encoding \"" + codings + "\": final coding is not chunked");
        }
        framing.chunked = true;
    }
    return framing;
}

// Returns the bytes that append_fields writes for `headers`, a range of fields or field views.
template <class Fields>
std::size_t fields_size(Fields const& headers) noexcept {
    std::size_t size = 0;
    for (auto const& f : headers) {
        size += f.name.size() + f.value.size() + 4;
    }
    return size;
}

template <class Fields>
void append_fields(std::string& out, Fields const& headers) {
    for (auto const& f : headers) {
        out += f.name;
        out += ": ";
        out += f.value;
        out += "\r\n";
    }
}

inline void append_chunked_body(std::string& out, std::string_view body) {
    if (!body.empty()) {
        char digits[17];
        int n = std::snprintf(digits, sizeof digits, "%zx", body.size());
        out.append(digits, static_cast<std::size_t>(n));
        out += "\r\n";
        out += body;
        out += "\r\n";
    }
    out += "0\r\n\r\n";
}

/// Appends the framing field the message lacks, the empty line and the body.
inline void append_framed_body(std::string& out, serializer_framing const& framing,
                               std::string_view body, bool add_length) {
    if (framing.chunked) {
        out += "\r\n";
        append_chunked_body(out, body);
        return;
    }
    if (add_length) {
        out += "Content-Length: ";
        out += std::to_string(body.size());
        out += "\r\n";
    }
    out += "\r\n";
    out += body;
}

} // namespace detail

inline std::string serialize(request const& r) {
    using detail::append_framed_body;
    using detail::append_version;
    using detail::throw_invalid;
    detail::check_method_and_target(r.method, r.target);
    detail::serializer_framing framing = detail::check_fields(r.headers, r.http_version);
    if (framing.has_content_length && framing.content_length != r.body.size()) {
        throw_invalid("Content-Length " + std::to_string(framing.content_length) +
                      " differs from the body size " + std::to_string(r.body.size()));
    }

    std::string out;
    // The request line, the framing that may be added and a chunked body's size lines fit in
    // the 64 spare bytes.
    out.reserve(64 + r.method.size() + r.target.size() + detail::fields_size(r.headers) +
                r.body.size());
    out += r.method;
    out += ' ';
    out += r.target;
    out += ' ';
    append_version(out, r.http_version);
    out += "\r\n";
    detail::append_fields(out, r.headers);
    bool body_method = r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
    bool add_length = !framing.has_content_length && (!r.body.empty() || body_method);
    append_framed_body(out, framing, r.body, add_length);
    return out;
}

inline std::string serialize(response const& r) {
    using detail::append_framed_body;
    using detail::append_version;
    using detail::cc_field_value;
    using detail::span_of;
    using detail::throw_invalid;
    if (r.status < 100 || r.status > 599) {
        throw_invalid("invalid status " + std::to_string(r.status) + ": expected 100..599");
    }
    if (span_of(r.reason, cc_field_value) != r.reason.size()) {
        throw_invalid("invalid reason phrase: control character");
    }
    detail::serializer_framing framing = detail::check_fields(r.headers, r.http_version);
    bool informational = r.status < 200;
    bool bodiless = informational || r.status == 204 || r.status == 304;
    if (bodiless && !r.body.empty()) {
        throw_invalid("status " + std::to_string(r.status) + " cannot have a body");
    }
    bool has_transfer_encoding = r.headers.find("Transfer-Encoding").has_value();
    if ((informational || r.status == 204) &&
        (framing.has_content_length || has_transfer_encoding)) {
        throw_invalid("status " + std::to_string(r.status) +
                      " cannot have Content-Length or Transfer-Encoding");
    }
    if (framing.has_content_length && !r.body.empty() && framing.content_length != r.body.size()) {
        throw_invalid("Content-Length " + std::to_string(framing.content_length) +
                      " differs from the body size " + std::to_string(r.body.size()));
    }

    std::string out;
    out.reserve(64 + r.reason.size() + detail::fields_size(r.headers) + r.body.size());
    append_version(out, r.http_version);
    out += ' ';
    out += std::to_string(r.status);
    out += ' ';
    out += r.reason.empty() ? default_reason(r.status) : std::string_view(r.reason);
    out += "\r\n";
    detail::append_fields(out, r.headers);
    if (bodiless) {
        out += "\r\n";
        return out;
    }
    append_framed_body(out, framing, r.body, !framing.has_content_length && !framing.chunked);
    return out;
}

inline std::string_view default_reason(int status) noexcept {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return {};
    }
}

inline request_prefix::request_prefix(std::string_view method, std::string_view target,
                                      fields const& fixed) {
    detail::check_method_and_target(method, target);
    auto framing = detail::check_fields(fixed, 11);
    if (framing.has_content_length || framing.chunked) {
        detail::throw_invalid("a request prefix cannot contain Content-Length or "
                              "Transfer-Encoding, because finish() writes the framing");
    }
    bytes_.reserve(method.size() + target.size() + 12 + detail::fields_size(fixed));
    bytes_ += method;
    bytes_ += ' ';
    bytes_ += target;
    bytes_ += " HTTP/1.1\r\n";
    detail::append_fields(bytes_, fixed);
}

inline std::string request_prefix::finish(std::span<field_view const> more,
                                          std::string_view body) const {
    for (auto const& f : more) {
        detail::check_field(f.name, f.value);
        if (detail::is_framing_field(f.name)) {
            detail::throw_invalid("finish() writes the framing, so its fields cannot contain " +
                                  std::string(f.name));
        }
    }

    std::string out;
    // The Content-Length field with up to 20 digits and the empty line fit in 40 bytes.
    out.reserve(bytes_.size() + detail::fields_size(more) + 40 + body.size());
    out += bytes_;
    detail::append_fields(out, more);
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n\r\n";
    out += body;
    return out;
}

} // namespace revdesk::http
