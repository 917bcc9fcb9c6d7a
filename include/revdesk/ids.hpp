// Identifiers and signing secrets drawn from OpenSSL's CSPRNG.
//
// Identifiers are a type prefix followed by 128 bits in lowercase base32 (RFC 4648 section 6
// alphabet `a-z2-7`, no padding), which is 26 characters. They are URL-safe and need no escaping
// in JSON. Subscription ids are 128 random bits. Event and message ids are time-ordered (see
// new_event_id).
//
// Identifiers take their random bits from a batch of RAND_bytes output kept per thread. A forked
// child discards its copy of the batch. Secrets and tokens come from RAND_bytes directly.
//
// Thread safety: every function may be called from any thread, because RAND_bytes is
// thread-safe in OpenSSL 3 and each thread has its own batch.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace revdesk {

/// Prefixes of the identifier kinds, including the underscore.
inline constexpr std::string_view subscription_id_prefix = "whk_";
inline constexpr std::string_view event_id_prefix = "evt_";
inline constexpr std::string_view message_id_prefix = "msg_";
inline constexpr std::string_view signing_secret_prefix = "whsec_";

/// Number of bytes behind every identifier (128 bits).
inline constexpr std::size_t id_random_bytes = 16;

/// Number of leading bytes of a time-ordered identifier that hold its creation time (48 bits of
/// Unix time in milliseconds, big-endian). The other 10 bytes (80 bits) are random.
inline constexpr std::size_t id_time_bytes = 6;

/// Number of base32 characters that encode `id_random_bytes` bytes.
inline constexpr std::size_t id_token_length = (id_random_bytes * 8 + 4) / 5;

/// Number of random bytes in a new signing secret. Standard Webhooks specifies 24 to 64.
inline constexpr std::size_t signing_secret_bytes = 32;

/// Returns `bytes` random bytes from RAND_bytes encoded as lowercase unpadded base32, which is
/// ceil(8 * bytes / 5) characters. Throws std::runtime_error when OpenSSL cannot produce random
/// bytes (for example, when its generator cannot be seeded).
std::string random_token(std::size_t bytes);

/// Returns a new subscription id: `whk_` followed by 128 random bits. Throws like random_token.
std::string new_subscription_id();

/// Returns a new event id: `evt_` followed by a time-ordered token, whose first 48 bits are the
/// creation time in Unix milliseconds (std::chrono::system_clock) and whose other 80 bits are
/// random, like a ULID. The characters that carry the time use the base32 characters in ASCII
/// order, so ids made in different milliseconds sort as text (byte by byte) in creation order.
/// A database then inserts them at the right edge of its primary-key index instead of at random
/// pages. Ids made within one millisecond are in random order, and ids made after the system
/// clock steps back sort before older ones.
///
/// Anyone who has the id can read when it was made, to the millisecond. Receivers of a first
/// attempt get nearly the same time in its `webhook-timestamp` header (in seconds), but a
/// retried delivery's id still shows when the event came in. Throws like random_token.
std::string new_event_id();

/// Returns a new message id for the `webhook-id` header: `msg_` followed by a time-ordered token,
/// made like new_event_id and revealing its creation time the same way. Receivers use the id to
/// drop duplicate deliveries, so it must be unique: two ids collide only when they are made in
/// the same millisecond and draw the same 80 random bits. For n ids in one millisecond that has a
/// probability of about n^2 / 2^81: at a million ids per second, about 4e-19 per millisecond and
/// 1e-8 per year. Throws like random_token.
std::string new_message_id();

/// Returns a new Standard Webhooks signing secret: `whsec_` followed by the standard base64
/// (with padding) of `signing_secret_bytes` random bytes. Throws like random_token.
std::string new_signing_secret();

/// Returns whether `id` is exactly `prefix` followed by `id_token_length` characters of the
/// lowercase base32 alphabet whose last character carries no bits beyond the 128 (the form
/// that the new_*_id functions produce). `prefix` includes the underscore, such as `"whk_"`.
/// Meant for ids taken from request paths before they reach a store.
bool is_valid_id(std::string_view id, std::string_view prefix) noexcept;

} // namespace revdesk

#include <revdesk/impl/ids.ipp>
