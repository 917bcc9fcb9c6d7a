// Character classes of the HTTP/1.1 grammar (RFC 9110, RFC 9112, RFC 3986) as lookup tables.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace revdesk::http::detail {

/// Bits of `char_classes`; one byte can be in several classes.
enum char_class : std::uint8_t {
    cc_tchar = 1,       ///< tchar of RFC 9110 section 5.6.2: the characters of a token.
    cc_field_value = 2, ///< field-vchar, SP or HTAB: VCHAR, obs-text (0x80-0xFF), SP, HTAB.
    cc_target = 4,      ///< RFC 3986 unreserved, sub-delims, ':', '@', '/', '?' and '%'.
    cc_hex = 8,         ///< HEXDIG, either case.
    cc_qdtext = 16,     ///< qdtext of RFC 9110 section 5.6.4: field-vchar except '"' and '\'.
};

inline constexpr std::array<std::uint8_t, 256> char_classes = [] {
    std::array<std::uint8_t, 256> table{};
    auto add = [&](std::string_view chars, std::uint8_t bit) {
        for (char c : chars) {
            table[static_cast<unsigned char>(c)] |= bit;
        }
    };
    constexpr std::string_view alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    constexpr std::string_view digit = "0123456789";

    add(alpha, cc_tchar);
    add(digit, cc_tchar);
    add("!#$%&'*+-.^_`|~", cc_tchar);

    for (int c = 0x21; c <= 0x7e; ++c) {
        table[c] |= cc_field_value | cc_qdtext;
    }
    for (int c = 0x80; c <= 0xff; ++c) {
        table[c] |= cc_field_value | cc_qdtext;
    }
    table[' '] |= cc_field_value | cc_qdtext;
    table['\t'] |= cc_field_value | cc_qdtext;
    table['"'] &= ~cc_qdtext;
    table['\\'] &= ~cc_qdtext;

    add(alpha, cc_target);
    add(digit, cc_target);
    add("-._~!$&'()*+,;=:@/?%", cc_target);

    add(digit, cc_hex);
    add("abcdefABCDEF", cc_hex);
    return table;
}();

inline bool is_tchar(char c) noexcept {
    return char_classes[static_cast<unsigned char>(c)] & cc_tchar;
}

inline bool is_field_value_char(char c) noexcept {
    return char_classes[static_cast<unsigned char>(c)] & cc_field_value;
}

inline bool is_target_char(char c) noexcept {
    return char_classes[static_cast<unsigned char>(c)] & cc_target;
}

inline bool is_hex(char c) noexcept {
    return char_classes[static_cast<unsigned char>(c)] & cc_hex;
}

inline bool is_qdtext(char c) noexcept {
    return char_classes[static_cast<unsigned char>(c)] & cc_qdtext;
}

inline bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

inline bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

inline unsigned hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return static_cast<unsigned>(c - '0');
    }
    return static_cast<unsigned>((c | 0x20) - 'a' + 10);
}

/// Returns the length of the longest prefix of `s` whose characters all have class `bit`.
inline std::size_t span_of(std::string_view s, std::uint8_t bit) noexcept {
    auto const* first = reinterpret_cast<unsigned char const*>(s.data());
    auto const* last = first + s.size();
    auto const* p = first;
    while (p != last && (char_classes[*p] & bit)) {
        ++p;
    }
    return static_cast<std::size_t>(p - first);
}

/// Returns whether the token `name` equals `lower`, ASCII case-insensitively. `lower` must be
/// lower-case letters, digits and '-'; `name` must hold tchar only, since the comparison sets
/// bit 0x20 of every byte, which maps no other tchar onto a letter, digit or '-'.
inline bool token_equals_lower(std::string_view name, std::string_view lower) noexcept {
    if (name.size() != lower.size()) {
        return false;
    }
    std::size_t i = 0;
    for (; i + 8 <= name.size(); i += 8) {
        std::uint64_t a = 0;
        std::uint64_t b = 0;
        std::memcpy(&a, name.data() + i, 8);
        std::memcpy(&b, lower.data() + i, 8);
        if ((a | 0x2020202020202020ULL) != b) {
            return false;
        }
    }
    for (; i < name.size(); ++i) {
        if ((name[i] | 0x20) != lower[i]) {
            return false;
        }
    }
    return true;
}

/// Returns the index of the first byte of `s` that is not a field-value character (a CTL other
/// than HTAB: 0x00-0x08, 0x0A-0x1F, 0x7F), or `s.size()` when there is none. Tests eight bytes
/// at a time, since field values are the bulk of a header section.
inline std::size_t find_invalid_field_value_char(std::string_view s) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    std::size_t i = 0;
    while (i < s.size()) {
        if (i + 8 <= s.size()) {
            std::uint64_t x = 0;
            std::memcpy(&x, s.data() + i, 8);
            // Some byte is below 0x20 (bytes from 0x80 up never match), or equals 0x7F.
            std::uint64_t below_space = (x - 0x20 * ones) & ~x & highs;
            std::uint64_t y = x ^ (0x7f * ones);
            std::uint64_t del = (y - ones) & ~y & highs;
            if ((below_space | del) == 0) {
                i += 8;
                continue;
            }
        }
        // A block with an HTAB or a CTL, or the tail: one byte at a time.
        std::size_t end = std::min(s.size(), i + 8);
        for (; i < end; ++i) {
            if (!is_field_value_char(s[i])) {
                return i;
            }
        }
    }
    return s.size();
}

/// Returns `s` without leading and trailing SP and HTAB.
inline std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

} // namespace revdesk::http::detail
