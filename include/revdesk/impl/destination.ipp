// Inline definitions for revdesk/destination.hpp.
#pragma once

#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <stdexcept>

namespace revdesk {

namespace detail {

/// How a special-purpose range is judged.
enum class range_rule {
    reject,        ///< Every address in the range is rejected.
    embedded_ipv4, ///< The IPv4 address embedded at `embedded_offset` is judged instead.
};

/// One row of the special-purpose table, as written in the source.
struct special_range_row {
    /// The registry name followed by the block in parentheses. special_purpose_range returns
    /// this text, and the block is parsed from it, so the two cannot disagree.
    std::string_view description;
    range_rule rule = range_rule::reject;
    unsigned embedded_offset = 0; ///< Byte offset of the embedded IPv4 address (embedded_ipv4).
};

// Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry/,
// https://www.iana.org/assignments/iana-ipv6-special-registry/), entries up to
// 100:0:0:1::/64 (RFC 9780, April 2025), taking every entry whose "Globally Reachable" is
// False. Added to them: IPv4 multicast 224.0.0.0/4 (RFC 5771), IPv6 multicast ff00::/8 and
// the deprecated IPv4-compatible ::/96 (RFC 4291), and the deprecated site-local fec0::/10
// (RFC 3879). docs/destination-policy.md explains the embedded-IPv4 rules and why the
// globally reachable entries inside 192.0.0.0/24 and 2001::/23 stay rejected.
// NOTE: IANA adds entries over time, and entries added after April 2025 are missing until this
// table is updated.
inline constexpr std::array special_range_rows = {
    special_range_row{"This network (0.0.0.0/8)"},
    special_range_row{"This host on this network (0.0.0.0/32)"},
    special_range_row{"Private-Use (10.0.0.0/8)"},
    special_range_row{"Shared Address Space (100.64.0.0/10)"},
    special_range_row{"Loopback (127.0.0.0/8)"},
    special_range_row{"Link Local (169.254.0.0/16)"},
    special_range_row{"Private-Use (172.16.0.0/12)"},
    special_range_row{"IETF Protocol Assignments (192.0.0.0/24)"},
    special_range_row{"IPv4 Service Continuity Prefix (192.0.0.0/29)"},
    special_range_row{"IPv4 dummy address (192.0.0.8/32)"},
    special_range_row{"NAT64/DNS64 Discovery (192.0.0.170/32)"},
    special_range_row{"NAT64/DNS64 Discovery (192.0.0.171/32)"},
    special_range_row{"Documentation (TEST-NET-1) (192.0.2.0/24)"},
    special_range_row{"6a44-relay anycast address (192.88.99.2/32)"},
    special_range_row{"Private-Use (192.168.0.0/16)"},
    special_range_row{"Benchmarking (198.18.0.0/15)"},
    special_range_row{"Documentation (TEST-NET-2) (198.51.100.0/24)"},
    special_range_row{"Documentation (TEST-NET-3) (203.0.113.0/24)"},
    special_range_row{"Multicast (224.0.0.0/4)"},
    special_range_row{"Reserved (240.0.0.0/4)"},
    special_range_row{"Limited Broadcast (255.255.255.255/32)"},

    special_range_row{"Unspecified Address (::/128)"},
    special_range_row{"Loopback Address (::1/128)"},
    special_range_row{"IPv4-compatible Address, deprecated (::/96)"},
    special_range_row{"IPv4-mapped Address (::ffff:0:0/96)", range_rule::embedded_ipv4, 12},
    special_range_row{"IPv4-IPv6 Translation (64:ff9b::/96)", range_rule::embedded_ipv4, 12},
    special_range_row{"IPv4-IPv6 Translation, local-use (64:ff9b:1::/48)"},
    special_range_row{"Discard-Only Address Block (100::/64)"},
    special_range_row{"Dummy IPv6 Prefix (100:0:0:1::/64)"},
    special_range_row{"IETF Protocol Assignments (2001::/23)"},
    special_range_row{"TEREDO (2001::/32)"},
    special_range_row{"Benchmarking (2001:2::/48)"},
    special_range_row{"Deprecated (previously ORCHID) (2001:10::/28)"},
    special_range_row{"Documentation (2001:db8::/32)"},
    special_range_row{"6to4 (2002::/16)", range_rule::embedded_ipv4, 2},
    special_range_row{"Documentation (3fff::/20)"},
    special_range_row{"Segment Routing (SRv6) SIDs (5f00::/16)"},
    special_range_row{"Unique-Local (fc00::/7)"},
    special_range_row{"Link-Local Unicast (fe80::/10)"},
    special_range_row{"Site-Local, deprecated (fec0::/10)"},
    special_range_row{"Multicast (ff00::/8)"},

    // Everything outside Global Unicast (2000::/3) is reserved or special-purpose in the IANA
    // IPv6 Address Space registry, and unallocated forms such as the IPv4-translated
    // ::ffff:0:a.b.c.d can still reach an IPv4 host through a translator, so the rest of the
    // space is rejected as a whole. The rows above are more specific and take precedence.
    special_range_row{"IPv4-translated Address (::ffff:0:0:0/96)"},
    special_range_row{"Reserved by IETF, outside Global Unicast (::/3)"},
    special_range_row{"Reserved by IETF, outside Global Unicast (4000::/2)"},
    special_range_row{"Reserved by IETF, outside Global Unicast (8000::/1)"},
};

/// A table row with its block parsed.
struct special_range {
    special_range_row row;
    cidr block;
};

/// Returns the parsed table, built on first use (thread-safe static initialization).
inline std::vector<special_range> const& special_ranges() {
    static std::vector<special_range> const ranges = [] {
        std::vector<special_range> parsed;
        parsed.reserve(special_range_rows.size());
        for (auto const& row : special_range_rows) {
            auto const open = row.description.rfind('(');
            auto const close = row.description.size() - 1;
            std::optional<cidr> block;
            if (open != std::string_view::npos && row.description.back() == ')') {
                block = cidr::parse(row.description.substr(open + 1, close - open - 1));
            }
            if (!block) {
                throw std::logic_error("special-purpose table row has no valid block: " +
                                       std::string(row.description));
            }
            parsed.push_back({row, *block});
        }
        return parsed;
    }();
    return ranges;
}

/// Returns the most specific table range containing `a`, or nullptr.
inline special_range const* most_specific_range(asio::ip::address const& a) {
    special_range const* best = nullptr;
    for (auto const& range : special_ranges()) {
        if (range.block.contains(a) &&
            (best == nullptr || range.block.prefix > best->block.prefix)) {
            best = &range;
        }
    }
    return best;
}

/// Why an address is rejected: the range that decides, and for the embedded-IPv4 forms, the
/// IPv6 range that embeds it and the embedded address.
struct range_match {
    special_range const* range = nullptr;
    special_range const* embedding = nullptr;
    asio::ip::address_v4 embedded;
};

/// Applies the table to `a`. Returns nothing when `a` counts as globally reachable.
inline std::optional<range_match> match_special_range(asio::ip::address const& a) {
    special_range const* const range = most_specific_range(a);
    if (range == nullptr) {
        return std::nullopt;
    }
    if (range->row.rule == range_rule::reject) {
        return range_match{range, nullptr, {}};
    }
    auto const bytes = a.to_v6().to_bytes();
    asio::ip::address_v4::bytes_type embedded_bytes{};
    std::copy_n(bytes.begin() + range->row.embedded_offset, embedded_bytes.size(),
                embedded_bytes.begin());
    asio::ip::address_v4 const embedded(embedded_bytes);
    special_range const* const embedded_range = most_specific_range(embedded);
    if (embedded_range == nullptr) {
        return std::nullopt;
    }
    return range_match{embedded_range, range, embedded};
}

/// Returns `a` as text without an IPv6 scope id, which cidr::parse would reject.
inline std::string address_text(asio::ip::address const& a) {
    if (a.is_v6()) {
        return asio::ip::address_v6(a.to_v6().to_bytes()).to_string();
    }
    return a.to_string();
}

/// Returns the IPv4 address inside an IPv4-mapped IPv6 address.
inline std::optional<asio::ip::address_v4> mapped_ipv4(asio::ip::address const& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    }
    return std::nullopt;
}

/// Returns the bytes of `a` in network order, 4 for IPv4 and 16 for IPv6.
inline std::array<unsigned char, 16> address_bytes(asio::ip::address const& a) noexcept {
    std::array<unsigned char, 16> out{};
    if (a.is_v4()) {
        auto const bytes = a.to_v4().to_bytes();
        std::copy(bytes.begin(), bytes.end(), out.begin());
    } else {
        auto const bytes = a.to_v6().to_bytes();
        std::copy(bytes.begin(), bytes.end(), out.begin());
    }
    return out;
}

/// Returns whether the bits of `bytes` after the first `prefix` bits are all zero.
inline bool host_bits_zero(std::array<unsigned char, 16> const& bytes, unsigned prefix,
                           unsigned total_bits) noexcept {
    for (unsigned bit = prefix; bit < total_bits; ++bit) {
        if ((bytes[bit / 8] >> (7 - bit % 8)) & 1) {
            return false;
        }
    }
    return true;
}

} // namespace detail

inline std::optional<cidr> cidr::parse(std::string_view text) {
    auto const slash = text.find('/');
    std::string const address_part(text.substr(0, slash));
    if (address_part.empty() || address_part.find('%') != std::string::npos) {
        return std::nullopt;
    }
    asio::error_code error;
    auto const address = asio::ip::make_address(address_part, error);
    if (error) {
        return std::nullopt;
    }
    unsigned const max_prefix = address.is_v4() ? 32 : 128;
    unsigned prefix = max_prefix;
    if (slash != std::string_view::npos) {
        std::string_view const digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3 ||
            !std::all_of(digits.begin(), digits.end(),
                         [](char c) { return c >= '0' && c <= '9'; })) {
            return std::nullopt;
        }
        std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
        if (prefix > max_prefix) {
            return std::nullopt;
        }
    }
    if (!detail::host_bits_zero(detail::address_bytes(address), prefix, max_prefix)) {
        return std::nullopt;
    }
    return cidr{address, prefix};
}

inline bool cidr::contains(asio::ip::address const& a) const noexcept {
    if (a.is_v4() != network.is_v4()) {
        return false;
    }
    auto const candidate = detail::address_bytes(a);
    auto const base = detail::address_bytes(network);
    unsigned const whole_bytes = prefix / 8;
    if (!std::equal(base.begin(), base.begin() + whole_bytes, candidate.begin())) {
        return false;
    }
    unsigned const rest_bits = prefix % 8;
    if (rest_bits == 0) {
        return true;
    }
    auto const mask = static_cast<unsigned char>(0xff << (8 - rest_bits));
    return (base[whole_bytes] & mask) == (candidate[whole_bytes] & mask);
}

inline std::string cidr::to_string() const {
    return detail::address_text(network) + "/" + std::to_string(prefix);
}

inline std::optional<std::string_view> special_purpose_range(asio::ip::address const& a) {
    auto const match = detail::match_special_range(a);
    if (!match) {
        return std::nullopt;
    }
    return match->range->row.description;
}

inline void address_policy::allow(cidr c) {
    auto const mapped = detail::mapped_ipv4(c.network);
    if (mapped && c.prefix >= 96) {
        c = cidr{*mapped, c.prefix - 96};
    }
    if (c.network.is_v6()) {
        // Scope ids play no part in matching, so they are dropped.
        c.network = asio::ip::address_v6(c.network.to_v6().to_bytes());
    }
    allowed_.push_back(c);
}

inline bool address_policy::allows(asio::ip::address const& a) const {
    if (!detail::match_special_range(a)) {
        return true;
    }
    auto const mapped = detail::mapped_ipv4(a);
    return std::any_of(allowed_.begin(), allowed_.end(), [&](cidr const& block) {
        return block.contains(a) || (mapped && block.contains(*mapped));
    });
}

inline std::optional<std::string> address_policy::refusal(asio::ip::address const& a) const {
    if (allows(a)) {
        return std::nullopt;
    }
    auto const match = detail::match_special_range(a);
    std::string const text = detail::address_text(a);
    std::string message;
    std::string allow_value;
    if (match->embedding == nullptr) {
        message = text + " is in " + std::string(match->range->row.description);
        allow_value = text + (a.is_v4() ? "/32" : "/128");
    } else {
        std::string const embedded = match->embedded.to_string();
        message = text + " is in " + std::string(match->embedding->row.description) +
                  " and embeds " + embedded + ", which is in " +
                  std::string(match->range->row.description);
        // Only IPv4-mapped addresses are matched against IPv4 blocks (see allows).
        allow_value = detail::mapped_ipv4(a) ? embedded + "/32" : text + "/128";
    }
    message += ", a special-purpose range that webhooks may not be delivered to; allow it with "
               "--allow-target " +
               allow_value;
    return message;
}

inline std::string webhook_target::origin() const {
    bool const bracket = host.find(':') != std::string::npos;
    std::string out = scheme + "://";
    out += bracket ? "[" + host + "]" : host;
    out += ":" + std::to_string(port);
    return out;
}

namespace detail {

inline bool is_ascii_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

inline bool is_ascii_hex_digit(char c) noexcept {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline char ascii_lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

/// Returns whether a host name ends in a numeric label (decimal digits, or `0x` followed by
/// hex digits), ignoring one trailing dot. inet_aton and URL parsers that follow the WHATWG
/// URL Standard read such a host as an IPv4 address in shorthand, octal or hex form.
inline bool ends_in_number(std::string_view host) noexcept {
    if (host.ends_with('.')) {
        host.remove_suffix(1);
    }
    auto const dot = host.rfind('.');
    std::string_view const label = dot == std::string_view::npos ? host : host.substr(dot + 1);
    if (label.empty()) {
        return false;
    }
    if (std::all_of(label.begin(), label.end(), is_ascii_digit)) {
        return true;
    }
    if (label.size() >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X')) {
        return std::all_of(label.begin() + 2, label.end(), is_ascii_hex_digit);
    }
    return false;
}

/// Checks a lowercase host name against the DNS rules listed at parse_webhook_url. Returns a
/// description of the first problem, or nothing.
inline std::optional<std::string> dns_name_problem(std::string_view host) {
    if (host.size() > 253) {
        return "is " + std::to_string(host.size()) + " characters long; the maximum is 253";
    }
    std::string_view rest = host;
    while (true) {
        auto const dot = rest.find('.');
        std::string_view const label = rest.substr(0, dot);
        if (label.empty()) {
            return std::string("has an empty label (two dots in a row, or a leading dot)");
        }
        if (label.size() > 63) {
            return "has the label \"" + std::string(label.substr(0, 20)) + "...\" of " +
                   std::to_string(label.size()) + " characters; the maximum is 63";
        }
        for (char c : label) {
            bool const allowed = (c >= 'a' && c <= 'z') || is_ascii_digit(c) || c == '-';
            if (!allowed) {
                return "contains the character '" + std::string(1, c) +
                       "'; DNS names may contain only letters, digits, hyphens and dots";
            }
        }
        if (label.front() == '-' || label.back() == '-') {
            return "has the label \"" + std::string(label) +
                   "\", which starts or ends with a hyphen";
        }
        if (dot == std::string_view::npos) {
            return std::nullopt;
        }
        rest.remove_prefix(dot + 1);
    }
}

inline url_problem make_url_problem(std::string message) {
    return url_problem{std::move(message)};
}

/// Returns at most `limit` bytes of `text` for quoting in a message.
inline std::string quote_excerpt(std::string_view text, std::size_t limit = 200) {
    if (text.size() <= limit) {
        return "\"" + std::string(text) + "\"";
    }
    return "\"" + std::string(text.substr(0, limit)) + "...\"";
}

/// Returns whether `text` starts like an absolute URL: a scheme (RFC 3986 section 3.1)
/// followed by ':'.
inline bool has_scheme(std::string_view text) noexcept {
    auto const colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0) {
        return false;
    }
    auto const is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!is_letter(text[0])) {
        return false;
    }
    return std::all_of(text.begin() + 1, text.begin() + colon, [&](char c) {
        return is_letter(c) || is_ascii_digit(c) || c == '+' || c == '-' || c == '.';
    });
}

/// Validates a name host and returns its lowercase form, or the problem.
inline std::variant<std::string, url_problem> check_host_name(std::string_view encoded_host,
                                                              address_policy const& policy) {
    std::string const shown = quote_excerpt(encoded_host);
    if (encoded_host.find('%') != std::string_view::npos) {
        return make_url_problem("webhook URL host " + shown +
                                " contains percent-encoding; write the host name literally");
    }
    std::string host(encoded_host);
    std::transform(host.begin(), host.end(), host.begin(), ascii_lower);
    if (ends_in_number(host)) {
        return make_url_problem("webhook URL host " + shown +
                                " looks like an IPv4 address in a non-standard form, which "
                                "resolvers may read as a different address; write the address "
                                "as four decimal octets, such as 192.0.2.10");
    }
    if (host.ends_with('.')) {
        return make_url_problem("webhook URL host " + shown +
                                " ends with a dot; remove the trailing dot");
    }
    if (auto const problem = dns_name_problem(host)) {
        return make_url_problem("webhook URL host " + shown + " is not a valid DNS name: it " +
                                *problem);
    }
    if (host == "localhost" || host.ends_with(".localhost")) {
        bool const loopback_allowed = policy.allows(asio::ip::address_v4::loopback()) ||
                                      policy.allows(asio::ip::address_v6::loopback());
        if (!loopback_allowed) {
            return make_url_problem(
                "webhook URL host " + shown +
                " always resolves to loopback, which webhooks may not be delivered to; allow "
                "it with --allow-target 127.0.0.1/32 (or ::1/128)");
        }
    }
    return host;
}

/// Parses the digits of an explicit port. Returns 0 when they are empty or out of range.
inline std::uint16_t parse_port(std::string_view digits) noexcept {
    unsigned long value = 0;
    for (char c : digits) {
        if (!is_ascii_digit(c)) {
            return 0;
        }
        value = value * 10 + static_cast<unsigned long>(c - '0');
        if (value > 65535) {
            return 0;
        }
    }
    return static_cast<std::uint16_t>(value);
}

} // namespace detail

inline std::variant<webhook_target, url_problem>
parse_webhook_url(std::string_view url, bool allow_http, address_policy const& policy) {
    using detail::make_url_problem;
    namespace urls = boost::urls;

    if (url.size() > max_webhook_url_length) {
        return make_url_problem("webhook URL is " + std::to_string(url.size()) +
                                " bytes long; the maximum is " +
                                std::to_string(max_webhook_url_length));
    }
    if (url.empty()) {
        return make_url_problem("webhook URL is empty; give an absolute https URL such as "
                                "https://example.com/hooks");
    }
    if (!detail::has_scheme(url)) {
        return make_url_problem("webhook URL " + detail::quote_excerpt(url) +
                                " is not an absolute URL; give an absolute https URL such as "
                                "https://example.com/hooks");
    }
    // parse_uri rather than parse_absolute_uri, so that a fragment gets its own message below
    // instead of a generic syntax error.
    auto const parsed = urls::parse_uri(urls::string_view(url.data(), url.size()));
    if (!parsed) {
        return make_url_problem("webhook URL " + detail::quote_excerpt(url) +
                                " is not a valid URL (parser error: " + parsed.error().message() +
                                "); check for spaces and other characters that need "
                                "percent-encoding, and write internationalized host names in "
                                "punycode (xn--...)");
    }
    urls::url_view const& view = *parsed;

    std::string scheme(view.scheme());
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), detail::ascii_lower);
    if (scheme == "http" && !allow_http) {
        return make_url_problem("webhook URL scheme \"http\" is not allowed; use https, or "
                                "start the server with --allow-http to accept plain http");
    }
    if (scheme != "https" && scheme != "http") {
        return make_url_problem("webhook URL scheme " + detail::quote_excerpt(scheme, 32) +
                                " is not supported; use " + (allow_http ? "https or http" : "https"));
    }
    if (!view.has_authority() || view.encoded_host().empty()) {
        return make_url_problem("webhook URL " + detail::quote_excerpt(url) +
                                " has no host; write it as https://host/path");
    }
    if (view.has_userinfo()) {
        // The userinfo may contain a password, so it is not repeated here.
        return make_url_problem("webhook URL contains userinfo (the part before '@' in the "
                                "authority); remove it, because credentials in URLs are not "
                                "supported");
    }
    if (view.has_fragment()) {
        return make_url_problem(
            "webhook URL contains the fragment " +
            detail::quote_excerpt("#" + std::string(view.encoded_fragment()), 64) +
            ", which is never sent to the receiver; remove it");
    }
    std::string_view const path(view.encoded_path().data(), view.encoded_path().size());
    if (!path.empty() && path.front() != '/') {
        // Boost.URL 1.81 ends an IP-literal host where the literal ends, so
        // "https://127.0.0.1.example/" yields host 127.0.0.1 and path ".example/".
        // NOTE: names that start with a dotted quad (as in nip.io) are rejected for this reason.
        std::string const host_text =
            std::string(view.encoded_host_and_port()) + std::string(path.substr(0, path.find('/')));
        return make_url_problem("webhook URL host " + detail::quote_excerpt(host_text) +
                                " starts with an IP address followed by other characters; use "
                                "the address alone or a name that does not start with one");
    }

    webhook_target target;
    target.scheme = scheme;
    if (view.has_port()) {
        std::string_view const port_text(view.port().data(), view.port().size());
        target.port = detail::parse_port(port_text);
        if (target.port == 0) {
            return make_url_problem(
                "webhook URL port " + detail::quote_excerpt(port_text, 16) +
                " is not valid; give a port from 1 to 65535, or none for the default");
        }
    } else {
        target.port = scheme == "https" ? 443 : 80;
    }

    switch (view.host_type()) {
    case urls::host_type::ipv4:
    case urls::host_type::ipv6: {
        asio::ip::address address;
        if (view.host_type() == urls::host_type::ipv4) {
            address = asio::ip::address_v4(view.host_ipv4_address().to_bytes());
        } else {
            address = asio::ip::address_v6(view.host_ipv6_address().to_bytes());
        }
        if (auto refusal = policy.refusal(address)) {
            return make_url_problem("webhook URL host " + *refusal);
        }
        target.host = address.to_string();
        target.host_is_ip = true;
        break;
    }
    case urls::host_type::name: {
        std::string_view const encoded(view.encoded_host().data(), view.encoded_host().size());
        auto checked = detail::check_host_name(encoded, policy);
        if (auto* problem = std::get_if<url_problem>(&checked)) {
            return std::move(*problem);
        }
        target.host = std::move(std::get<std::string>(checked));
        break;
    }
    default:
        return make_url_problem("webhook URL host " +
                                detail::quote_excerpt(std::string(view.encoded_host())) +
                                " is an IPvFuture literal, which is not supported; use an IPv4 "
                                "or IPv6 address or a DNS name");
    }

    target.target = path.empty() ? "/" : std::string(path);
    if (view.has_query()) {
        target.target += '?';
        target.target += std::string(view.encoded_query());
    }
    return target;
}

} // namespace revdesk
