// Character classes of the HTTP/1.1 grammar (RFC 9110, RFC 9112, RFC 3986) as lookup tables.
#pragma once

#include <array>
#include <cstdint>
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
    std::size_t i = 0;
    while (i < s.size() && (char_classes[static_cast<unsigned char>(s[i])] & bit)) {
        ++i;
    }
    return i;
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
