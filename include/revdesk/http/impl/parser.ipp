// Definitions for revdesk/http/parser.hpp.
#pragma once

namespace revdesk::http {

inline request_parser::request_parser(limits l)
    : core_(l) {}

inline std::size_t request_parser::feed(std::string_view input, std::error_code& ec) {
    return core_.feed(input, ec);
}

inline bool request_parser::header_done() const noexcept {
    return core_.header_done();
}

inline bool request_parser::done() const noexcept {
    return core_.done();
}

inline request& request_parser::get() noexcept {
    return core_.get();
}

inline request request_parser::release() {
    return core_.release();
}

inline void request_parser::reset() {
    core_.reset();
}

inline response_parser::response_parser(limits l)
    : core_(l) {}

inline void response_parser::expect_no_body() {
    core_.expect_no_body();
}

inline void response_parser::set_body_cap(std::size_t cap) {
    core_.set_body_cap(cap);
}

inline void response_parser::keep_only(std::span<std::string_view const> names) {
    core_.keep_only(names);
}

inline bool response_parser::truncated() const noexcept {
    return core_.truncated();
}

inline std::size_t response_parser::feed(std::string_view input, std::error_code& ec) {
    return core_.feed(input, ec);
}

inline void response_parser::feed_eof(std::error_code& ec) {
    core_.feed_eof(ec);
}

inline bool response_parser::header_done() const noexcept {
    return core_.header_done();
}

inline bool response_parser::done() const noexcept {
    return core_.done();
}

inline response& response_parser::get() noexcept {
    return core_.get();
}

inline response response_parser::release() {
    return core_.release();
}

inline void response_parser::reset() {
    core_.reset();
}

inline std::error_code validate_host(request const& r) noexcept {
    std::size_t count = r.headers.count("Host");
    if (count == 0) {
        return r.http_version >= 11 ? error::missing_host : std::error_code{};
    }
    if (count > 1) {
        return error::multiple_host;
    }
    std::string_view value = *r.headers.find("Host");
    if (!value.empty() && !detail::is_authority(value, false)) {
        return error::bad_host;
    }
    return {};
}

inline void use_origin_form(request& r) {
    auto& target = r.target;
    auto scheme_end = target.find("://");
    if (target.empty() || target.front() == '/' || scheme_end == std::string::npos) {
        return;
    }
    auto path = target.find_first_of("/?", scheme_end + 3);
    if (path == std::string::npos) {
        target = "/";
    } else if (target[path] == '?') {
        target = "/" + target.substr(path);
    } else {
        target.erase(0, path);
    }
}

} // namespace revdesk::http
