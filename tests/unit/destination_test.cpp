#include <revdesk/destination.hpp>

#define BOOST_TEST_MODULE destination
#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

asio::ip::address addr(std::string_view text) {
    return asio::ip::make_address(std::string(text));
}

std::string describe(std::optional<std::string_view> range) {
    return range ? std::string(*range) : std::string("(globally reachable)");
}

/// The first, last and neighbouring addresses of a block; the neighbours are missing at the
/// ends of the address space.
struct block_edges {
    asio::ip::address first;
    asio::ip::address last;
    std::optional<asio::ip::address> before;
    std::optional<asio::ip::address> after;
};

template <typename Bytes>
bool step(Bytes& bytes, int delta) {
    // Adds delta (+1 or -1) to a big-endian number; returns false on wrap-around.
    for (std::size_t i = bytes.size(); i-- > 0;) {
        if (delta > 0) {
            if (++bytes[i] != 0) {
                return true;
            }
        } else {
            if (bytes[i]-- != 0) {
                return true;
            }
        }
    }
    return false;
}

template <typename Address>
block_edges edges_of(Address network, unsigned prefix) {
    auto first = network.to_bytes();
    auto last = first;
    for (unsigned bit = prefix; bit < last.size() * 8; ++bit) {
        last[bit / 8] |= static_cast<unsigned char>(1u << (7 - bit % 8));
    }
    block_edges edges{Address(first), Address(last), std::nullopt, std::nullopt};
    if (auto before = first; step(before, -1)) {
        edges.before = Address(before);
    }
    if (auto after = last; step(after, +1)) {
        edges.after = Address(after);
    }
    return edges;
}

block_edges edges_of(std::string_view block_text) {
    auto const block = revdesk::cidr::parse(block_text);
    BOOST_REQUIRE_MESSAGE(block.has_value(), "test table block " << block_text);
    if (block->network.is_v4()) {
        return edges_of(block->network.to_v4(), block->prefix);
    }
    return edges_of(block->network.to_v6(), block->prefix);
}

revdesk::webhook_target const*
accepted(std::variant<revdesk::webhook_target, revdesk::url_problem> const& result) {
    return std::get_if<revdesk::webhook_target>(&result);
}

std::string problem_of(std::variant<revdesk::webhook_target, revdesk::url_problem> const& result) {
    if (auto const* problem = std::get_if<revdesk::url_problem>(&result)) {
        return problem->message;
    }
    return {};
}

constexpr std::string_view public_result = "(globally reachable)";

} // namespace

BOOST_AUTO_TEST_CASE(cidr_parse_accepts_blocks_and_bare_addresses) {
    struct parse_case {
        std::string_view text;
        std::string_view network;
        unsigned prefix;
    };
    parse_case const cases[] = {
        {"10.0.0.0/8", "10.0.0.0", 8},
        {"100.64.0.0/10", "100.64.0.0", 10},
        {"127.0.0.1", "127.0.0.1", 32},
        {"127.0.0.1/32", "127.0.0.1", 32},
        {"0.0.0.0/0", "0.0.0.0", 0},
        {"::1", "::1", 128},
        {"::/0", "::", 0},
        {"fc00::/7", "fc00::", 7},
        {"FE80::/10", "fe80::", 10},
        {"2001:db8::/32", "2001:db8::", 32},
        {"::ffff:127.0.0.1/128", "::ffff:127.0.0.1", 128},
        {"10.0.0.0/008", "10.0.0.0", 8},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("text \"" << c.text << "\"") {
            auto const block = revdesk::cidr::parse(c.text);
            BOOST_REQUIRE(block.has_value());
            BOOST_TEST(block->network == addr(c.network));
            BOOST_TEST(block->prefix == c.prefix);
        }
    }
}

BOOST_AUTO_TEST_CASE(cidr_parse_rejects_malformed_text) {
    std::string_view const cases[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.1/8",
        "fc00::1/7",
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/0x8",
        "10.0.0.0/0008",
        "10.0.0.0/8/8",
        "fe80::1%eth0/128",
        "fe80::1%1",
        "010.0.0.0/8",
        "10.1/16",
        "2130706433/32",
        "example.com/8",
        "[::1]/128",
    };
    for (auto const text : cases) {
        BOOST_TEST_CONTEXT("text \"" << text << "\"") {
            BOOST_TEST(!revdesk::cidr::parse(text).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(cidr_contains_respects_prefix_and_family) {
    auto const shared = *revdesk::cidr::parse("100.64.0.0/10");
    BOOST_TEST(shared.contains(addr("100.64.0.0")));
    BOOST_TEST(shared.contains(addr("100.127.255.255")));
    BOOST_TEST(!shared.contains(addr("100.128.0.0")));
    BOOST_TEST(!shared.contains(addr("100.63.255.255")));
    BOOST_TEST(!shared.contains(addr("::ffff:100.64.0.1")));

    auto const unique_local = *revdesk::cidr::parse("fc00::/7");
    BOOST_TEST(unique_local.contains(addr("fd12:3456::1")));
    BOOST_TEST(!unique_local.contains(addr("fe00::")));
    BOOST_TEST(unique_local.contains(addr("fd00::1%1")));

    auto const all_v4 = *revdesk::cidr::parse("0.0.0.0/0");
    BOOST_TEST(all_v4.contains(addr("255.255.255.255")));
    BOOST_TEST(!all_v4.contains(addr("::")));

    auto const host = *revdesk::cidr::parse("::1");
    BOOST_TEST(host.contains(addr("::1")));
    BOOST_TEST(!host.contains(addr("::2")));
}

BOOST_AUTO_TEST_CASE(cidr_to_string_formats_block) {
    BOOST_TEST(revdesk::cidr::parse("10.0.0.0/8")->to_string() == "10.0.0.0/8");
    BOOST_TEST(revdesk::cidr::parse("::1")->to_string() == "::1/128");
    BOOST_TEST(revdesk::cidr::parse("FC00::/7")->to_string() == "fc00::/7");
}

BOOST_AUTO_TEST_CASE(special_purpose_range_covers_edges_of_each_range) {
    // For every range: the expected result at its first and last address and just outside it.
    // A neighbour is often in another range, and an empty expectation means "no neighbour".
    struct range_case {
        std::string_view block;
        std::string_view first;
        std::string_view last;
        std::string_view before;
        std::string_view after;
    };
    constexpr std::string_view none = "";
    constexpr std::string_view pub = public_result;
    constexpr std::string_view this_host = "This host on this network (0.0.0.0/32)";
    constexpr std::string_view ietf_v4 = "IETF Protocol Assignments (192.0.0.0/24)";
    constexpr std::string_view continuity = "IPv4 Service Continuity Prefix (192.0.0.0/29)";
    constexpr std::string_view broadcast = "Limited Broadcast (255.255.255.255/32)";
    constexpr std::string_view reserved = "Reserved (240.0.0.0/4)";
    constexpr std::string_view ietf_v6 = "IETF Protocol Assignments (2001::/23)";
    constexpr std::string_view site_local = "Site-Local, deprecated (fec0::/10)";
    constexpr std::string_view reserved_3 = "Reserved by IETF, outside Global Unicast (::/3)";
    constexpr std::string_view reserved_2 = "Reserved by IETF, outside Global Unicast (4000::/2)";
    constexpr std::string_view reserved_1 = "Reserved by IETF, outside Global Unicast (8000::/1)";
    range_case const cases[] = {
        {"0.0.0.0/8", this_host, "This network (0.0.0.0/8)", none, pub},
        {"0.0.0.0/32", this_host, this_host, none, "This network (0.0.0.0/8)"},
        {"10.0.0.0/8", "Private-Use (10.0.0.0/8)", "Private-Use (10.0.0.0/8)", pub, pub},
        {"100.64.0.0/10", "Shared Address Space (100.64.0.0/10)",
         "Shared Address Space (100.64.0.0/10)", pub, pub},
        {"127.0.0.0/8", "Loopback (127.0.0.0/8)", "Loopback (127.0.0.0/8)", pub, pub},
        {"169.254.0.0/16", "Link Local (169.254.0.0/16)", "Link Local (169.254.0.0/16)", pub, pub},
        {"172.16.0.0/12", "Private-Use (172.16.0.0/12)", "Private-Use (172.16.0.0/12)", pub, pub},
        {"192.0.0.0/24", continuity, ietf_v4, pub, pub},
        {"192.0.0.0/29", continuity, continuity, pub, "IPv4 dummy address (192.0.0.8/32)"},
        {"192.0.0.8/32", "IPv4 dummy address (192.0.0.8/32)", "IPv4 dummy address (192.0.0.8/32)",
         continuity, ietf_v4},
        {"192.0.0.170/32", "NAT64/DNS64 Discovery (192.0.0.170/32)",
         "NAT64/DNS64 Discovery (192.0.0.170/32)", ietf_v4,
         "NAT64/DNS64 Discovery (192.0.0.171/32)"},
        {"192.0.0.171/32", "NAT64/DNS64 Discovery (192.0.0.171/32)",
         "NAT64/DNS64 Discovery (192.0.0.171/32)", "NAT64/DNS64 Discovery (192.0.0.170/32)",
         ietf_v4},
        {"192.0.2.0/24", "Documentation (TEST-NET-1) (192.0.2.0/24)",
         "Documentation (TEST-NET-1) (192.0.2.0/24)", pub, pub},
        {"192.88.99.2/32", "6a44-relay anycast address (192.88.99.2/32)",
         "6a44-relay anycast address (192.88.99.2/32)", pub, pub},
        {"192.168.0.0/16", "Private-Use (192.168.0.0/16)", "Private-Use (192.168.0.0/16)", pub,
         pub},
        {"198.18.0.0/15", "Benchmarking (198.18.0.0/15)", "Benchmarking (198.18.0.0/15)", pub, pub},
        {"198.51.100.0/24", "Documentation (TEST-NET-2) (198.51.100.0/24)",
         "Documentation (TEST-NET-2) (198.51.100.0/24)", pub, pub},
        {"203.0.113.0/24", "Documentation (TEST-NET-3) (203.0.113.0/24)",
         "Documentation (TEST-NET-3) (203.0.113.0/24)", pub, pub},
        {"224.0.0.0/4", "Multicast (224.0.0.0/4)", "Multicast (224.0.0.0/4)", pub, reserved},
        {"240.0.0.0/4", reserved, broadcast, "Multicast (224.0.0.0/4)", none},
        {"255.255.255.255/32", broadcast, broadcast, reserved, none},

        {"::/128", "Unspecified Address (::/128)", "Unspecified Address (::/128)", none,
         "Loopback Address (::1/128)"},
        {"::1/128", "Loopback Address (::1/128)", "Loopback Address (::1/128)",
         "Unspecified Address (::/128)", "IPv4-compatible Address, deprecated (::/96)"},
        {"::/96", "Unspecified Address (::/128)", "IPv4-compatible Address, deprecated (::/96)",
         none, reserved_3},
        // Judged by the embedded IPv4 address: 0.0.0.0 first, 255.255.255.255 last.
        {"::ffff:0:0/96", this_host, broadcast, reserved_3, reserved_3},
        {"64:ff9b::/96", this_host, broadcast, reserved_3, reserved_3},
        {"64:ff9b:1::/48", "IPv4-IPv6 Translation, local-use (64:ff9b:1::/48)",
         "IPv4-IPv6 Translation, local-use (64:ff9b:1::/48)", reserved_3, reserved_3},
        {"100::/64", "Discard-Only Address Block (100::/64)",
         "Discard-Only Address Block (100::/64)", reserved_3, "Dummy IPv6 Prefix (100:0:0:1::/64)"},
        {"100:0:0:1::/64", "Dummy IPv6 Prefix (100:0:0:1::/64)",
         "Dummy IPv6 Prefix (100:0:0:1::/64)", "Discard-Only Address Block (100::/64)", reserved_3},
        {"2001::/23", "TEREDO (2001::/32)", ietf_v6, pub, pub},
        {"2001::/32", "TEREDO (2001::/32)", "TEREDO (2001::/32)", pub, ietf_v6},
        {"2001:2::/48", "Benchmarking (2001:2::/48)", "Benchmarking (2001:2::/48)", ietf_v6,
         ietf_v6},
        {"2001:10::/28", "Deprecated (previously ORCHID) (2001:10::/28)",
         "Deprecated (previously ORCHID) (2001:10::/28)", ietf_v6, ietf_v6},
        {"2001:db8::/32", "Documentation (2001:db8::/32)", "Documentation (2001:db8::/32)", pub,
         pub},
        {"2002::/16", this_host, broadcast, pub, pub},
        {"3fff::/20", "Documentation (3fff::/20)", "Documentation (3fff::/20)", pub, pub},
        {"5f00::/16", "Segment Routing (SRv6) SIDs (5f00::/16)",
         "Segment Routing (SRv6) SIDs (5f00::/16)", reserved_2, reserved_2},
        {"fc00::/7", "Unique-Local (fc00::/7)", "Unique-Local (fc00::/7)", reserved_1, reserved_1},
        {"fe80::/10", "Link-Local Unicast (fe80::/10)", "Link-Local Unicast (fe80::/10)",
         reserved_1, site_local},
        {"fec0::/10", site_local, site_local, "Link-Local Unicast (fe80::/10)",
         "Multicast (ff00::/8)"},
        {"ff00::/8", "Multicast (ff00::/8)", "Multicast (ff00::/8)", site_local, none},
    };
    for (auto const& c : cases) {
        auto const edges = edges_of(c.block);
        BOOST_TEST_CONTEXT("block " << c.block << ", first " << edges.first) {
            BOOST_TEST(describe(revdesk::special_purpose_range(edges.first)) == c.first);
        }
        BOOST_TEST_CONTEXT("block " << c.block << ", last " << edges.last) {
            BOOST_TEST(describe(revdesk::special_purpose_range(edges.last)) == c.last);
        }
        BOOST_TEST_CONTEXT("block " << c.block << ", before") {
            BOOST_TEST(edges.before.has_value() == !c.before.empty());
            if (edges.before) {
                BOOST_TEST_CONTEXT("address " << *edges.before) {
                    BOOST_TEST(describe(revdesk::special_purpose_range(*edges.before)) == c.before);
                }
            }
        }
        BOOST_TEST_CONTEXT("block " << c.block << ", after") {
            BOOST_TEST(edges.after.has_value() == !c.after.empty());
            if (edges.after) {
                BOOST_TEST_CONTEXT("address " << *edges.after) {
                    BOOST_TEST(describe(revdesk::special_purpose_range(*edges.after)) == c.after);
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(special_purpose_range_judges_embedded_ipv4) {
    struct embedded_case {
        std::string_view address;
        std::string_view expected;
    };
    embedded_case const cases[] = {
        {"::ffff:127.0.0.1", "Loopback (127.0.0.0/8)"},
        {"::ffff:7f00:1", "Loopback (127.0.0.0/8)"},
        {"::ffff:169.254.169.254", "Link Local (169.254.0.0/16)"},
        {"::ffff:10.1.2.3", "Private-Use (10.0.0.0/8)"},
        {"::ffff:8.8.8.8", public_result},
        {"64:ff9b::7f00:1", "Loopback (127.0.0.0/8)"},
        {"64:ff9b::169.254.169.254", "Link Local (169.254.0.0/16)"},
        {"64:ff9b::8.8.8.8", public_result},
        {"2002:7f00:1::", "Loopback (127.0.0.0/8)"},
        {"2002:a9fe:a9fe::1", "Link Local (169.254.0.0/16)"},
        {"2002:c0a8:101:1::1", "Private-Use (192.168.0.0/16)"},
        {"2002:808:808::1", public_result},
        // Rejected whole, whatever they embed.
        {"::8.8.8.8", "IPv4-compatible Address, deprecated (::/96)"},
        {"::127.0.0.1", "IPv4-compatible Address, deprecated (::/96)"},
        {"64:ff9b:1::808:808", "IPv4-IPv6 Translation, local-use (64:ff9b:1::/48)"},
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", "TEREDO (2001::/32)"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("address " << c.address) {
            BOOST_TEST(describe(revdesk::special_purpose_range(addr(c.address))) == c.expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(special_purpose_range_rejects_required_examples) {
    std::string_view const cases[] = {
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "192.0.0.1",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        // Globally reachable in the registry, but inside blocks rejected as a whole.
        "192.0.0.9",
        "192.0.0.10",
        "2001:1::1",
        "2001:3::1",
        "2001:20::1",
    };
    for (auto const text : cases) {
        BOOST_TEST_CONTEXT("address " << text) {
            BOOST_TEST(revdesk::special_purpose_range(addr(text)).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(special_purpose_range_passes_public_addresses) {
    std::string_view const cases[] = {
        "8.8.8.8",
        "1.1.1.1",
        "9.9.9.9",
        "93.184.216.34",
        "192.88.99.1",
        "192.31.196.1",
        "192.175.48.1",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2620:4f:8000::1",
        "2a00:1450::1",
    };
    for (auto const text : cases) {
        BOOST_TEST_CONTEXT("address " << text) {
            BOOST_TEST(describe(revdesk::special_purpose_range(addr(text))) == public_result);
        }
    }
}

BOOST_AUTO_TEST_CASE(address_policy_allows_public_and_rejects_special) {
    revdesk::address_policy const policy;
    BOOST_TEST(policy.allows(addr("8.8.8.8")));
    BOOST_TEST(policy.allows(addr("2606:4700:4700::1111")));
    BOOST_TEST(!policy.refusal(addr("1.1.1.1")).has_value());
    BOOST_TEST(!policy.allows(addr("127.0.0.1")));
    BOOST_TEST(!policy.allows(addr("::ffff:127.0.0.1")));
    BOOST_TEST(!policy.allows(addr("fe80::1%1")));
}

BOOST_AUTO_TEST_CASE(address_policy_allow_matches_block_and_mapped_form) {
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("127.0.0.1/32"));
    BOOST_TEST(policy.allows(addr("127.0.0.1")));
    BOOST_TEST(policy.allows(addr("::ffff:127.0.0.1")));
    BOOST_TEST(!policy.allows(addr("127.0.0.2")));
    BOOST_TEST(!policy.allows(addr("::1")));
    // NAT64 forms reach the address through a translator, so they need their own entry.
    BOOST_TEST(!policy.allows(addr("64:ff9b::7f00:1")));

    policy.allow(*revdesk::cidr::parse("64:ff9b::7f00:1/128"));
    BOOST_TEST(policy.allows(addr("64:ff9b::7f00:1")));

    policy.allow(*revdesk::cidr::parse("10.0.0.0/8"));
    BOOST_TEST(policy.allows(addr("10.200.0.1")));
    BOOST_TEST(policy.allows(addr("::ffff:10.200.0.1")));
    BOOST_TEST(!policy.allows(addr("192.168.0.1")));
}

BOOST_AUTO_TEST_CASE(address_policy_allow_stores_mapped_block_as_ipv4) {
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("::ffff:127.0.0.0/104"));
    BOOST_REQUIRE(policy.allowed().size() == 1u);
    BOOST_TEST(policy.allowed()[0].to_string() == "127.0.0.0/8");
    BOOST_TEST(policy.allows(addr("127.0.0.5")));
    BOOST_TEST(policy.allows(addr("::ffff:127.0.0.5")));
}

BOOST_AUTO_TEST_CASE(address_policy_refusal_names_range_and_fix) {
    revdesk::address_policy const policy;
    struct refusal_case {
        std::string_view address;
        std::string_view message;
    };
    refusal_case const cases[] = {
        {"127.0.0.1",
         "127.0.0.1 is in Loopback (127.0.0.0/8), a special-purpose range that webhooks may not "
         "be delivered to; allow it with --allow-target 127.0.0.1/32"},
        {"fd00::1",
         "fd00::1 is in Unique-Local (fc00::/7), a special-purpose range that webhooks may not "
         "be delivered to; allow it with --allow-target fd00::1/128"},
        {"::ffff:169.254.169.254",
         "::ffff:169.254.169.254 is in IPv4-mapped Address (::ffff:0:0/96) and embeds "
         "169.254.169.254, which is in Link Local (169.254.0.0/16), a special-purpose range "
         "that webhooks may not be delivered to; allow it with --allow-target "
         "169.254.169.254/32"},
        {"2002:7f00:1::",
         "2002:7f00:1:: is in 6to4 (2002::/16) and embeds 127.0.0.1, which is in Loopback "
         "(127.0.0.0/8), a special-purpose range that webhooks may not be delivered to; allow "
         "it with --allow-target 2002:7f00:1::/128"},
        {"fe80::1%1",
         "fe80::1 is in Link-Local Unicast (fe80::/10), a special-purpose range that webhooks "
         "may not be delivered to; allow it with --allow-target fe80::1/128"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("address " << c.address) {
            auto const message = policy.refusal(addr(c.address));
            BOOST_REQUIRE(message.has_value());
            BOOST_TEST(*message == c.message);
        }
    }
}

BOOST_AUTO_TEST_CASE(address_policy_refusal_fix_allows_address) {
    // Following the suggested --allow-target value must allow the address, for every kind.
    std::string_view const cases[] = {
        "0.0.0.0",      "10.1.2.3",  "127.0.0.1",        "169.254.169.254",
        "192.0.0.9",    "224.0.0.1", "255.255.255.255",  "::",
        "::1",          "::8.8.8.8", "::ffff:127.0.0.1", "64:ff9b::a00:1",
        "64:ff9b:1::1", "2001::1",   "2002:a00:1::",     "fd00::1",
        "fe80::1%1",    "ff02::1",
    };
    for (auto const text : cases) {
        BOOST_TEST_CONTEXT("address " << text) {
            revdesk::address_policy policy;
            auto const message = policy.refusal(addr(text));
            BOOST_REQUIRE(message.has_value());
            std::string_view const marker = "--allow-target ";
            auto const at = message->find(marker);
            BOOST_REQUIRE(at != std::string::npos);
            auto const block = revdesk::cidr::parse(message->substr(at + marker.size()));
            BOOST_REQUIRE(block.has_value());
            policy.allow(*block);
            BOOST_TEST(policy.allows(addr(text)));
            BOOST_TEST(!policy.refusal(addr(text)).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_rejects_unsafe_or_invalid_urls) {
    revdesk::address_policy const policy;
    struct url_case {
        std::string url;
        std::string_view message_part; // a fragment of the expected message
    };
    url_case const cases[] = {
        {"https://[::ffff:127.0.0.1]/h", "Loopback (127.0.0.0/8)"},
        {"https://[::ffff:7f00:1]/h", "Loopback (127.0.0.0/8)"},
        {"https://[::ffff:169.254.169.254]/", "Link Local (169.254.0.0/16)"},
        {"https://[::ffff:0:169.254.169.254]/latest/meta-data/", "IPv4-translated Address"},
        {"https://[::ffff:0:127.0.0.1]/", "IPv4-translated Address"},
        {"https://[0:0:0:0:ffff:0:7f00:1]/x", "IPv4-translated Address"},
        {"https://[::ffff:0:0:1]/x", "IPv4-translated Address"},
        {"https://[4000::1]/", "outside Global Unicast (4000::/2)"},
        {"https://[::1]/", "Loopback Address (::1/128)"},
        {"https://[::]/", "Unspecified Address (::/128)"},
        {"https://127.0.0.1/", "--allow-target 127.0.0.1/32"},
        {"https://169.254.169.254/latest/meta-data/", "Link Local (169.254.0.0/16)"},
        {"https://10.0.0.1:8443/", "Private-Use (10.0.0.0/8)"},
        {"https://[fe80::1]/", "Link-Local Unicast (fe80::/10)"},
        {"https://2130706433/", "four decimal octets"},
        {"https://0x7f000001/", "four decimal octets"},
        {"https://0X7F000001/", "four decimal octets"},
        {"https://0177.0.0.1/", "four decimal octets"},
        {"https://127.1/", "four decimal octets"},
        {"https://0/", "four decimal octets"},
        {"https://1.2.3.256/", "four decimal octets"},
        {"https://0x7f.0x0.0x0.0x1/", "four decimal octets"},
        {"https://example.0x10/", "four decimal octets"},
        {"https://example.123/", "four decimal octets"},
        {"https://127.0.0.1.example.com/", "starts with an IP address"},
        {"https://8.8.8.8.nip.io/", "starts with an IP address"},
        {"https://[::1]x/", "starts with an IP address"},
        {"http://example.com/", "scheme \"http\" is not allowed"},
        {"HTTP://example.com/", "scheme \"http\" is not allowed"},
        {"https://user:hunter2@example.com/", "userinfo"},
        {"https://@example.com/", "userinfo"},
        {"https://example.com/hook#frag", "\"#frag\""},
        {"https://example.com/#", "fragment"},
        {"https://example.com:0/", "port \"0\""},
        {"https://example.com:70000/", "port \"70000\""},
        {"https://example.com:65536/", "port \"65536\""},
        {"https://example.com:/", "port \"\""},
        {"/hooks/revdesk", "not an absolute URL"},
        {"//example.com/hooks", "not an absolute URL"},
        {"example.com/hooks", "not an absolute URL"},
        {"", "empty"},
        {"ftp://example.com/", "scheme \"ftp\" is not supported"},
        {"javascript:alert(1)", "scheme \"javascript\" is not supported"},
        {"https:example.com", "has no host"},
        {"https:///hooks", "has no host"},
        {"https://exa mple.com/", "not a valid URL"},
        {"https://[v1.example]/", "IPvFuture"},
        {"https://exa%6dple.com/", "percent-encoding"},
        {"https://example.com./", "trailing dot"},
        {"https://exa_mple.com/", "'_'"},
        {"https://-example.com/", "hyphen"},
        {"https://example-.com/", "hyphen"},
        {"https://example..com/", "empty label"},
        {"https://.example.com/", "empty label"},
        {"https://" + std::string(64, 'a') + ".com/", "maximum is 63"},
        {"https://" + std::string(63, 'a') + "." + std::string(63, 'b') + "." +
             std::string(63, 'c') + "." + std::string(63, 'd') + ".com/",
         "maximum is 253"},
        {"https://localhost/", "always resolves to loopback"},
        {"https://LOCALHOST:8443/", "always resolves to loopback"},
        {"https://api.localhost/", "always resolves to loopback"},
        {"https://example.com/" + std::string(2049 - 20, 'a'), "maximum is 2048"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("url \"" << c.url.substr(0, 120) << "\"") {
            auto const result = revdesk::parse_webhook_url(c.url, false, policy);
            BOOST_TEST(accepted(result) == nullptr);
            std::string const message = problem_of(result);
            BOOST_TEST_CONTEXT("message: " << message) {
                BOOST_TEST(message.find(c.message_part) != std::string::npos);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_other_scheme_names_allowed_ones) {
    revdesk::address_policy const policy;
    auto https_only = problem_of(revdesk::parse_webhook_url("ftp://example.com/", false, policy));
    BOOST_TEST(https_only.ends_with("is not supported; use https"), https_only);
    auto both = problem_of(revdesk::parse_webhook_url("ftp://example.com/", true, policy));
    BOOST_TEST(both.ends_with("is not supported; use https or http"), both);
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_never_repeats_userinfo) {
    revdesk::address_policy const policy;
    auto const result =
        revdesk::parse_webhook_url("https://admin:hunter2@example.com/", false, policy);
    std::string const message = problem_of(result);
    BOOST_TEST(!message.empty());
    BOOST_TEST(message.find("hunter2") == std::string::npos);
    BOOST_TEST(message.find("admin") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_accepts_https_name) {
    revdesk::address_policy const policy;
    auto const result =
        revdesk::parse_webhook_url("https://example.com/hooks/revdesk?x=1", false, policy);
    auto const* target = accepted(result);
    BOOST_REQUIRE_MESSAGE(target != nullptr, problem_of(result));
    BOOST_TEST(target->scheme == "https");
    BOOST_TEST(target->host == "example.com");
    BOOST_TEST(target->port == 443);
    BOOST_TEST(target->target == "/hooks/revdesk?x=1");
    BOOST_TEST(!target->host_is_ip);
    BOOST_TEST(target->origin() == "https://example.com:443");
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_accepts_allowed_loopback) {
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("127.0.0.1/32"));
    auto const result = revdesk::parse_webhook_url("https://127.0.0.1:8443/x", false, policy);
    auto const* target = accepted(result);
    BOOST_REQUIRE_MESSAGE(target != nullptr, problem_of(result));
    BOOST_TEST(target->host == "127.0.0.1");
    BOOST_TEST(target->port == 8443);
    BOOST_TEST(target->target == "/x");
    BOOST_TEST(target->host_is_ip);
    BOOST_TEST(target->origin() == "https://127.0.0.1:8443");

    auto const mapped = revdesk::parse_webhook_url("https://[::ffff:127.0.0.1]/", false, policy);
    BOOST_TEST(accepted(mapped) != nullptr, problem_of(mapped));
    auto const other = revdesk::parse_webhook_url("https://127.0.0.2/", false, policy);
    BOOST_TEST(accepted(other) == nullptr);
    auto const name = revdesk::parse_webhook_url("https://localhost:8443/", false, policy);
    BOOST_TEST(accepted(name) != nullptr, problem_of(name));
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_normalizes_parts) {
    revdesk::address_policy const policy;
    struct normal_case {
        std::string_view url;
        bool allow_http;
        revdesk::webhook_target expected;
    };
    normal_case const cases[] = {
        {"HTTPS://Example.COM", false, {"https", "example.com", 443, "/", false}},
        {"https://example.com?x", false, {"https", "example.com", 443, "/?x", false}},
        {"http://example.com", true, {"http", "example.com", 80, "/", false}},
        {"https://example.com:0443/a%20b?q=%2F",
         false,
         {"https", "example.com", 443, "/a%20b?q=%2F", false}},
        {"https://example.com:65535/", false, {"https", "example.com", 65535, "/", false}},
        {"https://example.com:1/", false, {"https", "example.com", 1, "/", false}},
        {"https://[2606:4700:4700:0::1111]:8443/h",
         false,
         {"https", "2606:4700:4700::1111", 8443, "/h", true}},
        {"https://8.8.8.8/", false, {"https", "8.8.8.8", 443, "/", true}},
        {"https://xn--bcher-kva.example/",
         false,
         {"https", "xn--bcher-kva.example", 443, "/", false}},
        {"https://a-b.c0.example/", false, {"https", "a-b.c0.example", 443, "/", false}},
        {"https://intranet/", false, {"https", "intranet", 443, "/", false}},
        {"https://0x7f.example/", false, {"https", "0x7f.example", 443, "/", false}},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("url \"" << c.url << "\"") {
            auto const result = revdesk::parse_webhook_url(c.url, c.allow_http, policy);
            auto const* target = accepted(result);
            BOOST_REQUIRE_MESSAGE(target != nullptr, problem_of(result));
            BOOST_TEST(target->scheme == c.expected.scheme);
            BOOST_TEST(target->host == c.expected.host);
            BOOST_TEST(target->port == c.expected.port);
            BOOST_TEST(target->target == c.expected.target);
            BOOST_TEST(target->host_is_ip == c.expected.host_is_ip);
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_origin_brackets_ipv6) {
    revdesk::address_policy const policy;
    auto const result =
        revdesk::parse_webhook_url("https://[2606:4700:4700::1111]/", false, policy);
    auto const* target = accepted(result);
    BOOST_REQUIRE_MESSAGE(target != nullptr, problem_of(result));
    BOOST_TEST(target->origin() == "https://[2606:4700:4700::1111]:443");
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_length_limit_is_inclusive) {
    revdesk::address_policy const policy;
    std::string const prefix = "https://example.com/";
    std::string const at_limit = prefix + std::string(2048 - prefix.size(), 'a');
    BOOST_REQUIRE(at_limit.size() == 2048u);
    BOOST_TEST(accepted(revdesk::parse_webhook_url(at_limit, false, policy)) != nullptr);
    BOOST_TEST(accepted(revdesk::parse_webhook_url(at_limit + "a", false, policy)) == nullptr);
}

BOOST_AUTO_TEST_CASE(parse_webhook_url_checks_max_name_length) {
    revdesk::address_policy const policy;
    // Three labels of 63 and one of 61, joined by dots, make exactly 253 characters.
    std::string const labels_253 = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                   std::string(63, 'c') + "." + std::string(61, 'd');
    BOOST_REQUIRE(labels_253.size() == 253u);
    BOOST_TEST(accepted(revdesk::parse_webhook_url("https://" + labels_253 + "/", false, policy)) !=
               nullptr);
    BOOST_TEST(accepted(revdesk::parse_webhook_url("https://" + labels_253 + "d/", false,
                                                   policy)) == nullptr);
}
