#include <revdesk/ids.hpp>

#define BOOST_TEST_MODULE ids
#include <boost/test/unit_test.hpp>

#include <revdesk/detail/base64.hpp>

#include <openssl/rand.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::string_view base32_alphabet = "abcdefghijklmnopqrstuvwxyz234567";

bool in_base32_alphabet(std::string_view text) {
    return text.find_first_not_of(base32_alphabet) == std::string_view::npos;
}

std::span<unsigned char const> as_bytes(std::string_view text) {
    return {reinterpret_cast<unsigned char const*>(text.data()), text.size()};
}

// A legacy RAND_METHOD whose generator always fails, to drive the error path of RAND_bytes.
int failing_bytes(unsigned char*, int) {
    return 0;
}
int failing_status() {
    return 0;
}

} // namespace

BOOST_AUTO_TEST_CASE(base32_encode_rfc4648_vectors) {
    // RFC 4648 section 10, lowercased and without padding.
    struct vector_case {
        std::string_view input;
        std::string_view expected;
    };
    vector_case const cases[] = {
        {"", ""},
        {"f", "my"},
        {"fo", "mzxq"},
        {"foo", "mzxw6"},
        {"foob", "mzxw6yq"},
        {"fooba", "mzxw6ytb"},
        {"foobar", "mzxw6ytboi"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("input \"" << c.input << "\"") {
            BOOST_TEST(revdesk::detail::base32_lower_encode(as_bytes(c.input)) == c.expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(random_token_length_and_alphabet) {
    struct length_case {
        std::size_t bytes;
        std::size_t chars;
    };
    length_case const cases[] = {{0, 0}, {1, 2}, {5, 8}, {16, 26}, {32, 52}, {1000, 1600}};
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.bytes << " bytes") {
            std::string const token = revdesk::random_token(c.bytes);
            BOOST_TEST(token.size() == c.chars);
            BOOST_TEST(in_base32_alphabet(token));
        }
    }
}

BOOST_AUTO_TEST_CASE(random_token_varies_every_position) {
    // With random input each of the 32 characters appears at the first position of 2000 tokens
    // except with probability below 1e-25, and no token repeats.
    std::set<char> first_characters;
    std::set<std::string> tokens;
    for (int i = 0; i < 2000; ++i) {
        std::string token = revdesk::random_token(16);
        first_characters.insert(token.front());
        tokens.insert(std::move(token));
    }
    BOOST_TEST(first_characters.size() == 32u);
    BOOST_TEST(tokens.size() == 2000u);
}

BOOST_AUTO_TEST_CASE(random_token_throws_when_rand_bytes_fails) {
    // RAND_METHOD is deprecated in OpenSSL 3 but still routes RAND_bytes, which makes it the
    // only public way to force the failure.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    static RAND_METHOD failing_method{};
    failing_method.bytes = failing_bytes;
    failing_method.status = failing_status;
    BOOST_REQUIRE(RAND_set_rand_method(&failing_method) == 1);
    BOOST_CHECK_THROW(revdesk::random_token(16), std::runtime_error);
    BOOST_CHECK_THROW(revdesk::new_signing_secret(), std::runtime_error);
    // Identifiers draw from a batch per thread, so the failure shows once the batch is used up,
    // and never as bytes handed out twice.
    std::set<std::string> ids;
    bool threw = false;
    for (std::size_t i = 0; i <= revdesk::detail::id_random_batch && !threw; ++i) {
        try {
            BOOST_TEST(ids.insert(revdesk::new_message_id()).second);
        } catch (std::runtime_error const&) {
            threw = true;
        }
    }
    BOOST_TEST(threw);
    BOOST_CHECK_THROW(revdesk::new_event_id(), std::runtime_error);
    BOOST_CHECK_THROW(revdesk::new_subscription_id(), std::runtime_error);
    BOOST_REQUIRE(RAND_set_rand_method(nullptr) == 1);
#pragma GCC diagnostic pop
    BOOST_TEST(revdesk::random_token(16).size() == 26u);
}

BOOST_AUTO_TEST_CASE(forked_child_does_not_repeat_the_parents_identifiers) {
    // The first id fills this thread's batch, so the child inherits a copy of it.
    (void)revdesk::new_subscription_id();
    int pipe_ends[2];
    BOOST_REQUIRE(::pipe(pipe_ends) == 0);
    pid_t child = ::fork();
    BOOST_REQUIRE(child >= 0);
    if (child == 0) {
        auto id = revdesk::new_subscription_id();
        auto written = ::write(pipe_ends[1], id.data(), id.size());
        ::_exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
    }
    ::close(pipe_ends[1]);
    std::string from_child(64, '\0');
    auto n = ::read(pipe_ends[0], from_child.data(), from_child.size());
    ::close(pipe_ends[0]);
    int status = 0;
    BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
    BOOST_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    BOOST_REQUIRE(n > 0);
    from_child.resize(static_cast<std::size_t>(n));

    auto from_parent = revdesk::new_subscription_id();
    BOOST_TEST(revdesk::is_valid_id(from_child, revdesk::subscription_id_prefix));
    BOOST_TEST(from_child != from_parent);
}

BOOST_AUTO_TEST_CASE(new_ids_have_prefix_and_128_bits) {
    struct id_case {
        std::string_view prefix;
        std::string (*make)();
    };
    id_case const cases[] = {
        {"whk_", revdesk::new_subscription_id},
        {"evt_", revdesk::new_event_id},
        {"msg_", revdesk::new_message_id},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("prefix " << c.prefix) {
            std::string const id = c.make();
            BOOST_TEST(id.starts_with(c.prefix));
            BOOST_TEST(id.size() == c.prefix.size() + 26);
            BOOST_TEST(in_base32_alphabet(id.substr(c.prefix.size())));
            BOOST_TEST(revdesk::is_valid_id(id, c.prefix));
            BOOST_TEST(c.make() != id);
        }
    }
}

BOOST_AUTO_TEST_CASE(time_ordered_ids_sort_by_creation) {
    struct id_case {
        std::string_view prefix;
        std::string (*make)();
    };
    id_case const cases[] = {
        {"evt_", revdesk::new_event_id},
        {"msg_", revdesk::new_message_id},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("prefix " << c.prefix) {
            // 20 ids over 40 ms, so that the characters that carry the low bits of the time
            // take most of their 32 values.
            std::vector<std::string> ids;
            for (int i = 0; i < 20; ++i) {
                ids.push_back(c.make());
                // Two milliseconds apart, so that each id has its own timestamp.
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
            for (std::size_t i = 1; i < ids.size(); ++i) {
                BOOST_TEST_CONTEXT("ids " << ids[i - 1] << " and " << ids[i]) {
                    BOOST_TEST(ids[i - 1] < ids[i]);
                    BOOST_TEST(revdesk::is_valid_id(ids[i], c.prefix));
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(time_ordered_id_carries_unix_milliseconds) {
    auto unix_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    auto const before = unix_ms();
    std::string const id = revdesk::new_message_id();
    auto const after = unix_ms();

    auto const carried = revdesk::detail::id_time_ms(id, "msg_");
    BOOST_TEST(carried >= before);
    BOOST_TEST(carried <= after);
}

BOOST_AUTO_TEST_CASE(time_ordered_ids_keep_80_random_bits) {
    // Ids made in a tight loop share most of their timestamp, so their last characters come from
    // the 80 random bits. Each of the 32 characters appears at the 25th position of 2000 ids
    // except with probability below 1e-25, and no id repeats.
    std::set<char> random_characters;
    std::set<std::string> ids;
    for (int i = 0; i < 2000; ++i) {
        std::string id = revdesk::new_message_id();
        random_characters.insert(id[4 + 24]);
        ids.insert(std::move(id));
    }
    BOOST_TEST(random_characters.size() == 32u);
    BOOST_TEST(ids.size() == 2000u);
}

BOOST_AUTO_TEST_CASE(subscription_ids_stay_fully_random) {
    // A time-ordered id would start with the same characters for decades.
    std::set<char> first_characters;
    for (int i = 0; i < 2000; ++i) {
        first_characters.insert(revdesk::new_subscription_id()[4]);
    }
    BOOST_TEST(first_characters.size() == 32u);
}

BOOST_AUTO_TEST_CASE(new_signing_secret_is_whsec_base64_of_32_bytes) {
    std::string const secret = revdesk::new_signing_secret();
    BOOST_TEST(secret.starts_with("whsec_"));
    // 32 bytes take 44 base64 characters, the last of them padding.
    BOOST_TEST(secret.size() == 6u + 44u);
    auto const key = revdesk::detail::base64_decode(std::string_view(secret).substr(6));
    BOOST_REQUIRE(key.has_value());
    BOOST_TEST(key->size() == 32u);
    BOOST_TEST(revdesk::new_signing_secret() != secret);
}

BOOST_AUTO_TEST_CASE(is_valid_id_checks_prefix_alphabet_and_length) {
    std::string const good = "whk_" + std::string(25, 'a') + "q";
    BOOST_TEST(revdesk::is_valid_id(good, "whk_"));

    struct invalid_case {
        std::string id;
        std::string_view reason;
    };
    invalid_case const cases[] = {
        {"", "empty"},
        {"whk_", "prefix only"},
        {"evt_" + std::string(26, 'a'), "other prefix"},
        {"WHK_" + std::string(26, 'a'), "uppercase prefix"},
        {"whk_" + std::string(25, 'a'), "25 characters"},
        {"whk_" + std::string(27, 'a'), "27 characters"},
        {"whk_" + std::string(25, 'a') + "A", "uppercase letter"},
        {"whk_" + std::string(25, 'a') + "0", "digit 0 outside base32"},
        {"whk_" + std::string(24, 'a') + "1a", "digit 1 outside base32"},
        {"whk_" + std::string(24, 'a') + "8a", "digit 8 outside base32"},
        {"whk_" + std::string(24, 'a') + "-a", "hyphen"},
        {"whk_" + std::string(24, 'a') + "/a", "slash"},
        {"whk_" + std::string(25, 'a') + "b", "last character carries bits beyond 128"},
        {"whk_" + std::string(25, 'a') + "7", "last character 7 carries bits beyond 128"},
        {"whk_" + std::string(13, 'a') + std::string(1, '\0') + std::string(12, 'a'), "NUL"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.reason) {
            BOOST_TEST(!revdesk::is_valid_id(c.id, "whk_"));
        }
    }
}

BOOST_AUTO_TEST_CASE(is_valid_id_accepts_every_canonical_last_character) {
    // The last character contains 3 data bits followed by 2 zero bits.
    for (char last : std::string_view("aeimquy4")) {
        BOOST_TEST_CONTEXT("last character " << last) {
            BOOST_TEST(revdesk::is_valid_id("msg_" + std::string(25, '7') + last, "msg_"));
        }
    }
}
