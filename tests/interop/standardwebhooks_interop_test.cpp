// Interoperability: deliveries captured from the real server are verified, unchanged, by the
// Standard Webhooks reference library for JavaScript. The test installs the npm package
// `standardwebhooks` itself (npm must reach its registry) and runs it with node.
#include <revdesk/signing.hpp>

#define BOOST_TEST_MODULE standardwebhooks_interop
#include <boost/test/unit_test.hpp>

#include "../support/receiver.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <revdesk/detail/base64.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>

using namespace std::chrono_literals;
using revdesk::test::quote;

namespace {

// The package version the test pins, so that a new release cannot change the result silently.
std::string const package = "standardwebhooks@1.3.0";

std::string const api_key = "interop-key-5be1";

std::string const voicemail_call =
    R"({"id":"call_abc123","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","duration_seconds":0,"status":"VOICEMAIL",)"
    R"("failure_code":"voicemail_reached","failure_category":"voicemail",)"
    R"("disconnection_reason":null,"created_at":"2026-06-30T19:30:00.000Z"})";

// Raw and escaped U+2028, non-ASCII letters, an emoji, "</x>", "0.1" in text, the integer 4821,
// line breaks and odd spacing.
std::string const unusual_number_event =
    "{\n  \"id\": 4821,\n  \"phone_number\" : \"+15551234567\",\n  \"area_code\":null,\n"
    "  \"status\": \"ACTIVE \\u2028 Zo\xC3\xAB \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\",\n"
    "  \"organization_id\": \"org </x> v0.1 raw\xE2\x80\xA8sep\"\n}";

// Installs the package under REVDESK_NPM_PREFIX (in the build tree) and returns the prefix.
std::string install_package() {
    std::string prefix = REVDESK_NPM_PREFIX;
    std::filesystem::create_directories(prefix);
    revdesk::test::shell("timeout 300 npm install --prefix " + quote(prefix) +
                         " --no-audit --no-fund --loglevel=error " + package + " 2>&1");
    return prefix;
}

std::string lowercase(std::string text) {
    for (auto& c : text) {
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    return text;
}

struct interop {
    revdesk::test::test_certificates certs;
    revdesk::test::temp_dir dir;
    std::atomic<bool> fail_first = true; // used by the receiver's thread, so declared before it
    revdesk::test::receiver receiver{certs.cert_file, certs.key_file};
    std::unique_ptr<revdesk::test::server_process> server;

    void start() {
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", "sqlite:" + dir.file("revdesk.db"), "--ca-file",
                                     certs.ca_file, "--allow-target", "127.0.0.1/32",
                                     "--retry-schedule", "500ms"},
            api_key, dir.file("server.log"));
    }

    std::string hook(std::string const& path) const {
        return "https://127.0.0.1:" + std::to_string(receiver.port()) + path;
    }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(standardwebhooks, interop)

BOOST_AUTO_TEST_CASE(reference_library_verifies_deliveries) {
    auto prefix = install_package();
    BOOST_TEST_REQUIRE(std::filesystem::exists(std::filesystem::path(prefix) / "node_modules" /
                                               "standardwebhooks" / "package.json"));

    // The first request to /retried fails, so its retry is verified too.
    receiver.answer_with([this](revdesk::http::request const& r) {
        return r.target == "/retried" && fail_first.exchange(false) ? 503 : 200;
    });
    start();
    revdesk::test::api_session api(server->base_url(), api_key);

    std::map<std::string, std::string> secrets; // by receiver path
    struct subscription {
        std::string path;
        std::string type;
    };
    std::vector<subscription> subscriptions{{"/completed", "call_completed"},
                                            {"/voicemail", "call_voicemail"},
                                            {"/numbers", "number_purchased"},
                                            {"/retried", "number_purchased"}};
    for (auto const& s : subscriptions) {
        auto reply = api.subscribe(hook(s.path), s.type);
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
        secrets[s.path] = std::string(reply.json().at("secret").as_string());
    }
    BOOST_TEST_REQUIRE(api.publish("call_completed", voicemail_call).status == 202);
    BOOST_TEST_REQUIRE(api.publish("number_purchased", unusual_number_event).status == 202);

    for (auto const& [path, count] : std::map<std::string, std::size_t>{
             {"/completed", 1}, {"/voicemail", 1}, {"/numbers", 1}, {"/retried", 2}}) {
        BOOST_TEST_REQUIRE(receiver.wait_for(path, count), path);
    }

    // Captured requests, as the library's verify function takes them: the secret, the header
    // fields by lowercase name and the body bytes.
    auto captured = receiver.received();
    boost::json::array input;
    for (auto const& r : captured) {
        boost::json::object headers;
        for (auto const& f : r.headers.items()) {
            headers[lowercase(f.name)] = f.value;
        }
        input.push_back({{"secret", secrets.at(r.target)},
                         {"headers", std::move(headers)},
                         {"body_base64", revdesk::detail::base64_encode(std::span(
                                             reinterpret_cast<unsigned char const*>(r.body.data()),
                                             r.body.size()))}});
    }
    auto input_file = dir.file("captured.json");
    {
        std::ofstream out(input_file, std::ios::binary);
        out << boost::json::serialize(input);
    }

    auto output = revdesk::test::shell("node " + quote(REVDESK_INTEROP_SCRIPT) + " " +
                                       quote(prefix) + " " + quote(input_file));
    auto results = boost::json::parse(output).as_array();
    BOOST_TEST_REQUIRE(results.size() == captured.size());
    BOOST_TEST(captured.size() == 5u);
    for (std::size_t i = 0; i < captured.size(); ++i) {
        auto const& r = captured[i];
        auto const& result = results[i].as_object();
        BOOST_TEST_CONTEXT(r.target << " " << result.at("webhook_id")) {
            BOOST_TEST(result.at("verified").as_bool(), boost::json::serialize(result));
            BOOST_TEST(result.at("tampered_rejected").as_bool());
            BOOST_TEST(result.at("other_secret_rejected").as_bool());
            // The library parsed the same JSON that was sent.
            BOOST_TEST(result.at("payload") == boost::json::parse(r.body));
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
