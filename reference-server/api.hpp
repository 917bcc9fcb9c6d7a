// The reference server's HTTP API: routing, authentication, input checks and JSON answers.
#pragma once

#include <revdesk/catalog.hpp>
#include <revdesk/destination.hpp>
#include <revdesk/dispatcher.hpp>
#include <revdesk/http/client.hpp>
#include <revdesk/http/message.hpp>
#include <revdesk/http/server.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/json_input.hpp>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <asio/awaitable.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace revdesk::server {

/// A JSON error answer: `{"error":{"code","message","field"}}`.
struct api_error {
    int status;
    std::string code;
    std::string message;
    std::string field; // empty when the error is not about one field
};

/// Returns the HTTP response for an error.
inline http::response error_response(api_error const& e) {
    boost::json::object inner;
    inner["code"] = e.code;
    inner["message"] = e.message;
    inner["field"] = e.field.empty() ? boost::json::value(nullptr) : boost::json::value(e.field);
    boost::json::object outer;
    outer["error"] = std::move(inner);

    http::response res;
    res.status = e.status;
    res.headers.add("Content-Type", "application/json");
    res.body = boost::json::serialize(outer);
    return res;
}

/// Returns a JSON response with `status` and `body`.
inline http::response json_response(int status, boost::json::value const& body) {
    http::response res;
    res.status = status;
    res.headers.add("Content-Type", "application/json");
    res.body = boost::json::serialize(body);
    return res;
}

/// API keys and the workspace each belongs to. Keys are kept only as SHA-256 digests, so a key
/// cannot be read back from memory dumps of this table.
class key_ring {
public:
    /// Adds `key` as a key of `workspace`.
    void add(std::string_view key, std::string workspace) {
        by_digest_[digest(key)] = std::move(workspace);
    }

    /// Returns the workspace of `key`, or nothing for an unknown key. The lookup goes by digest,
    /// so its timing does not depend on how much of a guessed key is right.
    std::optional<std::string> find(std::string_view key) const {
        auto it = by_digest_.find(digest(key));
        if (it == by_digest_.end()) {
            return std::nullopt;
        }
        return it->second;
    }

    bool empty() const noexcept { return by_digest_.empty(); }

private:
    static std::string digest(std::string_view key) {
        std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
        unsigned int length = 0;
        EVP_Digest(key.data(), key.size(), out.data(), &length, EVP_sha256(), nullptr);
        return std::string(reinterpret_cast<char const*>(out.data()), length);
    }

    std::map<std::string, std::string> by_digest_;
};

/// Serves the webhook API on top of a dispatcher.
class api {
public:
    /// `resolve` resolves the host names of new webhook URLs, which are rejected when any of
    /// their addresses is; an empty function uses the system resolver.
    api(dispatcher& d, key_ring const& keys, address_policy const& policy, bool allow_http,
        http::resolve_function resolve = {})
        : dispatcher_(d)
        , keys_(keys)
        , policy_(policy)
        , allow_http_(allow_http)
        , resolve_(std::move(resolve)) {}

    /// Answers one request. Never throws for bad input; a store failure propagates and the HTTP
    /// server answers 500.
    asio::awaitable<http::response> handle(http::request& req, http::request_context const&) {
        auto path = std::string_view(req.target).substr(0, req.target.find('?'));
        constexpr std::string_view subscriptions = "/api/v1/webhook_subscriptions";

        if (path == "/healthz") {
            if (req.method != "GET" && req.method != "HEAD") {
                co_return method_not_allowed("GET, HEAD");
            }
            co_return json_response(200, boost::json::object{{"status", "ok"}});
        }

        if (path == subscriptions) {
            if (req.method != "POST") {
                co_return method_not_allowed("POST");
            }
            auto workspace = authenticate(req);
            if (!workspace) {
                co_return unauthorized(req);
            }
            co_return co_await create_subscription(req, *workspace);
        }

        if (path.starts_with(subscriptions) && path.size() > subscriptions.size() &&
            path[subscriptions.size()] == '/') {
            auto id = path.substr(subscriptions.size() + 1);
            if (id.find('/') != std::string_view::npos) {
                co_return not_found_route(path);
            }
            if (req.method != "DELETE" && req.method != "GET") {
                co_return method_not_allowed("GET, DELETE");
            }
            auto workspace = authenticate(req);
            if (!workspace) {
                co_return unauthorized(req);
            }
            if (req.method == "GET") {
                co_return get_subscription(std::string(id), *workspace);
            }
            co_return co_await delete_subscription(std::string(id), *workspace);
        }

        if (path == "/api/v1/events") {
            if (req.method != "POST") {
                co_return method_not_allowed("POST");
            }
            auto workspace = authenticate(req);
            if (!workspace) {
                co_return unauthorized(req);
            }
            co_return co_await publish_event(req, *workspace);
        }

        co_return not_found_route(path);
    }

private:
    std::optional<std::string> authenticate(http::request const& req) const {
        auto header = req.headers.find("Authorization");
        if (!header || req.headers.count("Authorization") != 1) {
            return std::nullopt;
        }
        constexpr std::string_view scheme = "Bearer ";
        if (header->size() <= scheme.size() ||
            !http::iequals(header->substr(0, scheme.size()), scheme)) {
            return std::nullopt;
        }
        return keys_.find(header->substr(scheme.size()));
    }

    static http::response unauthorized(http::request const& req) {
        bool present = req.headers.find("Authorization").has_value();
        auto res = error_response(
            {401, "unauthorized",
             present ? "the API key is not valid; send Authorization: Bearer <key> with a key of "
                       "this server"
                     : "missing API key; send Authorization: Bearer <key>",
             ""});
        res.headers.add("WWW-Authenticate", R"(Bearer realm="revdesk")");
        return res;
    }

    static http::response method_not_allowed(std::string_view allowed) {
        auto res = error_response(
            {405, "method_not_allowed", "this path accepts only " + std::string(allowed), ""});
        res.headers.add("Allow", std::string(allowed));
        return res;
    }

    static http::response not_found_route(std::string_view path) {
        return error_response({404, "not_found", "no such endpoint: " + std::string(path), ""});
    }

    static http::response subscription_not_found(std::string_view id) {
        return error_response(
            {404, "not_found", "no webhook subscription with id " + std::string(id), "id"});
    }

    // Checks the media type and parses the body as one JSON object.
    static std::variant<boost::json::object, api_error> read_json_object(http::request const& req) {
        auto type = req.headers.find("Content-Type");
        auto media = type ? type->substr(0, type->find(';')) : std::string_view();
        while (!media.empty() && media.back() == ' ') {
            media.remove_suffix(1);
        }
        if (!type || !http::iequals(media, "application/json")) {
            return api_error{415, "unsupported_media_type",
                             "send the body as JSON with Content-Type: application/json", ""};
        }

        json_input::options options;
        options.require_object = true;
        auto parsed = json_input::parse_strict(req.body, options);
        if (auto* p = std::get_if<json_input::problem>(&parsed)) {
            int status = p->code == "body_too_large" ? 413 : 400;
            return api_error{status, p->code, p->message, p->field};
        }
        return std::get<boost::json::value>(std::move(parsed)).as_object();
    }

    // Reads an optional scope identifier (`workflow_id`, `campaign_id`) from the raw body.
    static std::variant<std::optional<scope_id>, api_error> read_scope(std::string_view body,
                                                                       std::string_view name) {
        auto raw = json_input::raw_member(body, name);
        if (!raw || *raw == "null") {
            return std::optional<scope_id>{};
        }
        auto read = json_input::read_identifier(*raw, name);
        if (auto* p = std::get_if<json_input::problem>(&read)) {
            return api_error{422, p->code, p->message, std::string(name)};
        }
        auto& id = std::get<json_input::identifier>(read);
        return std::optional<scope_id>(scope_id{std::move(id.text), id.is_number});
    }

    static std::optional<api_error>
    reject_unknown_members(boost::json::object const& body,
                           std::initializer_list<std::string_view> known) {
        for (auto const& member : body) {
            if (std::find(known.begin(), known.end(), member.key()) == known.end()) {
                std::string list;
                for (auto k : known) {
                    list += list.empty() ? "" : ", ";
                    list += k;
                }
                return api_error{422, "unknown_member",
                                 "unknown member \"" + std::string(member.key()) +
                                     "\"; the accepted members are " + list,
                                 std::string(member.key())};
            }
        }
        return std::nullopt;
    }

    // Reads a required event type member, with a message that lists the valid names.
    static std::variant<event_type, api_error> read_event_type(boost::json::object const& body) {
        auto const* value = body.if_contains("event_type");
        if (!value) {
            return api_error{422, "missing_member",
                             "event_type is required; use one of the event types in docs/events.md",
                             "event_type"};
        }
        if (!value->is_string()) {
            return api_error{422, "invalid_member", "event_type must be a string", "event_type"};
        }
        try {
            return parse_event_type(value->as_string());
        } catch (std::invalid_argument const& e) {
            return api_error{422, "invalid_event_type", e.what(), "event_type"};
        }
    }

    static boost::json::value scope_json(std::optional<scope_id> const& s) {
        if (!s) {
            return nullptr;
        }
        if (s->is_number) {
            return std::stoll(s->text);
        }
        return boost::json::value(s->text);
    }

    static boost::json::object subscription_json(subscription const& s) {
        boost::json::object out;
        out["id"] = s.id;
        out["webhook_url"] = s.webhook_url;
        out["event_type"] = to_string(s.type);
        out["workflow_id"] = scope_json(s.workflow_id);
        out["campaign_id"] = scope_json(s.campaign_id);
        out["enabled"] = s.enabled;
        out["created_at"] =
            format_utc_timestamp(utc_timestamp(std::chrono::milliseconds(s.created_at)));
        return out;
    }

    asio::awaitable<http::response> create_subscription(http::request const& req,
                                                        std::string const& workspace) {
        auto parsed = read_json_object(req);
        if (auto* e = std::get_if<api_error>(&parsed)) {
            co_return error_response(*e);
        }
        auto& body = std::get<boost::json::object>(parsed);
        if (auto e = reject_unknown_members(
                body, {"webhook_url", "event_type", "workflow_id", "campaign_id"})) {
            co_return error_response(*e);
        }

        auto const* url = body.if_contains("webhook_url");
        if (!url) {
            co_return error_response(
                {422, "missing_member",
                 "webhook_url is required: the https URL that receives the POSTs", "webhook_url"});
        }
        if (!url->is_string()) {
            co_return error_response(
                {422, "invalid_member", "webhook_url must be a string", "webhook_url"});
        }
        // A name is resolved now, and rejected when any of its addresses is; the client checks
        // the addresses again before each delivery.
        auto target = co_await check_webhook_destination(std::string(url->as_string()), allow_http_,
                                                         policy_, resolve_);
        if (auto* p = std::get_if<url_problem>(&target)) {
            co_return error_response({422, "invalid_webhook_url", p->message, "webhook_url"});
        }

        auto type = read_event_type(body);
        if (auto* e = std::get_if<api_error>(&type)) {
            co_return error_response(*e);
        }
        auto workflow = read_scope(req.body, "workflow_id");
        if (auto* e = std::get_if<api_error>(&workflow)) {
            co_return error_response(*e);
        }
        auto campaign = read_scope(req.body, "campaign_id");
        if (auto* e = std::get_if<api_error>(&campaign)) {
            co_return error_response(*e);
        }

        subscription s;
        s.id = new_subscription_id();
        s.workspace = workspace;
        s.webhook_url = std::string(url->as_string());
        s.type = std::get<event_type>(type);
        s.workflow_id = std::get<std::optional<scope_id>>(std::move(workflow));
        s.campaign_id = std::get<std::optional<scope_id>>(std::move(campaign));
        s.secret = new_signing_secret();
        s.created_at = now_ms();
        co_await dispatcher_.subscribe(s);

        auto out = subscription_json(s);
        // The secret is shown once, here; later reads never include it.
        out["secret"] = s.secret;
        auto res = json_response(201, out);
        res.headers.add("Location", "/api/v1/webhook_subscriptions/" + s.id);
        co_return res;
    }

    http::response get_subscription(std::string const& id, std::string const& workspace) const {
        auto s = dispatcher_.subscriptions().find(id);
        if (!s || s->workspace != workspace) {
            return subscription_not_found(id);
        }
        return json_response(200, subscription_json(*s));
    }

    asio::awaitable<http::response> delete_subscription(std::string const& id,
                                                        std::string const& workspace) {
        if (!co_await dispatcher_.unsubscribe(workspace, id)) {
            co_return subscription_not_found(id);
        }
        http::response res;
        res.status = 204;
        co_return res;
    }

    asio::awaitable<http::response> publish_event(http::request const& req,
                                                  std::string const& workspace) {
        auto parsed = read_json_object(req);
        if (auto* e = std::get_if<api_error>(&parsed)) {
            co_return error_response(*e);
        }
        auto& body = std::get<boost::json::object>(parsed);
        if (auto e = reject_unknown_members(
                body, {"event_type", "payload", "workflow_id", "campaign_id"})) {
            co_return error_response(*e);
        }

        auto type = read_event_type(body);
        if (auto* e = std::get_if<api_error>(&type)) {
            co_return error_response(*e);
        }
        auto t = std::get<event_type>(type);
        if (is_call_disposition(t)) {
            co_return error_response(
                {422, "derived_event_type",
                 std::string(to_string(t)) +
                     " is emitted by the server from a call's outcome; publish call_completed "
                     "with the call's status and failure_category instead",
                 "event_type"});
        }

        auto const* payload = body.if_contains("payload");
        if (!payload || !payload->is_object()) {
            co_return error_response({422, payload ? "invalid_member" : "missing_member",
                                      "payload is required and must be a JSON object", "payload"});
        }
        if (auto problem = check_payload(t, payload->as_object())) {
            auto field =
                problem->field.empty() ? std::string("payload") : "payload." + problem->field;
            co_return error_response({422, "invalid_payload", problem->message, field});
        }

        auto workflow = read_scope(req.body, "workflow_id");
        if (auto* e = std::get_if<api_error>(&workflow)) {
            co_return error_response(*e);
        }
        auto campaign = read_scope(req.body, "campaign_id");
        if (auto* e = std::get_if<api_error>(&campaign)) {
            co_return error_response(*e);
        }

        std::vector<event_type> types{t};
        if (t == event_type::call_completed) {
            types = call_end_events(payload->as_object());
        }

        event e;
        e.id = new_event_id();
        e.workspace = workspace;
        e.type = t;
        // Deliveries carry the payload exactly as the producer wrote it.
        e.payload = std::string(*json_input::raw_member(req.body, "payload"));
        e.workflow_id = std::get<std::optional<scope_id>>(std::move(workflow));
        e.campaign_id = std::get<std::optional<scope_id>>(std::move(campaign));
        e.created_at = now_ms();
        auto result = co_await dispatcher_.publish(std::move(e), types);

        boost::json::array names;
        for (auto emitted : result.types) {
            names.emplace_back(to_string(emitted));
        }
        co_return json_response(202, boost::json::object{{"id", result.event_id},
                                                         {"event_types", std::move(names)},
                                                         {"deliveries", result.deliveries}});
    }

    dispatcher& dispatcher_;
    key_ring const& keys_;
    address_policy const& policy_;
    bool allow_http_;
    http::resolve_function resolve_;
};

} // namespace revdesk::server
