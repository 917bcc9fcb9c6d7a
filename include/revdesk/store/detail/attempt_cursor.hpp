// The position of an attempt in the newest-first order of store::list_attempts_page, and the
// opaque cursor text that carries it between pages.
#pragma once

#include <revdesk/store/records.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace revdesk::detail {

/// The place of an attempt in the listing order: `started_at`, then `sequence`. The sequence is
/// the store's insertion counter, which never decreases and is never reused.
struct attempt_position {
    unix_ms started_at = 0;
    std::int64_t sequence = 0;
};

/// Returns the id that a store generates for the attempt stored as `sequence`: `att_` followed
/// by 16 lowercase hex digits. The digits keep the ids of one store in insertion order.
inline std::string generated_attempt_id(std::int64_t sequence) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string id = "att_0000000000000000";
    auto value = static_cast<std::uint64_t>(sequence);
    for (std::size_t i = id.size(); i > 4; --i) {
        id[i - 1] = digits[value & 0xf];
        value >>= 4;
    }
    return id;
}

/// Returns whether `id` has the form of generated_attempt_id. Stores reject such ids from callers,
/// so that a generated id never collides with one that a caller chose.
inline bool is_generated_attempt_id(std::string_view id) noexcept {
    return id.size() == 20 && id.starts_with("att_") &&
           id.find_first_not_of("0123456789abcdef", 4) == std::string_view::npos;
}

inline constexpr char base64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Returns the cursor of `position`: the unpadded base64url (RFC 4648 section 5) of
/// "STARTED_AT.SEQUENCE" in decimal. Callers treat it as opaque.
inline std::string encode_attempt_cursor(attempt_position position) {
    std::string plain =
        std::to_string(position.started_at) + "." + std::to_string(position.sequence);
    std::string encoded;
    std::uint32_t bits = 0;
    int bit_count = 0;
    for (unsigned char c : plain) {
        bits = (bits << 8) | c;
        bit_count += 8;
        while (bit_count >= 6) {
            bit_count -= 6;
            encoded.push_back(base64url_alphabet[(bits >> bit_count) & 0x3f]);
        }
    }
    if (bit_count > 0) {
        encoded.push_back(base64url_alphabet[(bits << (6 - bit_count)) & 0x3f]);
    }
    return encoded;
}

/// Returns the message of an invalid cursor, with a long cursor shortened to its first 64
/// characters.
inline std::string invalid_cursor_message(std::string_view cursor) {
    constexpr std::size_t max_shown = 64;
    std::string quoted(cursor.substr(0, max_shown));
    if (cursor.size() > max_shown) {
        quoted += "...";
    }
    return "invalid attempt cursor '" + quoted +
           "': pass the next_cursor of an earlier page unchanged";
}

/// Returns the position in `cursor`. Throws std::invalid_argument naming the cursor when it is
/// not the output of encode_attempt_cursor. Examples are a character outside the base64url
/// alphabet, padding, a length or trailing bits that no encoding produces, and text that is not
/// two decimal integers with a non-negative sequence.
inline attempt_position decode_attempt_cursor(std::string_view cursor) {
    // Two 20-character integers and a dot take 41 bytes, which is 55 base64 characters.
    constexpr std::size_t max_length = 56;
    if (cursor.empty() || cursor.size() > max_length || cursor.size() % 4 == 1) {
        throw std::invalid_argument(invalid_cursor_message(cursor));
    }

    std::string plain;
    std::uint32_t bits = 0;
    int bit_count = 0;
    for (char c : cursor) {
        std::string_view alphabet(base64url_alphabet, 64);
        auto value = alphabet.find(c);
        if (value == std::string_view::npos) {
            throw std::invalid_argument(invalid_cursor_message(cursor));
        }
        bits = (bits << 6) | static_cast<std::uint32_t>(value);
        bit_count += 6;
        if (bit_count >= 8) {
            bit_count -= 8;
            plain.push_back(static_cast<char>((bits >> bit_count) & 0xff));
        }
    }
    // The encoder pads the last character with zero bits, so other values are not its output.
    if ((bits & ((1u << bit_count) - 1)) != 0) {
        throw std::invalid_argument(invalid_cursor_message(cursor));
    }

    auto dot = plain.find('.');
    if (dot == std::string::npos) {
        throw std::invalid_argument(invalid_cursor_message(cursor));
    }
    attempt_position position;
    auto parse = [&](std::string_view text, std::int64_t& out) {
        auto const* end = text.data() + text.size();
        auto [stop, error] = std::from_chars(text.data(), end, out);
        return !text.empty() && error == std::errc{} && stop == end;
    };
    if (!parse(std::string_view(plain).substr(0, dot), position.started_at) ||
        !parse(std::string_view(plain).substr(dot + 1), position.sequence) ||
        position.sequence < 0) {
        throw std::invalid_argument(invalid_cursor_message(cursor));
    }
    // A re-encoding that differs (such as "+1", "01" or "-0") was not produced by this store.
    if (encode_attempt_cursor(position) != cursor) {
        throw std::invalid_argument(invalid_cursor_message(cursor));
    }
    return position;
}

} // namespace revdesk::detail
