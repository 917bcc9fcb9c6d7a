// Destination checks for webhook deliveries: CIDR blocks, the table of special-purpose address
// ranges, the operator's allow list, and the validation of webhook URLs.
//
// Deliveries go to URLs that API clients supply, so the server must not become a way to reach
// its own loopback, private networks or cloud metadata addresses (server-side request forgery).
// Every address in a range that the IANA Special-Purpose Address Registries mark as not
// globally reachable is rejected, plus multicast and some IPv6 forms that embed IPv4 addresses.
// docs/destination-policy.md lists the ranges and explains each choice.
//
// Thread safety: the free functions may be called from any thread. An address_policy may be
// read from several threads at once, but `allow` must not run concurrently with any other
// member function on the same object.
#pragma once

#include <asio/ip/address.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace revdesk {

/// An IPv4 or IPv6 address block such as `10.0.0.0/8` or `fc00::/7`.
struct cidr {
    asio::ip::address network; ///< The first address of the block, without a scope id.
    unsigned prefix = 0;       ///< Number of leading bits fixed: 0..32 for IPv4, 0..128 for IPv6.

    /// Parses `address/prefix`, or a bare address, which means `/32` or `/128`. The address
    /// must be in the standard text form (four decimal octets without leading zeros, or RFC
    /// 4291 IPv6 text), without an IPv6 scope id and without surrounding whitespace. The prefix
    /// is 1 to 3 decimal digits, at most 32 or 128.
    /// Returns nothing for anything else, including a block whose host bits are not zero
    /// (`10.0.0.1/8`): such text is more likely a typo than a request for the whole block, so
    /// it is rejected rather than widened.
    static std::optional<cidr> parse(std::string_view text);

    /// Returns whether `a` lies in this block. Addresses of the other family never do (an
    /// IPv4-mapped IPv6 address is not in an IPv4 block here, see address_policy::allows).
    /// Scope ids are ignored.
    bool contains(asio::ip::address const& a) const noexcept;

    /// Formats the block as `network/prefix`.
    std::string to_string() const;

    friend bool operator==(cidr const&, cidr const&) = default;
};

/// Returns the name and block of the special-purpose range that makes `a` unfit as a webhook
/// destination, such as `"Loopback (127.0.0.0/8)"`, or nothing when `a` is treated as globally
/// reachable. The view refers to a static table and stays valid for the life of the program.
/// When several ranges contain `a`, the most specific one is named.
/// For the IPv6 forms that are judged by their embedded IPv4 address (IPv4-mapped
/// `::ffff:0:0/96`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`), the result names the IPv4
/// range of the embedded address, and nothing when that address is public.
std::optional<std::string_view> special_purpose_range(asio::ip::address const& a);

/// The special-purpose table plus the blocks that the operator allows anyway (`--allow-target`),
/// for example to deliver to a receiver on loopback during development.
class address_policy {
public:
    /// Adds `c` to the allow list. An IPv6 block inside `::ffff:0:0/96` with a prefix of at
    /// least 96 is stored as the IPv4 block it maps, so that `::ffff:127.0.0.1/128` and
    /// `127.0.0.1/32` mean the same.
    void allow(cidr c);

    /// Returns whether deliveries may go to `a`: true when `a` is in no special-purpose range
    /// or lies in an allowed block. An IPv4-mapped IPv6 address is matched against the
    /// allowed blocks both as itself and as its IPv4 address.
    bool allows(asio::ip::address const& a) const;

    /// Returns nothing when `allows(a)`, else a message that names the address, the range and
    /// the `--allow-target` value that would allow it, for example "127.0.0.1 is in Loopback
    /// (127.0.0.0/8), a special-purpose range that webhooks may not be delivered to; allow it
    /// with --allow-target 127.0.0.1/32".
    std::optional<std::string> refusal(asio::ip::address const& a) const;

    /// Returns the allowed blocks in the order added, after the normalization described at
    /// `allow`.
    std::span<cidr const> allowed() const noexcept { return allowed_; }

private:
    std::vector<cidr> allowed_;
};

/// The parts of a validated webhook URL that a client needs to connect and send the request.
struct webhook_target {
    std::string scheme; ///< `https`, or `http` when allowed; always lowercase.
    /// The host without brackets: a lowercase DNS name, or an IP address in canonical text form.
    std::string host;
    std::uint16_t port = 0;  ///< The explicit port, else 443 for https and 80 for http.
    std::string target;      ///< The request target: encoded path and query, `/` when empty.
    bool host_is_ip = false; ///< Whether `host` is an IPv4 or IPv6 address literal.

    /// Returns `scheme://host:port`, with the port always present and IPv6 hosts in brackets.
    std::string origin() const;

    friend bool operator==(webhook_target const&, webhook_target const&) = default;
};

/// Why a webhook URL was rejected: one sentence naming the value and the fix, fit for an API
/// error response. It never repeats userinfo from the URL.
struct url_problem {
    std::string message;
};

/// Maximum length of a webhook URL in bytes.
inline constexpr std::size_t max_webhook_url_length = 2048;

/// Validates a webhook URL and splits it into a webhook_target. Requirements:
/// - an absolute URL (RFC 3986) of at most max_webhook_url_length bytes, with scheme `https`,
///   or `http` when `allow_http` is true;
/// - a host, and no userinfo (`user:password@`), no fragment, and a port, if given, of 1 to
///   65535;
/// - an IP literal host (IPv4 or bracketed IPv6) that `policy` allows;
/// - a name host that is a DNS name in ASCII, with punycode for internationalized names. Its
///   labels have 1 to 63 letters, digits or hyphens and neither start nor end with a hyphen.
///   The name has at most 253 characters, no percent-encoding and no trailing dot, because TLS
///   server name indication carries names without it. Underscores are rejected, because
///   publicly trusted TLS certificates may not contain them;
/// - a name host whose last label is not numeric, so that `2130706433`, `0x7f000001`,
///   `0177.0.0.1` and `127.1` are rejected: resolvers read these as IPv4 addresses (as
///   inet_aton does), so they could hide a special-purpose address from this check.
/// - no host that starts with an IP literal and continues, such as `127.0.0.1.example.com`,
///   which Boost.URL 1.81 splits after the literal;
/// - no `localhost` or `*.localhost` name, which always resolves to loopback (RFC 6761
///   section 6.3), unless `policy` allows 127.0.0.1 or ::1.
/// Names are not resolved here. Before connecting, the caller must resolve the name, check
/// every resolved address with `policy.allows`, and connect only to addresses that passed.
std::variant<webhook_target, url_problem> parse_webhook_url(std::string_view url, bool allow_http,
                                                            address_policy const& policy);

} // namespace revdesk

#include <revdesk/impl/destination.ipp>
