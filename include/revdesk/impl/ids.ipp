// Inline definitions for revdesk/ids.hpp.
#pragma once

#include <revdesk/detail/base64.hpp>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace revdesk {

namespace detail {

inline constexpr std::string_view base32_lower_alphabet = "abcdefghijklmnopqrstuvwxyz234567";

/// Fills `out` from RAND_bytes, in chunks because RAND_bytes takes an int length.
inline void fill_random(std::span<unsigned char> out) {
    while (!out.empty()) {
        std::size_t const chunk = std::min<std::size_t>(out.size(), INT_MAX);
        if (RAND_bytes(out.data(), static_cast<int>(chunk)) != 1) {
            throw std::runtime_error("RAND_bytes failed: OpenSSL could not produce random bytes");
        }
        out = out.subspan(chunk);
    }
}

/// Bytes of CSPRNG output that one thread draws at a time for identifiers.
inline constexpr std::size_t id_random_batch = 1024;

/// Counts forks, so that a child process does not hand out the bytes its parent buffered.
inline std::atomic<unsigned> fork_count{0};

/// Random bytes for identifiers, drawn from RAND_bytes a batch at a time. One call of RAND_bytes
/// cost about 7,000 instructions with OpenSSL 3.0 (callgrind), a tenth of a whole delivery's, and
/// OpenSSL's fork check inside it makes a system call (getpid).
struct id_random_buffer {
    std::array<unsigned char, id_random_batch> bytes{};
    std::size_t used = id_random_batch;
    unsigned fork_seen = 0;
};

/// Fills `out` with random bytes for an identifier from the calling thread's buffer. A forked
/// child refills before its first identifier, so parent and child never share bytes. Only
/// identifiers use it: secrets and keys come straight from RAND_bytes and are never buffered.
inline void fill_id_random(std::span<unsigned char> out) {
    static bool const fork_watched = [] {
        ::pthread_atfork(nullptr, nullptr, [] { fork_count.fetch_add(1); });
        return true;
    }();
    (void)fork_watched;
    thread_local id_random_buffer buffer;
    auto const forks = fork_count.load(std::memory_order_relaxed);
    if (buffer.fork_seen != forks) {
        buffer.used = id_random_batch;
        buffer.fork_seen = forks;
    }
    if (id_random_batch - buffer.used < out.size()) {
        fill_random(buffer.bytes);
        buffer.used = 0;
    }
    std::copy_n(buffer.bytes.begin() + static_cast<std::ptrdiff_t>(buffer.used), out.size(),
                out.begin());
    buffer.used += out.size();
}

/// Encodes `bytes` as lowercase base32 without padding. The final character's unused low bits
/// are zero.
inline std::string base32_lower_encode(std::span<unsigned char const> bytes) {
    std::string out;
    out.reserve((bytes.size() * 8 + 4) / 5);
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char byte : bytes) {
        buffer = ((buffer << 8) | byte) & 0xfff;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out += base32_lower_alphabet[(buffer >> bits) & 0x1f];
        }
    }
    if (bits > 0) {
        out += base32_lower_alphabet[(buffer << (5 - bits)) & 0x1f];
    }
    return out;
}

inline int base32_lower_value(char c) noexcept {
    if (c >= 'a' && c <= 'z') {
        return c - 'a';
    }
    if (c >= '2' && c <= '7') {
        return c - '2' + 26;
    }
    return -1;
}

inline std::string new_prefixed_id(std::string_view prefix) {
    std::array<unsigned char, id_random_bytes> bytes{};
    fill_id_random(bytes);
    std::string id(prefix);
    id += base32_lower_encode(bytes);
    return id;
}

/// The base32 alphabet sorted by ASCII code, so that text order is numeric order.
inline constexpr std::string_view base32_sorted_alphabet = "234567abcdefghijklmnopqrstuvwxyz";

/// Number of leading characters of a token that carry bits of the 48-bit timestamp: 9 characters
/// carry 45 bits, and the 10th carries the last 3 bits and 2 random bits.
inline constexpr std::size_t id_time_characters = (id_time_bytes * 8 + 4) / 5;

/// Returns `prefix` followed by 26 base32 characters of 16 bytes: the Unix time in milliseconds
/// as 48 bits, big-endian, then 80 random bits. Times before 1970 count as 0, and the 48 bits
/// wrap in the year 10889.
///
/// The RFC 4648 alphabet puts the digits 2-7 after the letters, but ASCII puts them before, so
/// plain base32 text does not sort like its bits. The characters that carry the timestamp
/// therefore encode each 5-bit group g as the g-th character in ASCII order. That is a
/// permutation of the same 32 characters, so the token still satisfies is_valid_id.
inline std::string new_time_ordered_id(std::string_view prefix) {
    std::array<unsigned char, id_random_bytes> bytes{};
    auto const now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto const ms = static_cast<std::uint64_t>(std::max<std::int64_t>(now, 0));
    for (std::size_t i = 0; i < id_time_bytes; ++i) {
        bytes[i] = static_cast<unsigned char>(ms >> (8 * (id_time_bytes - 1 - i)));
    }
    fill_id_random(std::span(bytes).subspan(id_time_bytes));

    std::string token = base32_lower_encode(bytes);
    for (std::size_t i = 0; i < id_time_characters; ++i) {
        auto group = static_cast<std::size_t>(base32_lower_value(token[i]));
        token[i] = base32_sorted_alphabet[group];
    }
    std::string id(prefix);
    id += token;
    return id;
}

/// Returns the Unix time in milliseconds that new_time_ordered_id wrote into `id`. `id` must
/// satisfy is_valid_id for `prefix`.
inline std::int64_t id_time_ms(std::string_view id, std::string_view prefix) noexcept {
    std::uint64_t bits = 0;
    for (char c : id.substr(prefix.size(), id_time_characters)) {
        bits = (bits << 5) | base32_sorted_alphabet.find(c);
    }
    // The 10th character's 2 low bits are random.
    return static_cast<std::int64_t>(bits >> (id_time_characters * 5 - id_time_bytes * 8));
}

} // namespace detail

inline std::string random_token(std::size_t bytes) {
    std::vector<unsigned char> random(bytes);
    detail::fill_random(random);
    return detail::base32_lower_encode(random);
}

inline std::string new_subscription_id() {
    return detail::new_prefixed_id(subscription_id_prefix);
}

inline std::string new_event_id() {
    return detail::new_time_ordered_id(event_id_prefix);
}

inline std::string new_message_id() {
    return detail::new_time_ordered_id(message_id_prefix);
}

inline std::string new_signing_secret() {
    std::array<unsigned char, signing_secret_bytes> key{};
    detail::fill_random(key);
    std::string secret(signing_secret_prefix);
    secret += detail::base64_encode(key);
    // The key is a secret, so it does not stay behind in freed stack memory.
    OPENSSL_cleanse(key.data(), key.size());
    return secret;
}

inline bool is_valid_id(std::string_view id, std::string_view prefix) noexcept {
    if (!id.starts_with(prefix)) {
        return false;
    }
    std::string_view const token = id.substr(prefix.size());
    if (token.size() != id_token_length) {
        return false;
    }
    for (char c : token) {
        if (detail::base32_lower_value(c) < 0) {
            return false;
        }
    }
    // 26 characters hold 130 bits, so the last character's 2 low bits are always zero.
    constexpr unsigned unused_bits = id_token_length * 5 - id_random_bytes * 8;
    constexpr unsigned unused_mask = (1u << unused_bits) - 1;
    return (static_cast<unsigned>(detail::base32_lower_value(token.back())) & unused_mask) == 0;
}

} // namespace revdesk
