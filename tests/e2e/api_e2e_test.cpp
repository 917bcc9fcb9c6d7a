// End to end: the multi-workspace API of the real revdesk-server binary, driven with the real
// curl, with API keys managed through the binary's keys command on a real SQLite file.
#include <revdesk/signing.hpp>

#define BOOST_TEST_MODULE api_e2e
#include <boost/test/unit_test.hpp>

#include "../../reference-server/metrics.hpp"
#include "../support/receiver.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"
#include <revdesk/catalog.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using revdesk::test::api_session;
using revdesk::test::curl;
using revdesk::test::curl_reply;
using revdesk::test::quote;
using revdesk::test::shell;

namespace {

std::string const env_key = "api-e2e-env-key-51c2";

// Returns the last non-empty line of `text`.
std::string last_line(std::string const& text) {
    auto end = text.find_last_not_of('\n');
    if (end == std::string::npos) {
        return {};
    }
    auto start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1,
                       end - (start == std::string::npos ? 0 : start + 1) + 1);
}

struct api_fixture {
    revdesk::test::temp_dir dir;
    revdesk::test::receiver receiver; // plain HTTP; the server runs with --allow-http
    std::string database = dir.file("revdesk.db");
    std::unique_ptr<revdesk::test::server_process> server;

    // Starts the server; an empty `key` starts it without REVDESK_API_KEY.
    void start(std::string const& key = env_key) {
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", "sqlite:" + database, "--allow-http",
                                     "--allow-target", "127.0.0.1/32", "--retry-schedule", "1s"},
            key, dir.file("server.log"));
    }

    // Runs `revdesk-server keys ARGS --store sqlite:DB` and returns its standard output.
    std::string keys(std::string const& args) const {
        return shell(std::string(REVDESK_SERVER_PATH) + " keys " + args + " --store " +
                     quote("sqlite:" + database) + " 2>&1");
    }

    std::string create_key(std::string const& workspace) const {
        return last_line(keys("create --workspace " + workspace));
    }

    std::string server_log() const { return shell("cat " + quote(dir.file("server.log"))); }

    // GET with a query string: api_session::get leaves the URL unquoted for the shell.
    curl_reply get(std::string const& key, std::string const& path) const {
        return curl(quote(server->base_url() + path) + " -H " +
                    quote("Authorization: Bearer " + key));
    }

    // Sends `body` as JSON with `method`, such as PATCH.
    // `extra` contains more curl arguments, already quoted.
    curl_reply send(std::string const& key, std::string const& method, std::string const& path,
                    std::string const& body, std::string const& extra = "") const {
        auto file = dir.file("request.json");
        {
            std::ofstream out(file, std::ios::binary);
            out << body;
        }
        return curl("-X " + method + " " + quote(server->base_url() + path) + " -H " +
                    quote("Authorization: Bearer " + key) +
                    " -H 'Content-Type: application/json' --data-binary @" + quote(file) + " " +
                    extra);
    }

    std::string hook(std::string const& path) const {
        return "http://127.0.0.1:" + std::to_string(receiver.port()) + path;
    }

    api_session as(std::string const& key) const { return api_session(server->base_url(), key); }

    // Waits until `key` gets `status` on the list endpoint; the server reloads keys every 2 s.
    bool wait_for_status(std::string const& key, int status) const {
        auto until = std::chrono::steady_clock::now() + 15s;
        while (std::chrono::steady_clock::now() < until) {
            if (as(key).get("/api/v1/webhook_subscriptions").status == status) {
                return true;
            }
            std::this_thread::sleep_for(200ms);
        }
        return false;
    }

    static std::string subscribe(api_session const& api, std::string const& type,
                                 std::string const& path = "/hook") {
        auto reply = api.subscribe("http://127.0.0.1:9" + path, type);
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
        return std::string(reply.json().at("id").as_string());
    }
};

std::size_t count_of(std::string const& text, std::string const& part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) {
        ++n;
    }
    return n;
}

// Parses Prometheus text with prometheus_client and returns each sample as
// `name{label=value,...}` (labels sorted) to its value, and each family's type as `type:NAME`.
boost::json::object parse_exposition(revdesk::test::temp_dir const& dir, std::string const& text) {
    auto scrape_file = dir.file("scrape.txt");
    auto script_file = dir.file("parse.py");
    {
        std::ofstream(scrape_file, std::ios::binary) << text;
        std::ofstream(script_file) << R"(import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        labels = ",".join(k + "=" + v for k, v in sorted(s.labels.items()))
        out[s.name + "{" + labels + "}"] = s.value
    out["type:" + family.name] = family.type
print(json.dumps(out))
)";
    }
    // The Debian package installs the parser for the system interpreter.
    return boost::json::parse(
               shell("/usr/bin/python3 " + quote(script_file) + " " + quote(scrape_file)))
        .as_object();
}

std::vector<std::string> ids_of(curl_reply const& reply) {
    std::vector<std::string> ids;
    auto body = reply.json();
    for (auto const& item : body.at("data").as_array()) {
        ids.emplace_back(item.at("id").as_string());
    }
    return ids;
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(api, api_fixture)

BOOST_AUTO_TEST_CASE(keys_create_prints_key_last_and_stores_only_its_digest) {
    auto output = keys("create --workspace acme");
    auto key = last_line(output);
    BOOST_TEST(std::regex_match(key, std::regex("rdk_[a-z2-7]{32}")), key);

    auto dump = shell("sqlite3 " + quote(database) + " .dump");
    BOOST_TEST(dump.find(key) == std::string::npos);
    BOOST_TEST(dump.find(shell("printf %s " + quote(key) + " | sha256sum").substr(0, 64)) !=
               std::string::npos);

    auto listed = keys("list");
    BOOST_TEST(listed.find(key) == std::string::npos, listed);
    BOOST_TEST(listed.find("acme") != std::string::npos, listed);
    BOOST_TEST(listed.find(key.substr(0, 8)) != std::string::npos, listed);
    BOOST_TEST(std::regex_search(listed, std::regex("key_[a-z2-7]+\tacme\trdk_")), listed);
}

BOOST_AUTO_TEST_CASE(keys_created_key_authenticates_until_revoked) {
    start();
    auto key = create_key("acme");
    BOOST_TEST_REQUIRE(wait_for_status(key, 200));
    auto id = subscribe(as(key), "call_completed");
    BOOST_TEST(as(key).get("/api/v1/webhook_subscriptions/" + id).status == 200);

    std::smatch m;
    auto listed = keys("list");
    BOOST_TEST_REQUIRE(std::regex_search(listed, m, std::regex("(key_[a-z2-7]+)\tacme")));
    BOOST_TEST(last_line(keys("revoke " + m[1].str())) == "revoked API key " + m[1].str());
    BOOST_TEST(wait_for_status(key, 401));
    BOOST_TEST(keys("list").find("\tyes") != std::string::npos);
    // The environment key is unaffected.
    BOOST_TEST(as(env_key).get("/api/v1/webhook_subscriptions").status == 200);
}

BOOST_AUTO_TEST_CASE(keys_invalid_requests_fail) {
    BOOST_CHECK_THROW(keys("revoke key_doesnotexist"), std::runtime_error);
    BOOST_CHECK_THROW(keys("create --workspace 'a b'"), std::runtime_error);
    BOOST_CHECK_THROW(keys("create"), std::runtime_error);
    BOOST_CHECK_THROW(shell(std::string(REVDESK_SERVER_PATH) +
                            " keys create --workspace acme --store memory: 2>&1"),
                      std::runtime_error);
    // The failed commands stored nothing, not even a database: a list finds no store.
    BOOST_CHECK_THROW(keys("list"), std::runtime_error);
    BOOST_TEST(!std::filesystem::exists(database));
}

BOOST_AUTO_TEST_CASE(start_without_keys_creates_one_development_key) {
    start("");
    auto log = server->log();
    std::smatch m;
    BOOST_TEST_REQUIRE(std::regex_search(log, m, std::regex("rdk_[a-z2-7]{32}")), log);
    auto key = m.str();
    BOOST_TEST(log.find("curl -X POST") != std::string::npos);
    BOOST_TEST(log.find("Bearer " + key) != std::string::npos);
    BOOST_TEST(as(key).get("/api/v1/webhook_subscriptions").status == 200);

    // A second start finds the key in the store: it keeps working and is not printed again.
    server.reset();
    auto before = count_of(server_log(), key);
    start("");
    BOOST_TEST(count_of(server_log(), key) == before);
    BOOST_TEST(as(key).get("/api/v1/webhook_subscriptions").status == 200);
    BOOST_TEST(keys("list").find("\tdefault\t") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(isolation_other_workspace_ids_look_unknown) {
    start();
    auto key_a = create_key("team-a");
    auto key_b = create_key("team-b");
    BOOST_TEST_REQUIRE(wait_for_status(key_a, 200));
    BOOST_TEST_REQUIRE(wait_for_status(key_b, 200));
    auto a = as(key_a);
    auto b = as(key_b);
    auto id = subscribe(a, "call_completed");
    auto unknown = "whk_" + std::string(26, 'a');

    struct probe {
        std::string name;
        std::function<curl_reply(std::string const&)> call;
    };
    std::vector<probe> probes{
        {"GET", [&](std::string const& x) { return b.get("/api/v1/webhook_subscriptions/" + x); }},
        {"DELETE",
         [&](std::string const& x) { return b.remove("/api/v1/webhook_subscriptions/" + x); }},
        {"PATCH",
         [&](std::string const& x) {
             return send(key_b, "PATCH", "/api/v1/webhook_subscriptions/" + x,
                         R"({"enabled":true})");
         }},
        {"attempts",
         [&](std::string const& x) {
             return b.get("/api/v1/webhook_subscriptions/" + x + "/attempts");
         }},
        {"rotate",
         [&](std::string const& x) {
             return send(key_b, "POST", "/api/v1/webhook_subscriptions/" + x + "/secret/rotate",
                         "{}");
         }},
    };
    for (auto const& p : probes) {
        BOOST_TEST_CONTEXT(p.name) {
            auto other = p.call(id);
            auto missing = p.call(unknown);
            BOOST_TEST(other.status == 404);
            BOOST_TEST(missing.status == 404);
            auto expected = missing.body;
            expected.replace(expected.find(unknown), unknown.size(), id);
            BOOST_TEST(other.body == expected);
        }
    }
    // b's list does not show a's subscription, and a's subscription survived b's DELETE.
    BOOST_TEST(ids_of(b.get("/api/v1/webhook_subscriptions")).empty());
    BOOST_TEST(a.get("/api/v1/webhook_subscriptions/" + id).status == 200);
    BOOST_TEST(ids_of(a.get("/api/v1/webhook_subscriptions")) == std::vector<std::string>{id});
}

BOOST_AUTO_TEST_CASE(list_pages_in_creation_order_with_cursor) {
    start();
    auto api = as(env_key);
    std::vector<std::string> created;
    for (int i = 0; i < 5; ++i) {
        created.push_back(subscribe(api, i % 2 == 0 ? "call_completed" : "sms_delivered"));
    }
    auto first = get(env_key, "/api/v1/webhook_subscriptions?limit=2");
    BOOST_TEST_REQUIRE(first.status == 200, first.body);
    std::vector<std::string> seen = ids_of(first);
    auto cursor = first.json().at("next_cursor");
    int pages = 1;
    while (!cursor.is_null()) {
        auto next = get(env_key, "/api/v1/webhook_subscriptions?limit=2&cursor=" +
                                     std::string(cursor.as_string()));
        BOOST_TEST_REQUIRE(next.status == 200, next.body);
        auto more = ids_of(next);
        seen.insert(seen.end(), more.begin(), more.end());
        cursor = next.json().at("next_cursor");
        ++pages;
    }
    BOOST_TEST(pages == 3);
    BOOST_TEST(seen == created);

    auto all = api.get("/api/v1/webhook_subscriptions");
    BOOST_TEST(ids_of(all) == created);
    BOOST_TEST(all.json().at("next_cursor").is_null());

    auto sms = get(env_key, "/api/v1/webhook_subscriptions?event_type=sms_delivered");
    BOOST_TEST(ids_of(sms) == (std::vector<std::string>{created[1], created[3]}));
}

BOOST_AUTO_TEST_CASE(list_rejects_bad_parameters) {
    start();
    auto api = as(env_key);
    struct bad {
        std::string query;
        std::string code;
        std::string field;
        std::string mentions = ""; // text the message must contain
    };
    std::vector<bad> cases{
        {"limit=0", "invalid_parameter", "limit", "not \"0\""},
        {"limit=101", "invalid_parameter", "limit"},
        {"limit=abc", "invalid_parameter", "limit", "not \"abc\""},
        {"limit=-1", "invalid_parameter", "limit"},
        {"cursor=zz", "invalid_cursor", "cursor"},
        {"cursor=", "invalid_cursor", "cursor"},
        {"event_type=nope", "invalid_event_type", "event_type"},
        {"colour=red", "unknown_parameter", "colour", "accepts limit, cursor, event_type"},
        {"limit=1&limit=2", "invalid_parameter", "limit"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.query) {
            auto reply = get(env_key, "/api/v1/webhook_subscriptions?" + c.query);
            BOOST_TEST(reply.status == 400);
            auto error = reply.json().at("error");
            BOOST_TEST(error.at("code").as_string() == c.code);
            BOOST_TEST(error.at("field").as_string() == c.field);
            std::string message(error.at("message").as_string());
            BOOST_TEST(message.find(c.mentions) != std::string::npos, message);
        }
    }
}

// NOTE: the 503 branch of /readyz is not exercised here: the SQLite store pings with SELECT 1,
// which succeeds whatever happens to the database file of a running server.
BOOST_AUTO_TEST_CASE(readyz_answers_without_key) {
    start();
    auto reply = curl(server->base_url() + "/readyz");
    BOOST_TEST(reply.status == 200);
    BOOST_TEST(reply.json().at("status").as_string() == "ready");
    BOOST_TEST(curl("-X POST " + server->base_url() + "/readyz").status == 405);
}

BOOST_AUTO_TEST_CASE(request_log_names_route_and_workspace_without_secrets) {
    start();
    auto api = as(env_key);
    auto id = subscribe(api, "call_completed");
    api.get("/api/v1/webhook_subscriptions/" + id);
    auto log = server->log();
    BOOST_TEST(log.find("GET /api/v1/webhook_subscriptions/{id} 200") != std::string::npos, log);
    BOOST_TEST(log.find("workspace=default") != std::string::npos);
    BOOST_TEST(log.find(env_key) == std::string::npos);
    BOOST_TEST(log.find("whsec_") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(patch_changes_url_after_the_create_checks) {
    start();
    auto api = as(env_key);
    auto id = subscribe(api, "sms_delivered", "/old");
    auto path = "/api/v1/webhook_subscriptions/" + id;

    auto changed = send(env_key, "PATCH", path, R"({"webhook_url":")" + hook("/new") + R"("})");
    BOOST_TEST_REQUIRE(changed.status == 200, changed.body);
    BOOST_TEST(changed.json().at("webhook_url").as_string() == hook("/new"));
    BOOST_TEST(changed.json().as_object().if_contains("secret") == nullptr);
    BOOST_TEST(api.get(path).json().at("webhook_url").as_string() == hook("/new"));

    auto published = api.publish(
        "sms_delivered",
        R"({"id":"m1","phone_number":"+15557654321","from_number":"+15551234567",)"
        R"("direction":"outbound","status":"delivered","provider_id":"SM1","error_message":null,)"
        R"("channel":"sms","created_at":"2026-06-30T19:30:00.000Z"})");
    BOOST_TEST_REQUIRE(published.status == 202, published.body);
    BOOST_TEST(receiver.wait_for("/new", 1));

    struct bad {
        std::string body;
        std::string code;
        std::string field;
    };
    std::vector<bad> cases{
        {R"({"webhook_url":"http://10.1.2.3/x"})", "invalid_webhook_url", "webhook_url"},
        {R"({"webhook_url":"ftp://127.0.0.1/x"})", "invalid_webhook_url", "webhook_url"},
        {R"({"webhook_url":7})", "invalid_member", "webhook_url"},
        {R"({"enabled":"yes"})", "invalid_member", "enabled"},
        {R"({"event_type":"call_completed"})", "unknown_member", "event_type"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.body) {
            auto reply = send(env_key, "PATCH", path, c.body);
            BOOST_TEST(reply.status == 422);
            BOOST_TEST(reply.json().at("error").at("code").as_string() == c.code);
            BOOST_TEST(reply.json().at("error").at("field").as_string() == c.field);
        }
    }
    BOOST_TEST(send(env_key, "PATCH", path, "{}").status == 422);
    BOOST_TEST(api.get(path).json().at("webhook_url").as_string() == hook("/new"));
}

BOOST_AUTO_TEST_CASE(patch_enabled_true_resumes_after_gone) {
    start();
    receiver.answer_with([](revdesk::http::request const&) { return 410; });
    auto api = as(env_key);
    auto reply = api.subscribe(hook("/gone"), "number_purchased");
    BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
    auto id = std::string(reply.json().at("id").as_string());
    auto path = "/api/v1/webhook_subscriptions/" + id;
    auto payload =
        R"({"id":4821,"phone_number":"+15551234567","area_code":"555","status":"ACTIVE","organization_id":"org_1"})";
    BOOST_TEST_REQUIRE(api.publish("number_purchased", payload).status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/gone", 1));
    auto until = std::chrono::steady_clock::now() + 10s;
    while (api.get(path).json().at("enabled").as_bool() &&
           std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(100ms);
    }
    BOOST_TEST_REQUIRE(!api.get(path).json().at("enabled").as_bool());

    receiver.answer_with([](revdesk::http::request const&) { return 204; });
    auto enabled = send(env_key, "PATCH", path, R"({"enabled":true})");
    BOOST_TEST_REQUIRE(enabled.status == 200, enabled.body);
    BOOST_TEST(enabled.json().at("enabled").as_bool());
    BOOST_TEST_REQUIRE(api.publish("number_purchased", payload).status == 202);
    BOOST_TEST(receiver.wait_for("/gone", 2));
}

BOOST_AUTO_TEST_CASE(rotate_rejects_members_in_body) {
    start();
    auto api = as(env_key);
    auto created = api.subscribe(hook("/rotate-body"), "number_purchased");
    BOOST_TEST_REQUIRE(created.status == 201, created.body);
    auto path = "/api/v1/webhook_subscriptions/" +
                std::string(created.json().at("id").as_string()) + "/secret/rotate";

    auto rejected = send(env_key, "POST", path, R"({"grace_period":60})");
    BOOST_TEST(rejected.status == 422);
    BOOST_TEST(rejected.json().at("error").at("code").as_string() == "unknown_member");
    BOOST_TEST(rejected.json().at("error").at("field").as_string() == "grace_period");
    BOOST_TEST(send(env_key, "POST", path, "[]").status == 400);
    BOOST_TEST(send(env_key, "POST", path, "{}").status == 200);
}

BOOST_AUTO_TEST_CASE(rotate_signs_with_new_and_previous_secret) {
    start();
    auto api = as(env_key);
    auto created = api.subscribe(hook("/rotate"), "number_purchased");
    BOOST_TEST_REQUIRE(created.status == 201);
    auto id = std::string(created.json().at("id").as_string());
    auto old_secret = std::string(created.json().at("secret").as_string());

    auto rotated =
        send(env_key, "POST", "/api/v1/webhook_subscriptions/" + id + "/secret/rotate", "");
    BOOST_TEST_REQUIRE(rotated.status == 200, rotated.body);
    auto new_secret = std::string(rotated.json().at("secret").as_string());
    BOOST_TEST(new_secret.starts_with("whsec_"));
    BOOST_TEST(new_secret != old_secret);
    auto expires = revdesk::parse_utc_timestamp(
        std::string(rotated.json().at("previous_secret_expires_at").as_string()));
    BOOST_TEST_REQUIRE(expires.has_value());
    auto grace = *expires - std::chrono::time_point_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now());
    BOOST_TEST(grace > 23h);
    BOOST_TEST(grace <= 24h);
    BOOST_TEST(api.get("/api/v1/webhook_subscriptions/" + id).body.find("whsec_") ==
               std::string::npos);

    BOOST_TEST_REQUIRE(
        api.publish(
               "number_purchased",
               R"({"id":1,"phone_number":"+15551234567","area_code":"555","status":"ACTIVE","organization_id":"org_1"})")
            .status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/rotate", 1));
    auto request = receiver.received_at("/rotate").front();
    auto signature = std::string(*request.headers.find("webhook-signature"));
    BOOST_TEST(signature.find(' ') != std::string::npos, signature);
    auto now = std::chrono::system_clock::now();
    BOOST_TEST(!revdesk::verify(new_secret, request.headers, request.body, now));
    BOOST_TEST(!revdesk::verify(old_secret, request.headers, request.body, now));
    BOOST_TEST(revdesk::verify("whsec_" + std::string(44, 'A'), request.headers, request.body,
                               now) != std::error_code());
}

namespace {

std::string const number_payload = R"({"id":4821,"phone_number":"+15551234567","area_code":"555",)"
                                   R"("status":"ACTIVE","organization_id":"org_1"})";

std::string webhook_id(revdesk::http::request const& r) {
    return std::string(*r.headers.find("webhook-id"));
}

} // namespace

BOOST_AUTO_TEST_CASE(attempts_list_newest_first_with_pages) {
    start();
    std::atomic<int> calls{0};
    receiver.respond_with([&calls](revdesk::http::request const&) {
        revdesk::http::response res;
        res.status = calls++ == 0 ? 503 : 200;
        res.body = res.status == 503 ? "busy" : "ok";
        return res;
    });
    auto api = as(env_key);
    auto reply = api.subscribe(hook("/attempts"), "number_purchased");
    BOOST_TEST_REQUIRE(reply.status == 201);
    auto id = std::string(reply.json().at("id").as_string());
    auto published = api.publish("number_purchased", number_payload);
    BOOST_TEST_REQUIRE(published.status == 202);
    auto event_id = std::string(published.json().at("id").as_string());
    BOOST_TEST_REQUIRE(receiver.wait_for("/attempts", 2));
    auto message_id = webhook_id(receiver.received_at("/attempts").front());

    auto path = "/api/v1/webhook_subscriptions/" + id + "/attempts";
    boost::json::value body;
    auto until = std::chrono::steady_clock::now() + 10s;
    do {
        body = api.get(path).json();
    } while (body.at("data").as_array().size() < 2 && std::chrono::steady_clock::now() < until);
    auto const& data = body.at("data").as_array();
    BOOST_TEST_REQUIRE(data.size() == 2u);
    BOOST_TEST(data[0].at("attempt").as_int64() == 2);
    BOOST_TEST(data[0].at("status").as_int64() == 200);
    BOOST_TEST(data[0].at("response_body_prefix").as_string() == "ok");
    BOOST_TEST(data[1].at("attempt").as_int64() == 1);
    BOOST_TEST(data[1].at("status").as_int64() == 503);
    BOOST_TEST(data[1].at("response_body_prefix").as_string() == "busy");
    for (auto const& item : data) {
        BOOST_TEST(std::string(item.at("id").as_string()).starts_with("att_"));
        BOOST_TEST(item.at("message_id").as_string() == message_id);
        BOOST_TEST(item.at("event_id").as_string() == event_id);
        BOOST_TEST(item.at("event_type").as_string() == "number_purchased");
        BOOST_TEST(item.at("error").is_null());
        BOOST_TEST(item.at("duration_ms").as_int64() >= 0);
        BOOST_TEST(revdesk::parse_utc_timestamp(std::string(item.at("started_at").as_string()))
                       .has_value());
    }
    BOOST_TEST(body.at("next_cursor").is_null());

    auto first = get(env_key, path + "?limit=1");
    auto first_body = first.json();
    BOOST_TEST_REQUIRE(first_body.at("data").as_array().size() == 1u);
    BOOST_TEST(first_body.at("data").at(0).at("attempt").as_int64() == 2);
    auto cursor = std::string(first_body.at("next_cursor").as_string());
    auto second = get(env_key, path + "?limit=1&cursor=" + cursor).json();
    BOOST_TEST_REQUIRE(second.at("data").as_array().size() == 1u);
    BOOST_TEST(second.at("data").at(0).at("attempt").as_int64() == 1);

    auto bad = get(env_key, path + "?cursor=nonsense");
    BOOST_TEST(bad.status == 400);
    BOOST_TEST(bad.json().at("error").at("code").as_string() == "invalid_cursor");
    BOOST_TEST(get(env_key, path + "?limit=0").status == 400);
}

BOOST_AUTO_TEST_CASE(redeliver_queues_new_messages_with_new_webhook_ids) {
    start();
    auto api = as(env_key);
    auto first = api.subscribe(hook("/one"), "number_purchased");
    auto second = api.subscribe(hook("/two"), "number_purchased");
    BOOST_TEST_REQUIRE(first.status == 201);
    BOOST_TEST_REQUIRE(second.status == 201);
    auto first_id = std::string(first.json().at("id").as_string());
    auto published = api.publish("number_purchased", number_payload);
    BOOST_TEST_REQUIRE(published.status == 202);
    auto event_id = std::string(published.json().at("id").as_string());
    BOOST_TEST_REQUIRE(receiver.wait_for("/one", 1));
    BOOST_TEST_REQUIRE(receiver.wait_for("/two", 1));
    auto path = "/api/v1/events/" + event_id + "/redeliver";

    auto all = send(env_key, "POST", path, "");
    BOOST_TEST_REQUIRE(all.status == 202, all.body);
    auto all_body = all.json();
    BOOST_TEST(all_body.at("message_ids").as_array().size() == 2u);
    BOOST_TEST_REQUIRE(receiver.wait_for("/one", 2));
    BOOST_TEST_REQUIRE(receiver.wait_for("/two", 2));
    auto one = receiver.received_at("/one");
    BOOST_TEST(webhook_id(one[0]) != webhook_id(one[1]));
    BOOST_TEST(one[0].body == one[1].body);
    std::set<std::string> queued;
    for (auto const& m : all_body.at("message_ids").as_array()) {
        queued.insert(std::string(m.as_string()));
    }
    BOOST_TEST(queued.contains(webhook_id(one[1])));

    auto single = send(env_key, "POST", path, R"({"subscription_id":")" + first_id + R"("})");
    BOOST_TEST_REQUIRE(single.status == 202, single.body);
    BOOST_TEST(single.json().at("message_ids").as_array().size() == 1u);
    BOOST_TEST(receiver.wait_for("/one", 3));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.count_at("/two") == 2u);

    auto stranger =
        send(env_key, "POST", path, R"({"subscription_id":"whk_)" + std::string(26, 'a') + R"("})");
    BOOST_TEST(stranger.status == 422);
    BOOST_TEST(send(env_key, "POST", path, R"({"colour":1})").status == 422);

    // Unknown events and other workspaces' events look the same.
    auto other_key = create_key("elsewhere");
    BOOST_TEST_REQUIRE(wait_for_status(other_key, 200));
    auto unknown_id = "evt_" + std::string(26, 'a');
    auto unknown = send(env_key, "POST", "/api/v1/events/" + unknown_id + "/redeliver", "");
    auto foreign = send(other_key, "POST", path, "");
    BOOST_TEST(unknown.status == 404);
    BOOST_TEST(foreign.status == 404);
    auto expected = unknown.body;
    expected.replace(expected.find(unknown_id), unknown_id.size(), event_id);
    BOOST_TEST(foreign.body == expected);
}

BOOST_AUTO_TEST_CASE(idempotency_key_repeats_first_answer_and_queues_nothing) {
    start();
    auto other_key = create_key("other");
    auto api = as(env_key);
    auto reply = api.subscribe(hook("/idem"), "number_purchased");
    BOOST_TEST_REQUIRE(reply.status == 201);
    auto body = R"({"event_type":"number_purchased","payload":)" + number_payload + "}";
    auto header = " -H " + quote("Idempotency-Key: order-7 retry/ok");

    auto first = send(env_key, "POST", "/api/v1/events", body, header);
    BOOST_TEST_REQUIRE(first.status == 202, first.body);
    auto again = send(env_key, "POST", "/api/v1/events", body, header);
    BOOST_TEST(again.status == 202);
    BOOST_TEST(again.body == first.body);
    BOOST_TEST(again.headers.find("Idempotent-Replayed: true") != std::string::npos);
    BOOST_TEST_REQUIRE(receiver.wait_for("/idem", 1));
    std::this_thread::sleep_for(500ms);
    BOOST_TEST(receiver.count_at("/idem") == 1u);

    // A different request with the same key is an error, and queues nothing either.
    auto changed = R"({"event_type":"number_purchased","payload":{"id":1,"phone_number":"+1555",)"
                   R"("area_code":"555","status":"ACTIVE","organization_id":"org_2"}})";
    auto reused = send(env_key, "POST", "/api/v1/events", changed, header);
    BOOST_TEST(reused.status == 422);
    BOOST_TEST(reused.json().at("error").at("code").as_string() == "idempotency_key_reused");

    // Keys belong to one workspace.
    BOOST_TEST_REQUIRE(wait_for_status(other_key, 200));
    auto elsewhere = send(other_key, "POST", "/api/v1/events", body, header);
    BOOST_TEST(elsewhere.status == 202);
    BOOST_TEST(elsewhere.json().at("id") != first.json().at("id"));

    std::vector<std::string> invalid{std::string(256, 'k'), "caf\xc3\xa9", "tab\there"};
    for (auto const& k : invalid) {
        BOOST_TEST_CONTEXT(k.size()) {
            auto bad = send(env_key, "POST", "/api/v1/events", body,
                            " -H " + quote("Idempotency-Key: " + k));
            BOOST_TEST(bad.status == 400);
            BOOST_TEST(bad.json().at("error").at("code").as_string() == "invalid_idempotency_key");
        }
    }
    auto longest = send(env_key, "POST", "/api/v1/events", body,
                        " -H " + quote("Idempotency-Key: " + std::string(255, 'k')));
    BOOST_TEST(longest.status == 202);
    BOOST_TEST(receiver.wait_for("/idem", 2));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.count_at("/idem") == 2u);
}

BOOST_AUTO_TEST_CASE(metrics_parse_with_prometheus_client) {
    start();
    auto api = as(env_key);
    BOOST_TEST_REQUIRE(api.subscribe(hook("/metrics"), "number_purchased").status == 201);
    BOOST_TEST_REQUIRE(api.publish("number_purchased", number_payload).status == 202);
    BOOST_TEST_REQUIRE(receiver.wait_for("/metrics", 1));
    api.get("/api/v1/webhook_subscriptions/whk_unknown");

    // The attempt is counted after the store records it, shortly after the receiver answers.
    std::string text;
    auto until = std::chrono::steady_clock::now() + 10s;
    do {
        auto scraped = curl(server->base_url() + "/metrics");
        BOOST_TEST_REQUIRE(scraped.status == 200);
        BOOST_TEST(scraped.headers.find("text/plain; version=0.0.4") != std::string::npos);
        text = scraped.body;
    } while (text.find("outcome=\"delivered\"") == std::string::npos &&
             std::chrono::steady_clock::now() < until);
    BOOST_TEST(text.find(env_key) == std::string::npos);

    auto parsed = parse_exposition(dir, text);
    auto value = [&parsed](std::string const& key) {
        auto const* v = parsed.if_contains(key);
        BOOST_TEST_REQUIRE(v, key);
        return v->is_double() ? v->as_double() : static_cast<double>(v->as_int64());
    };
    BOOST_TEST(value("revdesk_http_requests_total{method=POST,route=/api/v1/events,status=202}") ==
               1.0);
    BOOST_TEST(value("revdesk_http_requests_total{method=GET,route=/api/v1/webhook_subscriptions/"
                     "{id},status=404}") == 1.0);
    BOOST_TEST(value("revdesk_events_accepted_total{}") == 1.0);
    BOOST_TEST(value("revdesk_delivery_attempts_total{outcome=delivered}") == 1.0);
    BOOST_TEST(value("revdesk_attempt_duration_seconds_count{}") == 1.0);
    BOOST_TEST(value("revdesk_attempt_duration_seconds_bucket{le=+Inf}") == 1.0);
    BOOST_TEST(value("revdesk_attempt_duration_seconds_bucket{le=30}") == 1.0);
    BOOST_TEST(value("revdesk_attempt_duration_seconds_sum{}") >= 0.0);
    BOOST_TEST(value("revdesk_queue_depth{}") == 0.0);
    BOOST_TEST(value("revdesk_open_connections{}") >= 1.0);
    BOOST_TEST(parsed.at("type:revdesk_attempt_duration_seconds").as_string() == "histogram");
    BOOST_TEST(parsed.at("type:revdesk_http_requests").as_string() == "counter");
}

BOOST_AUTO_TEST_CASE(metrics_escape_label_values) {
    revdesk::server::metrics stats;
    std::string route = "/a\"b\\c\nd";
    stats.count_request("GET", route, 200);
    stats.count_attempt(0.003, "delivered");
    stats.count_attempt(99.0, "failed");
    auto parsed = parse_exposition(dir, stats.render(3, 1, 2));
    auto const* count = parsed.if_contains("revdesk_http_requests_total{method=GET,route=" + route +
                                           ",status=200}");
    BOOST_TEST_REQUIRE(count != nullptr);
    BOOST_TEST(count->to_number<double>() == 1.0);
    BOOST_TEST(parsed.at("revdesk_attempt_duration_seconds_bucket{le=0.005}").to_number<double>() ==
               1.0);
    BOOST_TEST(parsed.at("revdesk_attempt_duration_seconds_bucket{le=30}").to_number<double>() ==
               1.0);
    BOOST_TEST(parsed.at("revdesk_attempt_duration_seconds_bucket{le=+Inf}").to_number<double>() ==
               2.0);
    BOOST_TEST(parsed.at("revdesk_attempt_duration_seconds_sum{}").to_number<double>() == 99.003);
    BOOST_TEST(parsed.at("revdesk_queue_depth{}").to_number<double>() == 3.0);
    BOOST_TEST(parsed.at("revdesk_attempts_in_flight{}").to_number<double>() == 1.0);
    BOOST_TEST(parsed.at("revdesk_open_connections{}").to_number<double>() == 2.0);
}

BOOST_AUTO_TEST_SUITE_END()
