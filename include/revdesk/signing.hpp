// Standard Webhooks signatures, version 1 (symmetric): HMAC-SHA256 over
// `{msg_id}.{timestamp}.{body}`, sent as `v1,<base64>` in the `webhook-signature` header.
// Specification: https://www.standardwebhooks.com (spec/standard-webhooks.md, version 1.0.0).
//
// Secrets have the form `whsec_` followed by the standard base64 of the key bytes.
//
// Thread safety: every function may be called from any thread. None keeps state between calls
// except the HMAC algorithm object that OpenSSL fetches once and shares.
#pragma once

#include <revdesk/http/message.hpp>
#include <revdesk/ids.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

// OpenSSL's MAC context, declared here so that this header needs no OpenSSL header.
struct evp_mac_ctx_st;

namespace revdesk {

/// Header field names of a Standard Webhooks request, in the lowercase form the specification
/// writes them. Lookups ignore case.
inline constexpr std::string_view webhook_id_header = "webhook-id";
inline constexpr std::string_view webhook_timestamp_header = "webhook-timestamp";
inline constexpr std::string_view webhook_signature_header = "webhook-signature";

/// Decodes a signing secret into its key bytes. The `whsec_` prefix is removed when present,
/// and the rest must be standard base64 (padding optional, see detail::base64_decode).
/// Returns nothing when the text is not valid base64 or decodes to an empty key. Key length
/// is not checked otherwise, so keys from other producers are accepted. Standard Webhooks
/// specifies 24 to 64 bytes, and new_signing_secret makes 32.
std::optional<std::vector<unsigned char>> decode_secret(std::string_view secret);

/// Signs one webhook attempt and returns `v1,` followed by the base64 HMAC-SHA256 of
/// `msg_id.timestamp.body`, where `timestamp` is written in decimal (Unix seconds).
/// `body` must be the exact bytes sent. `msg_id` should contain no `.`, as the specification
/// requires, because the dot separates the signed fields.
/// Throws std::invalid_argument when `secret` is malformed (see decode_secret), and
/// std::runtime_error when OpenSSL fails to compute the MAC.
std::string sign(std::string_view secret, std::string_view msg_id, std::int64_t timestamp,
                 std::string_view body);

/// Builds the `webhook-signature` value: one `v1,...` signature per secret, in the order of
/// `secrets`, separated by single spaces. Several secrets let a receiver keep verifying while
/// a secret is rotated. Throws std::invalid_argument when `secrets` is empty or any secret is
/// malformed, and std::runtime_error like sign.
std::string signature_header(std::span<std::string const> secrets, std::string_view msg_id,
                             std::int64_t timestamp, std::string_view body);

/// A signing secret decoded and keyed once, for signing many messages with it. Each signature
/// starts from a copy of the HMAC state that already contains the key, which saves decoding the
/// secret, fetching the algorithm and keying HMAC for every message. Signatures equal those of
/// the free function `sign` with the same secret.
///
/// Thread safety: `sign` may be called from several threads at once.
class signing_key {
public:
    /// Throws std::invalid_argument when `secret` is malformed (see decode_secret), and
    /// std::runtime_error when OpenSSL fails to set up the MAC.
    explicit signing_key(std::string_view secret);

    /// Returns `v1,` followed by the base64 HMAC-SHA256 of `msg_id.timestamp.body`, like the
    /// free function `sign`. Throws std::runtime_error when OpenSSL fails to compute the MAC.
    std::string sign(std::string_view msg_id, std::int64_t timestamp, std::string_view body) const;

private:
    struct contexts;
    std::shared_ptr<contexts> contexts_;
};

/// Builds the `webhook-signature` value from prepared keys, like the overload that takes
/// secrets. Throws std::invalid_argument when `keys` is empty, and std::runtime_error like
/// signing_key::sign.
std::string signature_header(std::span<signing_key const* const> keys, std::string_view msg_id,
                             std::int64_t timestamp, std::string_view body);

/// Reasons why verify rejects a request. Zero is success and no enumerator uses it.
enum class verify_error {
    missing_id = 1,        ///< No `webhook-id` field, or an empty one.
    missing_timestamp,     ///< No `webhook-timestamp` field, or an empty one.
    missing_signature,     ///< No `webhook-signature` field, or an empty one.
    bad_timestamp,         ///< `webhook-timestamp` is not a non-negative decimal integer.
    timestamp_too_old,     ///< The timestamp is more than the tolerance before `now`.
    timestamp_too_new,     ///< The timestamp is more than the tolerance after `now`.
    no_matching_signature, ///< No `v1` signature in the header matches the request.
    bad_secret,            ///< The receiver's own secret is malformed.
};

/// The error category of verify_error, named "revdesk.webhook_signature".
std::error_category const& verify_category() noexcept;

std::error_code make_error_code(verify_error e) noexcept;

/// Checks a received webhook request against `secret`. Reads the `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` fields (names ignore case, and the first field of
/// each name counts). The signature field may list several space-separated signatures. Those
/// whose version is not `v1` are skipped, and the request passes when any `v1` signature equals
/// the expected one, compared in constant time with CRYPTO_memcmp.
/// The timestamp must lie within `tolerance` of `now`, in either direction, which limits
/// replays. Returns an empty error_code on success, else a verify_error. Checks run in the order
/// of the verify_error enumerators, except that bad_secret comes first. Throws
/// std::runtime_error only when OpenSSL fails to compute the MAC.
std::error_code verify(std::string_view secret, http::fields const& headers, std::string_view body,
                       std::chrono::system_clock::time_point now,
                       std::chrono::seconds tolerance = std::chrono::minutes(5));

} // namespace revdesk

template <>
struct std::is_error_code_enum<revdesk::verify_error> : std::true_type {};

#include <revdesk/impl/signing.ipp>
