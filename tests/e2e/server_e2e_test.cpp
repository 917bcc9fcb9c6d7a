// End to end: the real revdesk-server binary, a real HTTPS receiver on loopback with a
// certificate generated here, a real SQLite file, and the API driven with the real curl.
#include <revdesk/signing.hpp>

#define BOOST_TEST_MODULE server_e2e
#include <boost/test/unit_test.hpp>

#include "../support/receiver.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <boost/json.hpp>

#include <chrono>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using revdesk::test::curl;
using revdesk::test::curl_reply;
using revdesk::test::quote;

namespace {

std::string const api_key = "e2e-test-key-7f3a";

std::string const voicemail_call = R"({
  "id": "call_abc123",
  "from_number": "+15551234567",
  "to_number": "+15557654321",
  "direction": "outbound",
  "duration_seconds": 0,
  "status": "VOICEMAIL",
  "failure_code": "voicemail_reached",
  "failure_category": "voicemail",
  "disconnection_reason": null,
  "created_at": "2026-06-30T19:30:00.000Z"
})";

std::string const answered_call =
    R"({"id":"call_ok1","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","duration_seconds":73,"status":"COMPLETED","failure_code":null,)"
    R"("failure_category":null,"disconnection_reason":"hangup","created_at":"2026-06-30T19:31:00.000Z"})";

std::string const number_event =
    R"({"id":4821,"phone_number":"+15551234567","area_code":"555","status":"ACTIVE","organization_id":"org_1"})";

std::string const sms_event =
    R"({"id":"msg_uuid","phone_number":"+15557654321","from_number":"+15551234567",)"
    R"("direction":"outbound","status":"delivered","provider_id":"SM123","error_message":null,)"
    R"("channel":"sms","created_at":"2026-06-30T19:30:00.000Z"})";

struct e2e {
    revdesk::test::test_certificates certs;
    revdesk::test::temp_dir dir;
    revdesk::test::receiver receiver{certs.cert_file, certs.key_file};
    std::string database = dir.file("revdesk.db");
    std::unique_ptr<revdesk::test::server_process> server;

    e2e() { start(); }

    void start() {
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", "sqlite:" + database, "--ca-file", certs.ca_file,
                                     "--allow-target", "127.0.0.1/32", "--retry-schedule", "1s"},
            api_key, dir.file("server.log"));
    }

    std::string hook(std::string const& path) const {
        return "https://127.0.0.1:" + std::to_string(receiver.port()) + path;
    }

    std::string auth() const { return "-H " + quote("Authorization: Bearer " + api_key); }

    curl_reply subscribe(std::string const& url, std::string const& type) const {
        auto body = R"({ "webhook_url": ")" + url + R"(", "event_type": ")" + type + R"(" })";
        return curl("-X POST " + server->base_url() + "/api/v1/webhook_subscriptions " + auth() +
                    " -H 'Content-Type: application/json' -d " + quote(body));
    }

    curl_reply publish(std::string const& type, std::string const& payload) const {
        auto body = R"({"event_type":")" + type + R"(","payload":)" + payload + "}";
        return curl("-X POST " + server->base_url() + "/api/v1/events " + auth() +
                    " -H 'Content-Type: application/json' -d " + quote(body));
    }

    std::string subscribed_id(std::string const& url, std::string const& type) const {
        auto reply = subscribe(url, type);
        BOOST_TEST_REQUIRE(reply.status == 201, reply.body);
        return std::string(reply.json().at("id").as_string());
    }

    std::string count_rows(std::string const& table) const {
        return revdesk::test::shell("sqlite3 " + quote(database) + " 'select count(*) from " +
                                    table + "'");
    }
};

std::string header(revdesk::http::request const& r, std::string_view name) {
    auto v = r.headers.find(name);
    return v ? std::string(*v) : std::string();
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(server, e2e)

BOOST_AUTO_TEST_CASE(subscribe_with_documented_command) {
    // The API's own subscribe command, with only the host and the receiver URL replaced.
    auto reply = curl("-X POST " + server->base_url() + "/api/v1/webhook_subscriptions \\\n  -H " +
                      quote("Authorization: Bearer " + api_key) +
                      " \\\n  -H \"Content-Type: application/json\" \\\n  -d " +
                      quote(R"({ "webhook_url": ")" + hook("/hooks/revdesk") +
                            R"(", "event_type": "call_completed" })"));
    BOOST_TEST(reply.status == 201);
    auto body = reply.json().as_object();
    BOOST_TEST(std::string(body.at("id").as_string()).starts_with("whk_"));
    BOOST_TEST(body.at("id").as_string().size() >= 4u + 26u);
    BOOST_TEST(body.at("webhook_url").as_string() == hook("/hooks/revdesk"));
    BOOST_TEST(body.at("event_type").as_string() == "call_completed");
    BOOST_TEST(std::string(body.at("secret").as_string()).starts_with("whsec_"));
}

BOOST_AUTO_TEST_CASE(fan_out_to_two_subscriptions) {
    auto first = subscribe(hook("/a"), "sms_delivered").json();
    auto second = subscribe(hook("/b"), "sms_delivered").json();
    auto other = subscribed_id(hook("/other"), "sms_failed");
    (void)other;

    auto reply = publish("sms_delivered", sms_event);
    BOOST_TEST_REQUIRE(reply.status == 202, reply.body);
    BOOST_TEST(std::string(reply.json().at("id").as_string()).starts_with("evt_"));
    BOOST_TEST(reply.json().at("deliveries").as_int64() == 2);

    BOOST_TEST_REQUIRE(receiver.wait_for("/a", 1));
    BOOST_TEST_REQUIRE(receiver.wait_for("/b", 1));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.received_at("/other").empty());

    for (auto const& [path, created] : {std::pair{"/a", first}, std::pair{"/b", second}}) {
        BOOST_TEST_CONTEXT("receiver " << path) {
            auto got = receiver.received_at(path);
            BOOST_TEST_REQUIRE(got.size() == 1u);
            auto const& r = got[0];
            BOOST_TEST(r.method == "POST");
            BOOST_TEST(r.body == sms_event);
            BOOST_TEST(header(r, "Content-Type") == "application/json");
            BOOST_TEST(header(r, "RevDesk-Event-Type") == "sms_delivered");
            BOOST_TEST(header(r, "User-Agent").starts_with("revdesk-webhooks/"));
            BOOST_TEST(header(r, "webhook-id").starts_with("msg_"));
            auto secret = std::string(created.at("secret").as_string());
            auto verified =
                revdesk::verify(secret, r.headers, r.body, std::chrono::system_clock::now());
            BOOST_TEST(!verified, verified.message());
        }
    }
    BOOST_TEST(header(receiver.received_at("/a")[0], "webhook-id") !=
               header(receiver.received_at("/b")[0], "webhook-id"));
}

BOOST_AUTO_TEST_CASE(voicemail_call_emits_completed_and_voicemail) {
    subscribed_id(hook("/completed"), "call_completed");
    subscribed_id(hook("/voicemail"), "call_voicemail");
    subscribed_id(hook("/busy"), "call_busy");

    auto reply = publish("call_completed", voicemail_call);
    BOOST_TEST_REQUIRE(reply.status == 202, reply.body);
    auto types = reply.json().at("event_types").as_array();
    BOOST_TEST_REQUIRE(types.size() == 2u);
    BOOST_TEST(types[0].as_string() == "call_completed");
    BOOST_TEST(types[1].as_string() == "call_voicemail");

    BOOST_TEST_REQUIRE(receiver.wait_for("/completed", 1));
    BOOST_TEST_REQUIRE(receiver.wait_for("/voicemail", 1));
    auto completed = receiver.received_at("/completed")[0];
    auto voicemail = receiver.received_at("/voicemail")[0];
    BOOST_TEST(completed.body == voicemail.body);
    BOOST_TEST(completed.body == voicemail_call);
    BOOST_TEST(header(completed, "RevDesk-Event-Type") == "call_completed");
    BOOST_TEST(header(voicemail, "RevDesk-Event-Type") == "call_voicemail");

    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.received_at("/busy").empty());
}

BOOST_AUTO_TEST_CASE(answered_call_emits_only_completed) {
    subscribed_id(hook("/completed"), "call_completed");
    for (auto type : {"call_no_answer", "call_voicemail", "call_busy", "call_failed"}) {
        subscribed_id(hook(std::string("/") + type), type);
    }

    auto reply = publish("call_completed", answered_call);
    BOOST_TEST_REQUIRE(reply.status == 202, reply.body);
    BOOST_TEST(reply.json().at("event_types").as_array().size() == 1u);

    BOOST_TEST_REQUIRE(receiver.wait_for("/completed", 1));
    std::this_thread::sleep_for(300ms);
    BOOST_TEST(receiver.received().size() == 1u);
}

BOOST_AUTO_TEST_CASE(number_event_id_arrives_as_integer) {
    subscribed_id(hook("/numbers"), "number_purchased");
    BOOST_TEST_REQUIRE(publish("number_purchased", number_event).status == 202);

    BOOST_TEST_REQUIRE(receiver.wait_for("/numbers", 1));
    auto body = receiver.received_at("/numbers")[0].body;
    BOOST_TEST(body == number_event);
    auto id = boost::json::parse(body).at("id");
    BOOST_TEST(id.is_int64());
    BOOST_TEST(id.as_int64() == 4821);
}

BOOST_AUTO_TEST_CASE(unsubscribe_stops_deliveries) {
    auto id = subscribed_id(hook("/gone"), "contact_created");
    auto url = server->base_url() + "/api/v1/webhook_subscriptions/" + id;

    auto deleted = curl("-X DELETE " + url + " " + auth());
    BOOST_TEST(deleted.status == 204);
    BOOST_TEST(deleted.body.empty());
    BOOST_TEST(curl("-X DELETE " + url + " " + auth()).status == 404);

    auto contact =
        R"({"id":"ct_1","phone_number":"+15557654321","first_name":"Ada","last_name":null,)"
        R"("email":null,"created_at":"2026-06-30T19:30:00.000Z"})";
    auto reply = publish("contact_created", contact);
    BOOST_TEST(reply.status == 202, reply.body);
    std::this_thread::sleep_for(500ms);
    BOOST_TEST(receiver.received_at("/gone").empty());
}

BOOST_AUTO_TEST_CASE(restart_keeps_subscriptions) {
    auto id = subscribed_id(hook("/kept"), "number_released");
    BOOST_TEST(server->stop(SIGTERM) == 0);
    start();

    auto got = curl(server->base_url() + "/api/v1/webhook_subscriptions/" + id + " " + auth());
    BOOST_TEST(got.status == 200);
    BOOST_TEST(got.json().at("id").as_string() == id);

    BOOST_TEST_REQUIRE(publish("number_released", number_event).status == 202);
    BOOST_TEST(receiver.wait_for("/kept", 1));
}

BOOST_AUTO_TEST_CASE(error_statuses) {
    auto const& base = server->base_url();
    auto subscriptions = base + "/api/v1/webhook_subscriptions";
    auto json = std::string(" -H 'Content-Type: application/json' -d ");
    struct row {
        std::string name;
        std::string arguments;
        int status;
        std::string code;
        std::string mentions = ""; // text the message must contain, such as the bad value
    };
    std::vector<row> rows{
        {"bad JSON", "-X POST " + subscriptions + " " + auth() + json + quote("{\"webhook_url\":"),
         400, "invalid_json"},
        {"unknown event type",
         "-X POST " + subscriptions + " " + auth() + json +
             quote(R"({"webhook_url":")" + hook("/x") + R"(","event_type":"Call_Completed"})"),
         422, "invalid_event_type"},
        {"http URL",
         "-X POST " + subscriptions + " " + auth() + json +
             quote(R"({"webhook_url":"http://127.0.0.1/x","event_type":"new_call"})"),
         422, "invalid_webhook_url"},
        {"private address",
         "-X POST " + subscriptions + " " + auth() + json +
             quote(R"({"webhook_url":"https://10.1.2.3/x","event_type":"new_call"})"),
         422, "invalid_webhook_url"},
        {"missing URL",
         "-X POST " + subscriptions + " " + auth() + json + quote(R"({"event_type":"new_call"})"),
         422, "missing_member"},
        {"misspelled member",
         "-X POST " + subscriptions + " " + auth() + json +
             quote(R"({"webook_url":")" + hook("/x") + R"(","event_type":"new_call"})"),
         422, "unknown_member"},
        {"missing key", "-X POST " + subscriptions + json + quote("{}"), 401, "unauthorized"},
        {"wrong key",
         "-X POST " + subscriptions + " -H 'Authorization: Bearer nope'" + json + quote("{}"), 401,
         "unauthorized"},
        {"other scheme",
         "-X POST " + subscriptions + " -H 'Authorization: Basic nope'" + json + quote("{}"), 401,
         "unauthorized", "Bearer scheme"},
        {"URL not a string",
         "-X POST " + subscriptions + " " + auth() + json +
             quote(R"({"webhook_url":5,"event_type":"new_call"})"),
         422, "invalid_member", "not a number"},
        {"payload not an object",
         "-X POST " + base + "/api/v1/events " + auth() + json +
             quote(R"({"event_type":"call_completed","payload":[]})"),
         422, "invalid_member", "not an array"},
        {"missing payload",
         "-X POST " + base + "/api/v1/events " + auth() + json +
             quote(R"({"event_type":"call_completed"})"),
         422, "missing_member", "payload is required"},
        {"unknown id", "-X DELETE " + subscriptions + "/whk_aaaaaaaaaaaaaaaaaaaaaaaaaa " + auth(),
         404, "not_found"},
        {"unknown path", base + "/api/v1/nothing " + auth(), 404, "not_found"},
        {"wrong method", "-X GET " + base + "/api/v1/events " + auth(), 405, "method_not_allowed"},
        {"wrong media type",
         "-X POST " + subscriptions + " " + auth() + " -H 'Content-Type: text/plain' -d x", 415,
         "unsupported_media_type", "got Content-Type \"text/plain\""},
        {"two media types",
         "-X POST " + subscriptions + " " + auth() + json + quote("{}") +
             " -H 'Content-Type: text/plain'",
         400, "invalid_header", "more than one Content-Type"},
        {"other charset",
         "-X POST " + subscriptions + " " + auth() +
             " -H 'Content-Type: application/json; charset=latin1' -d " + quote("{}"),
         415, "unsupported_media_type", "got charset \"latin1\""},
        {"UTF-8 charset accepted",
         "-X POST " + subscriptions + " " + auth() +
             " -H 'Content-Type: application/json; charset=\"UTF-8\"' -d " + quote("{}"),
         422, "missing_member", "webhook_url is required"},
        {"derived event type",
         "-X POST " + base + "/api/v1/events " + auth() + json +
             quote(R"({"event_type":"call_voicemail","payload":)" + voicemail_call + "}"),
         422, "derived_event_type"},
    };
    for (auto const& r : rows) {
        BOOST_TEST_CONTEXT(r.name) {
            auto reply = curl(r.arguments);
            BOOST_TEST(reply.status == r.status);
            auto error = reply.json().at("error").as_object();
            BOOST_TEST(error.at("code").as_string() == r.code);
            std::string message(error.at("message").as_string());
            BOOST_TEST(!message.empty());
            BOOST_TEST(message.find(r.mentions) != std::string::npos, message);
            BOOST_TEST(error.contains("field"));
            if (r.status == 401) {
                BOOST_TEST(reply.headers.find("WWW-Authenticate: Bearer") != std::string::npos);
            }
        }
    }

    // A body beyond the limit is refused from its declared length.
    revdesk::test::temp_dir big;
    {
        std::ofstream out(big.file("big.json"));
        out << R"({"webhook_url":")" << std::string(2 * 1024 * 1024, 'a') << R"("})";
    }
    auto too_large =
        curl("-X POST " + subscriptions + " " + auth() + json + "@" + big.file("big.json"));
    BOOST_TEST(too_large.status == 413);

    // Nothing of the rejected requests was stored.
    BOOST_TEST(count_rows("subscriptions") == "0\n");
    BOOST_TEST(count_rows("events") == "0\n");

    // The server is still serving.
    BOOST_TEST(curl(base + "/healthz").status == 200);
}

BOOST_AUTO_TEST_CASE(second_server_on_same_file_refused) {
    std::string log;
    try {
        revdesk::test::server_process second(
            REVDESK_SERVER_PATH, std::vector<std::string>{"--store", "sqlite:" + database}, api_key,
            dir.file("second.log"));
        BOOST_FAIL("a second server started on the same SQLite file");
    } catch (std::runtime_error const& e) {
        log = e.what();
    }
    BOOST_TEST(log.find("another revdesk-server is already using") != std::string::npos, log);

    // The first server is unaffected.
    BOOST_TEST(curl(server->base_url() + "/healthz").status == 200);
}

BOOST_AUTO_TEST_SUITE_END()
