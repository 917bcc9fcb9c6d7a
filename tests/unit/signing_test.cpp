#include <revdesk/signing.hpp>

#define BOOST_TEST_MODULE signing
#include <boost/test/unit_test.hpp>

#include <revdesk/detail/base64.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

// Test vector published with the Standard Webhooks reference libraries.
constexpr std::string_view vector_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view vector_msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t vector_timestamp = 1614265330;
constexpr std::string_view vector_body = R"({"test": 2432232314})";
constexpr std::string_view vector_signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

constexpr std::string_view other_secret = "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMQ==";

std::chrono::system_clock::time_point at(std::int64_t unix_seconds) {
    return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

revdesk::http::fields vector_headers(std::string_view signature = vector_signature) {
    revdesk::http::fields headers;
    headers.add("webhook-id", std::string(vector_msg_id));
    headers.add("webhook-timestamp", std::to_string(vector_timestamp));
    headers.add("webhook-signature", std::string(signature));
    return headers;
}

std::span<unsigned char const> as_bytes(std::string_view text) {
    return {reinterpret_cast<unsigned char const*>(text.data()), text.size()};
}

std::string to_hex(std::span<unsigned char const> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : bytes) {
        out += digits[b >> 4];
        out += digits[b & 0xf];
    }
    return out;
}

std::vector<unsigned char> from_hex(std::string_view hex) {
    std::vector<unsigned char> out;
    auto value = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out.push_back(static_cast<unsigned char>(value(hex[i]) * 16 + value(hex[i + 1])));
    }
    return out;
}

/// Runs the openssl command-line tool on `content` and returns its HMAC-SHA256 in hex. The
/// bytes travel as octal escapes of printf, so no byte needs shell quoting and no file is
/// written.
std::string openssl_hmac_sha256_hex(std::span<unsigned char const> key, std::string_view content) {
    std::string command = "printf '";
    for (unsigned char c : content) {
        char escape[8];
        std::snprintf(escape, sizeof escape, "\\%03o", c);
        command += escape;
    }
    command += "' | openssl dgst -sha256 -mac HMAC -macopt hexkey:" + to_hex(key) + " -r";
    FILE* pipe = popen(command.c_str(), "r");
    BOOST_REQUIRE_MESSAGE(pipe != nullptr, "popen failed for the openssl command");
    std::string output;
    std::array<char, 256> buffer{};
    while (std::fgets(buffer.data(), buffer.size(), pipe) != nullptr) {
        output += buffer.data();
    }
    int const status = pclose(pipe);
    BOOST_REQUIRE_MESSAGE(status == 0,
                          "openssl dgst failed with status " << status << ", output: " << output);
    // `-r` prints "<hex> *stdin".
    return output.substr(0, output.find(' '));
}

} // namespace

BOOST_AUTO_TEST_CASE(base64_roundtrip_rfc4648_vectors) {
    // RFC 4648 section 10.
    struct vector_case {
        std::string_view input;
        std::string_view encoded;
    };
    vector_case const cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("input \"" << c.input << "\"") {
            BOOST_TEST(revdesk::detail::base64_encode(as_bytes(c.input)) == c.encoded);
            auto const decoded = revdesk::detail::base64_decode(c.encoded);
            BOOST_REQUIRE(decoded.has_value());
            BOOST_TEST(std::string(decoded->begin(), decoded->end()) == c.input);
            // The padding may be left out.
            std::string_view unpadded = c.encoded;
            while (unpadded.ends_with('=')) {
                unpadded.remove_suffix(1);
            }
            auto const decoded_unpadded = revdesk::detail::base64_decode(unpadded);
            BOOST_REQUIRE(decoded_unpadded.has_value());
            BOOST_TEST(std::string(decoded_unpadded->begin(), decoded_unpadded->end()) == c.input);
        }
    }
}

BOOST_AUTO_TEST_CASE(base64_decode_rejects_malformed_text) {
    struct invalid_case {
        std::string_view text;
        std::string_view reason;
    };
    invalid_case const cases[] = {
        {"Z", "one character encodes no byte"},
        {"Zm9vY", "five characters encode no whole bytes"},
        {"Zg=", "partial padding"},
        {"Zg===", "too much padding"},
        {"Z===", "three padding characters"},
        {"====", "padding only"},
        {"Zm=v", "padding inside a group"},
        {"=Zm9", "leading padding"},
        {"Zh==", "unused bits set after one byte"},
        {"Zm9=", "unused bits set after two bytes"},
        {"Zm9v\n", "newline"},
        {"Zm 9v", "space"},
        {"Zm9v_-", "URL-safe alphabet"},
        {"Zm9v\xc3\xa9", "non-ASCII byte"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.reason) {
            BOOST_TEST(!revdesk::detail::base64_decode(c.text).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(decode_secret_strips_prefix_and_decodes) {
    auto const with_prefix = revdesk::decode_secret(vector_secret);
    BOOST_REQUIRE(with_prefix.has_value());
    BOOST_TEST(with_prefix->size() == 24u);
    auto const without_prefix = revdesk::decode_secret(vector_secret.substr(6));
    BOOST_REQUIRE(without_prefix.has_value());
    BOOST_TEST(*with_prefix == *without_prefix);
}

BOOST_AUTO_TEST_CASE(decode_secret_rejects_malformed_secrets) {
    std::string_view const cases[] = {
        "", "whsec_", "whsec_!!!!", "whsec_MfKQ9r8G KYqrTwjU", "whsec_Zh==", "whsec_Z",
    };
    for (auto const secret : cases) {
        BOOST_TEST_CONTEXT("secret \"" << secret << "\"") {
            BOOST_TEST(!revdesk::decode_secret(secret).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(sign_matches_standard_webhooks_vector) {
    BOOST_TEST(revdesk::sign(vector_secret, vector_msg_id, vector_timestamp, vector_body) ==
               vector_signature);
}

BOOST_AUTO_TEST_CASE(sign_depends_on_every_input) {
    std::string const base =
        revdesk::sign(vector_secret, vector_msg_id, vector_timestamp, vector_body);
    BOOST_TEST(revdesk::sign(other_secret, vector_msg_id, vector_timestamp, vector_body) != base);
    BOOST_TEST(revdesk::sign(vector_secret, "msg_other", vector_timestamp, vector_body) != base);
    BOOST_TEST(revdesk::sign(vector_secret, vector_msg_id, vector_timestamp + 1, vector_body) !=
               base);
    BOOST_TEST(revdesk::sign(vector_secret, vector_msg_id, vector_timestamp,
                             R"({"test": 2432232315})") != base);
}

BOOST_AUTO_TEST_CASE(sign_throws_on_malformed_secret) {
    BOOST_CHECK_THROW(revdesk::sign("whsec_not base64", "msg_1", 1, "{}"), std::invalid_argument);
    BOOST_CHECK_THROW(revdesk::sign("", "msg_1", 1, "{}"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(sign_matches_openssl_command_on_unicode_payload) {
    // Non-ASCII letters, a raw U+2028 LINE SEPARATOR, its JSON escape, an emoji, a closing tag
    // and numbers whose text must survive unchanged.
    std::string const body = "{\"text\":\"Grüße, 東京 — naïve\",\"raw\":\"a\xe2\x80\xa8"
                             "b\",\"escaped\":\"\\u2028\",\"emoji\":\"🎉\",\"html\":\"</x>\","
                             "\"ratio\":0.1,\"count\":4821}";
    BOOST_REQUIRE(body.find("\xe2\x80\xa8") != std::string::npos);
    BOOST_REQUIRE(body.find("\xf0\x9f\x8e\x89") != std::string::npos);
    std::string const secret = revdesk::new_signing_secret();
    std::string const msg_id = "msg_" + std::string(26, 'q');
    std::int64_t const timestamp = 1700000000;

    auto const key = revdesk::decode_secret(secret);
    BOOST_REQUIRE(key.has_value());
    std::string const content = msg_id + "." + std::to_string(timestamp) + "." + body;
    auto const expected_mac = from_hex(openssl_hmac_sha256_hex(*key, content));
    BOOST_REQUIRE(expected_mac.size() == 32u);

    BOOST_TEST(revdesk::sign(secret, msg_id, timestamp, body) ==
               "v1," + revdesk::detail::base64_encode(expected_mac));
}

BOOST_AUTO_TEST_CASE(signature_header_signs_with_each_secret) {
    std::vector<std::string> const secrets = {std::string(other_secret),
                                              std::string(vector_secret)};
    std::string const header =
        revdesk::signature_header(secrets, vector_msg_id, vector_timestamp, vector_body);
    std::string const first =
        revdesk::sign(other_secret, vector_msg_id, vector_timestamp, vector_body);
    BOOST_TEST(header == first + " " + std::string(vector_signature));
}

BOOST_AUTO_TEST_CASE(signature_header_rejects_empty_or_malformed_secrets) {
    std::vector<std::string> const none;
    BOOST_CHECK_THROW(revdesk::signature_header(none, "msg_1", 1, "{}"), std::invalid_argument);
    std::vector<std::string> const one_bad = {std::string(vector_secret), "whsec_%%"};
    BOOST_CHECK_THROW(revdesk::signature_header(one_bad, "msg_1", 1, "{}"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(signing_key_matches_vector_and_signs_again) {
    revdesk::signing_key const key(vector_secret);
    BOOST_TEST(key.sign(vector_msg_id, vector_timestamp, vector_body) == vector_signature);
    // Each signature starts from the keyed state, so an earlier message leaves no trace.
    auto const other = key.sign("msg_other", vector_timestamp + 1, "{}");
    BOOST_TEST(other == revdesk::sign(vector_secret, "msg_other", vector_timestamp + 1, "{}"));
    BOOST_TEST(key.sign(vector_msg_id, vector_timestamp, vector_body) == vector_signature);
}

BOOST_AUTO_TEST_CASE(signing_key_signs_from_several_threads) {
    revdesk::signing_key const key(vector_secret);
    auto const copy = key; // copies share the keyed state and its spare context
    std::atomic<int> mismatches = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            auto const& used = t % 2 == 0 ? key : copy;
            for (int i = 0; i < 200; ++i) {
                auto id = "msg_" + std::to_string(t) + "_" + std::to_string(i);
                if (used.sign(id, vector_timestamp + i, vector_body) !=
                    revdesk::sign(vector_secret, id, vector_timestamp + i, vector_body)) {
                    ++mismatches;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    BOOST_TEST(mismatches.load() == 0);
}

BOOST_AUTO_TEST_CASE(signing_key_rejects_malformed_secret) {
    BOOST_CHECK_THROW(revdesk::signing_key("whsec_%%"), std::invalid_argument);
    BOOST_CHECK_THROW(revdesk::signing_key(""), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(signature_header_with_keys_matches_secrets) {
    revdesk::signing_key const first(other_secret);
    revdesk::signing_key const second(vector_secret);
    revdesk::signing_key const* const keys[] = {&first, &second};
    std::vector<std::string> const secrets = {std::string(other_secret),
                                              std::string(vector_secret)};
    BOOST_TEST(revdesk::signature_header(keys, vector_msg_id, vector_timestamp, vector_body) ==
               revdesk::signature_header(secrets, vector_msg_id, vector_timestamp, vector_body));
    std::span<revdesk::signing_key const* const> none;
    BOOST_CHECK_THROW(revdesk::signature_header(none, "msg_1", 1, "{}"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(verify_accepts_vector_signature) {
    auto const error =
        revdesk::verify(vector_secret, vector_headers(), vector_body, at(vector_timestamp));
    BOOST_TEST(!error, error.message());
}

BOOST_AUTO_TEST_CASE(verify_accepts_header_names_in_any_case) {
    revdesk::http::fields headers;
    headers.add("Webhook-Id", std::string(vector_msg_id));
    headers.add("WEBHOOK-TIMESTAMP", std::to_string(vector_timestamp));
    headers.add("webhook-Signature", std::string(vector_signature));
    auto const error = revdesk::verify(vector_secret, headers, vector_body, at(vector_timestamp));
    BOOST_TEST(!error, error.message());
}

BOOST_AUTO_TEST_CASE(verify_rejects_tampered_request) {
    auto const body_error = revdesk::verify(vector_secret, vector_headers(),
                                            R"({"test": 2432232315})", at(vector_timestamp));
    BOOST_TEST(body_error == revdesk::verify_error::no_matching_signature);

    auto id_headers = vector_headers();
    id_headers.set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJeK");
    BOOST_TEST(revdesk::verify(vector_secret, id_headers, vector_body, at(vector_timestamp)) ==
               revdesk::verify_error::no_matching_signature);

    // A timestamp still inside the tolerance, but not the signed one.
    auto timestamp_headers = vector_headers();
    timestamp_headers.set("webhook-timestamp", std::to_string(vector_timestamp + 1));
    BOOST_TEST(
        revdesk::verify(vector_secret, timestamp_headers, vector_body, at(vector_timestamp)) ==
        revdesk::verify_error::no_matching_signature);

    auto signature_headers = vector_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=");
    BOOST_TEST(
        revdesk::verify(vector_secret, signature_headers, vector_body, at(vector_timestamp)) ==
        revdesk::verify_error::no_matching_signature);
}

BOOST_AUTO_TEST_CASE(verify_rejects_wrong_secret) {
    BOOST_TEST(revdesk::verify(other_secret, vector_headers(), vector_body, at(vector_timestamp)) ==
               revdesk::verify_error::no_matching_signature);
}

BOOST_AUTO_TEST_CASE(verify_accepts_any_of_several_signatures) {
    std::string const wrong =
        revdesk::sign(other_secret, vector_msg_id, vector_timestamp, vector_body);
    struct header_case {
        std::string value;
        std::string_view reason;
    };
    header_case const cases[] = {
        {wrong + " " + std::string(vector_signature), "match second"},
        {std::string(vector_signature) + " " + wrong, "match first"},
        {"v1a,bm90LWFuLWVkMjU1MTktc2lnbmF0dXJl " + std::string(vector_signature),
         "after an asymmetric signature"},
        {"  " + wrong + "   " + std::string(vector_signature) + " ", "extra spaces"},
        {"v1,short " + std::string(vector_signature), "after a truncated signature"},
        {"garbage " + std::string(vector_signature), "after an item without a comma"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.reason) {
            auto const error = revdesk::verify(vector_secret, vector_headers(c.value), vector_body,
                                               at(vector_timestamp));
            BOOST_TEST(!error, error.message());
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_ignores_signatures_of_other_versions) {
    std::string_view const value = vector_signature.substr(3);
    std::string const cases[] = {
        "v1a," + std::string(value), "v2," + std::string(value), "V1," + std::string(value),
        std::string(value),          "v1=" + std::string(value),
    };
    for (auto const& header : cases) {
        BOOST_TEST_CONTEXT("webhook-signature: " << header) {
            BOOST_TEST(revdesk::verify(vector_secret, vector_headers(header), vector_body,
                                       at(vector_timestamp)) ==
                       revdesk::verify_error::no_matching_signature);
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_reports_missing_headers) {
    struct missing_case {
        std::string_view header;
        revdesk::verify_error expected;
    };
    missing_case const cases[] = {
        {"webhook-id", revdesk::verify_error::missing_id},
        {"webhook-timestamp", revdesk::verify_error::missing_timestamp},
        {"webhook-signature", revdesk::verify_error::missing_signature},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("without " << c.header) {
            auto absent = vector_headers();
            absent.erase(c.header);
            BOOST_TEST(revdesk::verify(vector_secret, absent, vector_body, at(vector_timestamp)) ==
                       c.expected);
        }
        BOOST_TEST_CONTEXT("empty " << c.header) {
            auto empty = vector_headers();
            empty.set(c.header, "");
            BOOST_TEST(revdesk::verify(vector_secret, empty, vector_body, at(vector_timestamp)) ==
                       c.expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_rejects_malformed_timestamp) {
    std::string_view const cases[] = {
        "abc",         "-1",         "+1614265330",          "1614265330.5", " 1614265330",
        "1614265330 ", "0x60377a72", "99999999999999999999", "1e9",
    };
    for (auto const value : cases) {
        BOOST_TEST_CONTEXT("webhook-timestamp: \"" << value << "\"") {
            auto headers = vector_headers();
            headers.set("webhook-timestamp", std::string(value));
            BOOST_TEST(revdesk::verify(vector_secret, headers, vector_body, at(vector_timestamp)) ==
                       revdesk::verify_error::bad_timestamp);
        }
    }
}

BOOST_AUTO_TEST_CASE(verify_checks_timestamp_tolerance) {
    struct time_case {
        std::int64_t now_offset; // now minus the signed timestamp, in seconds
        std::optional<revdesk::verify_error> expected;
    };
    time_case const cases[] = {
        {0, std::nullopt},
        {300, std::nullopt},
        {-300, std::nullopt},
        {301, revdesk::verify_error::timestamp_too_old},
        {-301, revdesk::verify_error::timestamp_too_new},
        {86400, revdesk::verify_error::timestamp_too_old},
        {-86400, revdesk::verify_error::timestamp_too_new},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("now = timestamp + " << c.now_offset << " s") {
            auto const error = revdesk::verify(vector_secret, vector_headers(), vector_body,
                                               at(vector_timestamp + c.now_offset));
            if (c.expected) {
                BOOST_TEST(error == *c.expected);
            } else {
                BOOST_TEST(!error, error.message());
            }
        }
    }
    // A custom tolerance replaces the 5 minutes.
    BOOST_TEST(revdesk::verify(vector_secret, vector_headers(), vector_body,
                               at(vector_timestamp + 301),
                               std::chrono::minutes(10)) == std::error_code());
    BOOST_TEST(revdesk::verify(vector_secret, vector_headers(), vector_body,
                               at(vector_timestamp + 31), std::chrono::seconds(30)) ==
               revdesk::verify_error::timestamp_too_old);
}

BOOST_AUTO_TEST_CASE(verify_handles_extreme_clock_values) {
    auto const far_past = std::chrono::system_clock::time_point::min();
    auto const far_future = std::chrono::system_clock::time_point::max();
    BOOST_TEST(revdesk::verify(vector_secret, vector_headers(), vector_body, far_past) ==
               revdesk::verify_error::timestamp_too_new);
    BOOST_TEST(revdesk::verify(vector_secret, vector_headers(), vector_body, far_future) ==
               revdesk::verify_error::timestamp_too_old);
    auto headers = vector_headers();
    headers.set("webhook-timestamp", "9223372036854775807");
    BOOST_TEST(revdesk::verify(vector_secret, headers, vector_body, far_past) ==
               revdesk::verify_error::timestamp_too_new);
}

BOOST_AUTO_TEST_CASE(verify_reports_malformed_secret_first) {
    revdesk::http::fields const empty;
    BOOST_TEST(revdesk::verify("whsec_???", empty, vector_body, at(vector_timestamp)) ==
               revdesk::verify_error::bad_secret);
}

BOOST_AUTO_TEST_CASE(verify_error_category_names_each_error) {
    auto const& category = revdesk::verify_category();
    BOOST_TEST(std::string_view(category.name()) == "revdesk.webhook_signature");
    std::error_code const code = revdesk::verify_error::timestamp_too_old;
    BOOST_TEST(&code.category() == &category);
    BOOST_TEST(code.value() == static_cast<int>(revdesk::verify_error::timestamp_too_old));
    for (int value = 1; value <= static_cast<int>(revdesk::verify_error::bad_secret); ++value) {
        BOOST_TEST_CONTEXT("value " << value) {
            std::string const message = category.message(value);
            BOOST_TEST(!message.empty());
            BOOST_TEST(message.find("unknown") == std::string::npos);
        }
    }
    BOOST_TEST(category.message(0).find("unknown") != std::string::npos);
}
