// Random identifiers and signing secrets drawn from OpenSSL's CSPRNG.
//
// Identifiers are a type prefix followed by 128 random bits in lowercase base32 (RFC 4648
// section 6 alphabet `a-z2-7`, no padding), which is 26 characters. They are URL-safe and need
// no escaping in JSON.
//
// Thread safety: every function may be called from any thread, because RAND_bytes is
// thread-safe in OpenSSL 3.
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

/// Number of random bytes behind every identifier (128 bits).
inline constexpr std::size_t id_random_bytes = 16;

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

/// Returns a new event id: `evt_` followed by 128 random bits. Throws like random_token.
std::string new_event_id();

/// Returns a new message id for the `webhook-id` header: `msg_` followed by 128 random bits.
/// Throws like random_token.
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
