// Inline definitions for revdesk/signing.hpp.
#pragma once

#include <revdesk/detail/base64.hpp>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>

namespace revdesk {

namespace detail {

inline constexpr std::size_t hmac_sha256_size = 32;

struct mac_context_deleter {
    void operator()(EVP_MAC_CTX* context) const noexcept { EVP_MAC_CTX_free(context); }
};

/// Returns OpenSSL's HMAC implementation, fetched on first use and kept for the life of the
/// process (an EVP_MAC may be shared by threads).
inline EVP_MAC* hmac_algorithm() {
    static EVP_MAC* const algorithm = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    if (algorithm == nullptr) {
        throw std::runtime_error("EVP_MAC_fetch(HMAC) failed: OpenSSL has no HMAC provider");
    }
    return algorithm;
}

/// Returns a new HMAC-SHA256 context keyed with `key`.
inline std::unique_ptr<EVP_MAC_CTX, mac_context_deleter>
keyed_hmac_sha256(std::span<unsigned char const> key) {
    std::unique_ptr<EVP_MAC_CTX, mac_context_deleter> context(EVP_MAC_CTX_new(hmac_algorithm()));
    if (!context) {
        throw std::runtime_error("EVP_MAC_CTX_new failed");
    }
    char digest_name[] = "SHA256";
    OSSL_PARAM const params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(context.get(), key.data(), key.size(), params) != 1) {
        throw std::runtime_error("EVP_MAC_init(HMAC-SHA256) failed");
    }
    return context;
}

/// Feeds the concatenation of `parts` to a keyed `context`, without copying them into one
/// buffer, and returns the MAC.
inline std::array<unsigned char, hmac_sha256_size>
finish_hmac_sha256(EVP_MAC_CTX* context, std::initializer_list<std::string_view> parts) {
    for (std::string_view part : parts) {
        auto const* data = reinterpret_cast<unsigned char const*>(part.data());
        if (EVP_MAC_update(context, data, part.size()) != 1) {
            throw std::runtime_error("EVP_MAC_update(HMAC-SHA256) failed");
        }
    }
    std::array<unsigned char, hmac_sha256_size> mac{};
    std::size_t length = 0;
    if (EVP_MAC_final(context, mac.data(), &length, mac.size()) != 1 || length != mac.size()) {
        throw std::runtime_error("EVP_MAC_final(HMAC-SHA256) failed");
    }
    return mac;
}

/// Computes HMAC-SHA256 over the concatenation of `parts`.
inline std::array<unsigned char, hmac_sha256_size>
hmac_sha256(std::span<unsigned char const> key, std::initializer_list<std::string_view> parts) {
    return finish_hmac_sha256(keyed_hmac_sha256(key).get(), parts);
}

/// Returns the base64 signature (without `v1,`) for an already decoded key.
inline std::string signature_value(std::span<unsigned char const> key, std::string_view msg_id,
                                   std::int64_t timestamp, std::string_view body) {
    std::string const timestamp_text = std::to_string(timestamp);
    auto const mac = hmac_sha256(key, {msg_id, ".", timestamp_text, ".", body});
    return base64_encode(mac);
}

/// Owns decoded key bytes and wipes them when it goes out of scope.
class secret_key {
public:
    explicit secret_key(std::vector<unsigned char> bytes)
        : bytes_(std::move(bytes)) {}
    secret_key(secret_key const&) = delete;
    secret_key& operator=(secret_key const&) = delete;
    ~secret_key() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

    std::span<unsigned char const> bytes() const noexcept { return bytes_; }

private:
    std::vector<unsigned char> bytes_;
};

inline secret_key decode_secret_or_throw(std::string_view secret) {
    auto key = decode_secret(secret);
    if (!key) {
        // The secret itself never appears in the message, which may be logged.
        throw std::invalid_argument(
            "signing secret is malformed: expected whsec_ followed by standard base64 of a "
            "non-empty key; generate a new one with new_signing_secret()");
    }
    return secret_key(std::move(*key));
}

/// Parses a `webhook-timestamp` value: 1 to 19 decimal digits, nothing else.
inline std::optional<std::int64_t> parse_unix_seconds(std::string_view text) noexcept {
    if (text.empty() || text.size() > 19) {
        return std::nullopt;
    }
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
    }
    std::int64_t value = 0;
    auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

class verify_error_category final : public std::error_category {
public:
    char const* name() const noexcept override { return "revdesk.webhook_signature"; }

    std::string message(int value) const override {
        switch (static_cast<verify_error>(value)) {
        case verify_error::missing_id:
            return "webhook-id header is missing or empty";
        case verify_error::missing_timestamp:
            return "webhook-timestamp header is missing or empty";
        case verify_error::missing_signature:
            return "webhook-signature header is missing or empty";
        case verify_error::bad_timestamp:
            return "webhook-timestamp is not a decimal Unix time in seconds";
        case verify_error::timestamp_too_old:
            return "webhook-timestamp is older than the allowed tolerance; check the sender's "
                   "clock or reject the replayed request";
        case verify_error::timestamp_too_new:
            return "webhook-timestamp is further in the future than the allowed tolerance; "
                   "check the sender's clock";
        case verify_error::no_matching_signature:
            return "no v1 signature in webhook-signature matches the request; check the "
                   "signing secret and that the body is the exact bytes received";
        case verify_error::bad_secret:
            return "the receiver's signing secret is malformed: expected whsec_ followed by "
                   "standard base64";
        }
        return "unknown webhook signature error " + std::to_string(value);
    }
};

} // namespace detail

inline std::optional<std::vector<unsigned char>> decode_secret(std::string_view secret) {
    if (secret.starts_with(signing_secret_prefix)) {
        secret.remove_prefix(signing_secret_prefix.size());
    }
    auto key = detail::base64_decode(secret);
    if (!key || key->empty()) {
        return std::nullopt;
    }
    return key;
}

inline std::string sign(std::string_view secret, std::string_view msg_id, std::int64_t timestamp,
                        std::string_view body) {
    auto const key = detail::decode_secret_or_throw(secret);
    return "v1," + detail::signature_value(key.bytes(), msg_id, timestamp, body);
}

inline std::string signature_header(std::span<std::string const> secrets, std::string_view msg_id,
                                    std::int64_t timestamp, std::string_view body) {
    if (secrets.empty()) {
        throw std::invalid_argument(
            "signature_header needs at least one signing secret; pass the subscription's secret");
    }
    std::string header;
    for (auto const& secret : secrets) {
        if (!header.empty()) {
            header += ' ';
        }
        header += sign(secret, msg_id, timestamp, body);
    }
    return header;
}

/// The keyed HMAC state of a signing_key and its copies, with one spare working context that the
/// next signature reuses. Duplicating the keyed context for every signature and freeing it
/// afterwards cost more instructions than the HMAC of a short message (callgrind).
struct signing_key::contexts {
    std::unique_ptr<EVP_MAC_CTX, detail::mac_context_deleter> keyed;
    std::atomic<EVP_MAC_CTX*> spare{nullptr};

    ~contexts() { EVP_MAC_CTX_free(spare.load()); }
};

inline signing_key::signing_key(std::string_view secret)
    : contexts_(std::make_shared<contexts>()) {
    auto const key = detail::decode_secret_or_throw(secret);
    contexts_->keyed = detail::keyed_hmac_sha256(key.bytes());
}

inline std::string signing_key::sign(std::string_view msg_id, std::int64_t timestamp,
                                     std::string_view body) const {
    // Threads that sign at once each get a context: one takes the spare, the others duplicate
    // the keyed one, and whichever finds the slot empty afterwards leaves its context there.
    std::unique_ptr<EVP_MAC_CTX, detail::mac_context_deleter> context(
        contexts_->spare.exchange(nullptr));
    // Without a key, EVP_MAC_init starts a new MAC with the key set before. A spare that fails
    // to restart is dropped for a fresh copy.
    if (context && EVP_MAC_init(context.get(), nullptr, 0, nullptr) != 1) {
        context.reset();
    }
    if (!context) {
        context.reset(EVP_MAC_CTX_dup(contexts_->keyed.get()));
        if (!context) {
            throw std::runtime_error("EVP_MAC_CTX_dup failed");
        }
    }
    std::array<char, 24> timestamp_text{};
    auto const written = std::to_chars(timestamp_text.data(),
                                       timestamp_text.data() + timestamp_text.size(), timestamp);
    auto const mac = detail::finish_hmac_sha256(
        context.get(), {msg_id, ".", {timestamp_text.data(), written.ptr}, ".", body});

    EVP_MAC_CTX* empty = nullptr;
    if (contexts_->spare.compare_exchange_strong(empty, context.get())) {
        context.release();
    }
    return "v1," + detail::base64_encode(mac);
}

inline std::string signature_header(std::span<signing_key const* const> keys,
                                    std::string_view msg_id, std::int64_t timestamp,
                                    std::string_view body) {
    if (keys.empty()) {
        throw std::invalid_argument(
            "signature_header needs at least one signing key; pass the subscription's secret");
    }
    std::string header;
    for (auto const* key : keys) {
        if (!header.empty()) {
            header += ' ';
        }
        header += key->sign(msg_id, timestamp, body);
    }
    return header;
}

inline std::error_category const& verify_category() noexcept {
    static detail::verify_error_category const category;
    return category;
}

inline std::error_code make_error_code(verify_error e) noexcept {
    return {static_cast<int>(e), verify_category()};
}

inline std::error_code verify(std::string_view secret, http::fields const& headers,
                              std::string_view body, std::chrono::system_clock::time_point now,
                              std::chrono::seconds tolerance) {
    auto decoded = decode_secret(secret);
    if (!decoded) {
        return verify_error::bad_secret;
    }
    detail::secret_key const key(std::move(*decoded));

    auto const msg_id = headers.find(webhook_id_header);
    if (!msg_id || msg_id->empty()) {
        return verify_error::missing_id;
    }
    auto const timestamp_text = headers.find(webhook_timestamp_header);
    if (!timestamp_text || timestamp_text->empty()) {
        return verify_error::missing_timestamp;
    }
    auto const signatures = headers.find(webhook_signature_header);
    if (!signatures || signatures->empty()) {
        return verify_error::missing_signature;
    }

    auto const timestamp = detail::parse_unix_seconds(*timestamp_text);
    if (!timestamp) {
        return verify_error::bad_timestamp;
    }
    std::int64_t const now_seconds =
        std::chrono::floor<std::chrono::seconds>(now.time_since_epoch()).count();
    // The differences are taken in uint64 only when positive. Since the timestamp is
    // non-negative, they fit there for any `now`. A negative tolerance counts as zero.
    auto const allowed = static_cast<std::uint64_t>(std::max<std::int64_t>(tolerance.count(), 0));
    auto const unsigned_now = static_cast<std::uint64_t>(now_seconds);
    auto const unsigned_timestamp = static_cast<std::uint64_t>(*timestamp);
    if (now_seconds > *timestamp && unsigned_now - unsigned_timestamp > allowed) {
        return verify_error::timestamp_too_old;
    }
    if (*timestamp > now_seconds && unsigned_timestamp - unsigned_now > allowed) {
        return verify_error::timestamp_too_new;
    }

    std::string const expected = detail::signature_value(key.bytes(), *msg_id, *timestamp, body);
    std::string_view rest = *signatures;
    bool matched = false;
    while (!rest.empty()) {
        std::size_t const start = rest.find_first_not_of(" \t");
        if (start == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(start);
        std::size_t const end = std::min(rest.find_first_of(" \t"), rest.size());
        std::string_view const item = rest.substr(0, end);
        rest.remove_prefix(end);

        std::size_t const comma = item.find(',');
        if (comma == std::string_view::npos || item.substr(0, comma) != "v1") {
            continue;
        }
        std::string_view const candidate = item.substr(comma + 1);
        // The length of a signature is public, so only equal-length values need the
        // constant-time comparison.
        if (candidate.size() == expected.size() &&
            CRYPTO_memcmp(candidate.data(), expected.data(), expected.size()) == 0) {
            matched = true;
        }
    }
    return matched ? std::error_code() : make_error_code(verify_error::no_matching_signature);
}

} // namespace revdesk
