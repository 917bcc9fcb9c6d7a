// Holds docs/openapi.yaml to the server. The documented operations must be exactly the routes
// of the server's route table, and each documented operation, sent to the real revdesk-server
// binary with the real curl, must reach its route and return a documented status with the
// documented body and headers. The deliveries the server makes meanwhile must match the
// file's webhooks.
#include "../../reference-server/api.hpp"

#define BOOST_TEST_MODULE openapi_routes
#include <boost/test/unit_test.hpp>

#include "../support/receiver.hpp"
#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

using revdesk::test::curl;
using revdesk::test::curl_reply;
using revdesk::test::quote;

namespace {

std::string const key = "openapi-routes-test-key-7d31";

// Runs `command` and returns its output and exit status, whatever the status.
std::pair<std::string, int> run(std::string const& command) {
    auto out = revdesk::test::shell(command + " 2>&1; echo \"exit=$?\"");
    auto at = out.rfind("exit=");
    return {out.substr(0, at), std::stoi(out.substr(at + 5))};
}

// The operations of docs/openapi.yaml, as openapi_check.py prints them.
boost::json::array documented_operations() {
    auto [out, status] = run("python3 " + quote(REVDESK_OPENAPI_CHECK) + " operations " +
                             quote(REVDESK_OPENAPI_FILE));
    BOOST_TEST_REQUIRE(status == 0, out);
    return boost::json::parse(out).as_array();
}

std::string method_and_path(std::string_view method, std::string_view path) {
    return std::string(method) + " " + std::string(path);
}

// Reads the header block curl wrote with -D into lowercase names and values.
std::map<std::string, std::string> header_map(std::string const& block) {
    std::map<std::string, std::string> out;
    std::size_t at = block.find('\n'); // past the status line
    while (at != std::string::npos && at + 1 < block.size()) {
        auto end = block.find('\n', at + 1);
        auto line = block.substr(at + 1, end == std::string::npos ? end : end - at - 1);
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
        auto colon = line.find(':');
        if (colon != std::string::npos) {
            auto name = line.substr(0, colon);
            for (auto& c : name) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            auto value = line.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            out[name] = value;
        }
        at = end;
    }
    return out;
}

// Whether `reply` is the response to a path that no route serves.
bool is_unknown_route(curl_reply const& reply) {
    return reply.status == 404 &&
           reply.body.find("\"no such endpoint: ") != std::string::npos;
}

struct probe_fixture {
    revdesk::test::temp_dir dir;
    revdesk::test::receiver receiver; // plain HTTP; the server runs with --allow-http
    std::unique_ptr<revdesk::test::server_process> server;
    boost::json::array recorded;

    probe_fixture() {
        server = std::make_unique<revdesk::test::server_process>(
            REVDESK_SERVER_PATH,
            std::vector<std::string>{"--store", "sqlite:" + dir.file("revdesk.db"),
                                     "--allow-http", "--allow-target", "127.0.0.1/32",
                                     "--retry-schedule", "1s"},
            key, dir.file("server.log"));
    }

    std::string hook(std::string const& path) const {
        return "http://127.0.0.1:" + std::to_string(receiver.port()) + path;
    }

    // Sends one request with curl and records the response for openapi_check.py.
    curl_reply send(std::string const& method, std::string const& path_template,
                    std::string const& path, std::string const& body, bool with_key,
                    std::string const& probe) {
        std::string args = method == "HEAD" ? "-I " : "-X " + method + " ";
        args += quote(server->base_url() + path);
        if (with_key) {
            args += " -H " + quote("Authorization: Bearer " + key);
        }
        if (!body.empty()) {
            auto file = dir.file("body.json");
            std::ofstream(file, std::ios::binary) << body;
            args += " -H 'Content-Type: application/json' --data-binary @" + quote(file);
        }
        auto reply = curl(args);
        boost::json::object headers;
        for (auto const& [name, value] : header_map(reply.headers)) {
            headers[name] = value;
        }
        recorded.push_back(boost::json::object{{"method", method},
                                               {"path", path_template},
                                               {"probe", probe},
                                               {"status", reply.status},
                                               {"headers", std::move(headers)},
                                               {"body", reply.body}});
        return reply;
    }

    // Runs openapi_check.py on everything recorded and on the deliveries received.
    void check_recorded() {
        boost::json::array deliveries;
        for (auto const& r : receiver.received()) {
            boost::json::object headers;
            for (auto const& f : r.headers) {
                headers[f.name] = f.value;
            }
            deliveries.push_back(
                boost::json::object{{"headers", std::move(headers)}, {"body", r.body}});
        }
        BOOST_TEST(!deliveries.empty());
        auto file = dir.file("recorded.json");
        std::ofstream(file, std::ios::binary) << boost::json::serialize(boost::json::object{
            {"responses", recorded}, {"deliveries", std::move(deliveries)}});
        auto [out, status] = run("python3 " + quote(REVDESK_OPENAPI_CHECK) + " check " +
                                 quote(REVDESK_OPENAPI_FILE) + " " + quote(file));
        BOOST_TEST_MESSAGE(out);
        BOOST_TEST(status == 0, out);
    }
};

// An id of the right form that no store holds.
std::string const unknown_subscription = "whk_aaaaaaaaaaaaaaaaaaaaaaaaaa";
std::string const unknown_event = "evt_aaaaaaaaaaaaaaaaaaaaaaaaaa";

std::string replace_id(std::string path, std::string const& id) {
    auto at = path.find("{id}");
    if (at != std::string::npos) {
        path.replace(at, 4, id);
    }
    return path;
}

} // namespace

BOOST_AUTO_TEST_SUITE(openapi)

BOOST_AUTO_TEST_CASE(documented_operations_are_the_route_table) {
    std::set<std::string> documented;
    for (auto const& op : documented_operations()) {
        auto const& o = op.as_object();
        auto name = method_and_path(o.at("method").as_string(), o.at("path").as_string());
        BOOST_TEST(documented.insert(name).second, name << " is documented twice");
        auto const* r = revdesk::server::find_route(std::string(o.at("method").as_string()),
                                                    std::string(o.at("path").as_string()));
        BOOST_TEST(r != nullptr, name << " is documented but the server has no such route");
        if (r) {
            BOOST_TEST(o.at("secured").as_bool() == r->needs_key,
                       name << ": the file and the route table disagree on the API key");
        }
    }
    for (auto const& r : revdesk::server::routes) {
        auto name = method_and_path(r.method, r.path);
        BOOST_TEST(documented.contains(name), name << " is served but missing from the file");
    }
}

BOOST_FIXTURE_TEST_CASE(every_documented_operation_answers_as_documented, probe_fixture) {
    revdesk::test::api_session api(server->base_url(), key);
    auto operations = documented_operations();

    // DELETE last, so that the other probes find the subscription.
    std::stable_sort(operations.begin(), operations.end(), [](auto const& a, auto const& b) {
        return a.as_object().at("method").as_string() != "DELETE" &&
               b.as_object().at("method").as_string() == "DELETE";
    });

    std::map<std::string, std::set<std::string>> methods_of_path;
    for (auto const& op : operations) {
        auto const& o = op.as_object();
        auto method = std::string(o.at("method").as_string());
        auto path = std::string(o.at("path").as_string());
        methods_of_path[path].insert(method);
        auto name = method_and_path(method, path);

        // Each operation gets its own subscription and event, so that a DELETE or a rotation
        // cannot change the state another probe reads.
        auto created = api.subscribe(hook("/hooks"), "call_completed");
        BOOST_TEST_REQUIRE(created.status == 201, created.body);
        auto subscription = std::string(created.json().at("id").as_string());
        auto published = api.publish(
            "call_completed",
            R"({"id":"call_1","from_number":"+15551234567","to_number":"+15557654321",)"
            R"("direction":"outbound","duration_seconds":0,"status":"BUSY","failure_code":null,)"
            R"("failure_category":"busy","disconnection_reason":null,)"
            R"("created_at":"2026-06-30T19:30:00.000Z"})");
        BOOST_TEST_REQUIRE(published.status == 202, published.body);
        auto event = std::string(published.json().at("id").as_string());
        bool of_event = path.starts_with("/api/v1/events/");

        // The documented example body; webhook URLs point at this test's receiver.
        std::string body;
        if (o.at("has_body").as_bool() && !o.at("example").is_null()) {
            auto example = o.at("example").as_object();
            if (example.contains("webhook_url")) {
                example["webhook_url"] = hook("/example");
            }
            body = boost::json::serialize(example);
        }

        auto statuses = o.at("statuses").as_array();
        auto documented = [&](int status) {
            return std::find(statuses.begin(), statuses.end(), boost::json::value(status)) !=
                   statuses.end();
        };

        // The example, with real ids: a documented success.
        auto ok = send(method, path, replace_id(path, of_event ? event : subscription), body,
                       true, "example");
        BOOST_TEST(!is_unknown_route(ok), name << " is not served: " << ok.body);
        BOOST_TEST(documented(ok.status), name << " answered " << ok.status << ": " << ok.body);
        BOOST_TEST((ok.status >= 200 && ok.status < 300), name << " answered " << ok.status
                                                                 << ": " << ok.body);

        if (path.find("{id}") != std::string::npos) {
            auto missing = send(method, path,
                                replace_id(path, of_event ? unknown_event : unknown_subscription),
                                body, true, "unknown id");
            BOOST_TEST(!is_unknown_route(missing), name << ": " << missing.body);
            BOOST_TEST(missing.status == 404, name << " answered " << missing.status);
        }
        if (o.at("secured").as_bool()) {
            auto anonymous = send(method, path, replace_id(path, subscription), body, false,
                                  "without a key");
            BOOST_TEST(anonymous.status == 401, name << " answered " << anonymous.status);
        }
        if (o.at("has_body").as_bool() && method != "GET") {
            auto malformed = send(method, path, replace_id(path, of_event ? event : subscription),
                                  "{\"x\":", true, "malformed body");
            BOOST_TEST(malformed.status == 400, name << " answered " << malformed.status);
        }
    }

    // Every other method on a documented path answers 405 and names the documented methods.
    for (auto const& [path, methods] : methods_of_path) {
        for (std::string method : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}) {
            if (methods.contains(method)) {
                continue;
            }
            auto reply = send(method, path, replace_id(path, unknown_subscription), "", true,
                              "undocumented method");
            recorded.pop_back(); // not an operation of the file, so nothing to check it against
            BOOST_TEST(reply.status == 405, method << " " << path << " answered " << reply.status);
            std::set<std::string> allowed;
            auto allow = header_map(reply.headers)["allow"];
            for (std::size_t at = 0; at < allow.size();) {
                auto end = std::min(allow.find(", ", at), allow.size());
                allowed.insert(allow.substr(at, end - at));
                at = end + 2;
            }
            BOOST_TEST((allowed == methods), method << " " << path << ": Allow " << allow);
        }
    }

    // A first delivery for every subscription has been attempted by now or soon.
    receiver.wait_for("/hooks", 1);
    check_recorded();
}

BOOST_AUTO_TEST_SUITE_END()
