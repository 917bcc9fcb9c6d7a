// Standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /) for signing secrets and
// signatures.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk::detail {

inline constexpr std::string_view base64_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` as standard base64 with `=` padding.
inline std::string base64_encode(std::span<unsigned char const> bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        unsigned const group = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
        out += base64_alphabet[(group >> 18) & 0x3f];
        out += base64_alphabet[(group >> 12) & 0x3f];
        out += base64_alphabet[(group >> 6) & 0x3f];
        out += base64_alphabet[group & 0x3f];
    }
    std::size_t const rest = bytes.size() - i;
    if (rest == 1) {
        unsigned const group = bytes[i] << 16;
        out += base64_alphabet[(group >> 18) & 0x3f];
        out += base64_alphabet[(group >> 12) & 0x3f];
        out += "==";
    } else if (rest == 2) {
        unsigned const group = (bytes[i] << 16) | (bytes[i + 1] << 8);
        out += base64_alphabet[(group >> 18) & 0x3f];
        out += base64_alphabet[(group >> 12) & 0x3f];
        out += base64_alphabet[(group >> 6) & 0x3f];
        out += '=';
    }
    return out;
}

/// Returns the 6-bit value of a base64 character, or -1 for any other character.
constexpr int base64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/// Decodes standard base64. Padding is optional, but when present it must complete the last
/// group of four. Returns nothing for characters outside the alphabet (whitespace included), a
/// misplaced `=`, a length that no byte string encodes to, or unused low bits that are not
/// zero. The last rule leaves each byte string one accepted encoding, apart from the padding.
inline std::optional<std::vector<unsigned char>> base64_decode(std::string_view text) {
    if (text.size() % 4 == 0 && !text.empty()) {
        std::size_t padding = 0;
        if (text.back() == '=') {
            padding = text[text.size() - 2] == '=' ? 2 : 1;
        }
        text.remove_suffix(padding);
    }
    if (text.size() % 4 == 1) {
        return std::nullopt;
    }
    std::vector<unsigned char> out;
    out.reserve(text.size() / 4 * 3 + 2);
    unsigned buffer = 0;
    int bits = 0;
    for (char c : text) {
        int const value = base64_value(c);
        if (value < 0) {
            return std::nullopt;
        }
        buffer = (buffer << 6) | static_cast<unsigned>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<unsigned char>((buffer >> bits) & 0xff));
        }
    }
    // The 2 or 4 bits left over after the last full byte belong to no byte.
    if ((buffer & ((1u << bits) - 1)) != 0) {
        return std::nullopt;
    }
    return out;
}

} // namespace revdesk::detail
