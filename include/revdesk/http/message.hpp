// HTTP/1.1 messages: requests, responses and their header fields.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk::http {

/// Compares two field names the way HTTP does: ASCII case-insensitively.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    auto lower = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [&](char x, char y) { return lower(x) == lower(y); });
}

/// One header or trailer field line.
struct field {
    std::string name;
    std::string value;
};

/// The header fields of a message, in the order received, with case-insensitive lookup.
class fields {
public:
    /// Appends a field; an existing field of the same name stays.
    void add(std::string name, std::string value) {
        items_.push_back({std::move(name), std::move(value)});
    }

    /// Replaces every field named `name` with one field holding `value`.
    void set(std::string_view name, std::string value) {
        erase(name);
        items_.push_back({std::string(name), std::move(value)});
    }

    /// Reserves room for `n` fields, so that adding them does not reallocate.
    void reserve(std::size_t n) { items_.reserve(n); }

    /// Removes every field named `name`.
    void erase(std::string_view name) {
        std::erase_if(items_, [&](field const& f) { return iequals(f.name, name); });
    }

    /// Returns the value of the first field named `name`, or nothing when it is absent.
    std::optional<std::string_view> find(std::string_view name) const noexcept {
        for (auto const& f : items_) {
            if (iequals(f.name, name)) {
                return f.value;
            }
        }
        return std::nullopt;
    }

    /// Returns the number of fields named `name`.
    std::size_t count(std::string_view name) const noexcept {
        return std::count_if(items_.begin(), items_.end(),
                             [&](field const& f) { return iequals(f.name, name); });
    }

    std::vector<field> const& items() const noexcept { return items_; }
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    auto begin() const noexcept { return items_.begin(); }
    auto end() const noexcept { return items_.end(); }

private:
    std::vector<field> items_;
};

/// The protocol version of a message: 10 for HTTP/1.0, 11 for HTTP/1.1.
using version = int;

/// A request with its whole body.
struct request {
    std::string method;
    std::string target;
    version http_version = 11;
    http::fields headers;
    std::string body;

    /// Returns whether the connection stays open after this request: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    bool keep_alive() const noexcept;
};

/// A response with its whole body, or the prefix of it that a reader kept.
struct response {
    int status = 0;
    std::string reason;
    version http_version = 11;
    http::fields headers;
    std::string body;

    /// Returns whether the connection may carry another exchange, by the same rules as
    /// `request::keep_alive`.
    bool keep_alive() const noexcept;
};

namespace detail {

/// Returns whether a `Connection` field value lists `token` (comma-separated, case-insensitive).
inline bool connection_has(std::string_view value, std::string_view token) noexcept {
    while (!value.empty()) {
        auto comma = value.find(',');
        auto item = value.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (iequals(item, token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

// Repeated Connection fields form one list (RFC 9110, section 5.3), so every one is read.
inline bool keep_alive(version v, fields const& headers) noexcept {
    bool close = false;
    bool keep = false;
    for (auto const& f : headers) {
        if (iequals(f.name, "Connection")) {
            close = close || connection_has(f.value, "close");
            keep = keep || connection_has(f.value, "keep-alive");
        }
    }
    return !close && (v >= 11 || keep);
}

} // namespace detail

inline bool request::keep_alive() const noexcept {
    return detail::keep_alive(http_version, headers);
}

inline bool response::keep_alive() const noexcept {
    return detail::keep_alive(http_version, headers);
}

} // namespace revdesk::http
