// The reference server's HTTP API: routing, authentication, input checks and JSON responses.
#pragma once

#include <revdesk/catalog.hpp>
#include <revdesk/destination.hpp>
#include <revdesk/dispatcher.hpp>
#include <revdesk/http/client.hpp>
#include <revdesk/http/message.hpp>
#include <revdesk/http/server.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/json_input.hpp>
#include <revdesk/store/store.hpp>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>

#include <asio/awaitable.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace revdesk::server {

// Returns `text`, at most `limit` bytes of it, quoted and with every byte outside printable ASCII
// escaped, so that untrusted text (a receiver's response, a client's header) cannot forge log
// lines or send terminal escapes.
inline std::string printable(std::string_view text, std::size_t limit) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (unsigned char c : text.substr(0, limit)) {
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
    out += text.size() > limit ? "\"..." : "\"";
    return out;
}

/// A JSON error response: `{"error":{"code","message","field"}}`.
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

/// Returns the lowercase hex SHA-256 digest of an API key, the form in which stores keep keys.
inline std::string key_digest_hex(std::string_view key) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int length = 0;
    EVP_Digest(key.data(), key.size(), out.data(), &length, EVP_sha256(), nullptr);
    constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        hex.push_back(digits[out[i] >> 4]);
        hex.push_back(digits[out[i] & 0x0f]);
    }
    return hex;
}

/// API keys and the workspace each belongs to, kept only as SHA-256 digests.
///
/// A lookup hashes the presented key and finds the digest in a map. The map compares digests,
/// never the presented key, so the time a lookup takes depends on how many leading digest
/// characters match a stored digest, and an attacker cannot steer a digest's prefix without
/// inverting SHA-256. That is why no constant-time comparison is needed here.
///
/// Thread safety: none; use it from the server's one thread.
class key_ring {
public:
    /// Adds `key` as a key of `workspace` that replace_stored keeps (the REVDESK_API_KEY key).
    void add(std::string_view key, std::string workspace) {
        auto digest = key_digest_hex(key);
        fixed_[digest] = workspace;
        by_digest_[std::move(digest)] = std::move(workspace);
    }

    /// Replaces the keys loaded from a store with `keys`; revoked keys are left out, so they
    /// stop authenticating from this call on.
    void replace_stored(std::vector<api_key> const& keys) {
        auto next = fixed_;
        for (auto const& k : keys) {
            if (!k.revoked) {
                next.emplace(k.digest, k.workspace);
            }
        }
        by_digest_ = std::move(next);
    }

    /// Returns the workspace of `key`, or nothing for an unknown or revoked key.
    std::optional<std::string> find(std::string_view key) const {
        auto it = by_digest_.find(key_digest_hex(key));
        if (it == by_digest_.end()) {
            return std::nullopt;
        }
        return it->second;
    }

    bool empty() const noexcept { return by_digest_.empty(); }

private:
    std::map<std::string, std::string> fixed_;     // hex digest -> workspace
    std::map<std::string, std::string> by_digest_; // fixed_ plus the store's unrevoked keys
};

/// The facts about one request that its log line records besides the method and the status.
struct request_facts {
    /// The matched route with placeholders, such as `/api/v1/webhook_subscriptions/{id}`, or
    /// `unmatched`. Never the raw path, so ids and query strings stay out of the log.
    std::string route = "unmatched";
    /// The authenticated workspace, or empty.
    std::string workspace;
};

/// What a route does; api::handle dispatches on it.
enum class operation {
    health,
    readiness,
    metrics,
    list_subscriptions,
    create_subscription,
    get_subscription,
    update_subscription,
    delete_subscription,
    rotate_secret,
    list_attempts,
    publish_event,
    redeliver_event,
};

/// One method of one path that the server serves.
struct route {
    std::string_view method;
    /// The path template: `{id}` stands for one non-empty path segment.
    std::string_view path;
    operation op;
    /// Whether the route needs an API key.
    bool needs_key;
};

/// Every route of revdesk-server: the one list that the router, its `Allow` headers and the
/// test comparing docs/openapi.yaml with the server read. The methods of a path appear in the
/// order of its `Allow` header. main.cpp answers `/metrics` itself, before api::handle.
inline constexpr std::array routes{
    route{"GET", "/healthz", operation::health, false},
    route{"HEAD", "/healthz", operation::health, false},
    route{"GET", "/readyz", operation::readiness, false},
    route{"HEAD", "/readyz", operation::readiness, false},
    route{"GET", "/metrics", operation::metrics, false},
    route{"HEAD", "/metrics", operation::metrics, false},
    route{"GET", "/api/v1/webhook_subscriptions", operation::list_subscriptions, true},
    route{"POST", "/api/v1/webhook_subscriptions", operation::create_subscription, true},
    route{"GET", "/api/v1/webhook_subscriptions/{id}", operation::get_subscription, true},
    route{"PATCH", "/api/v1/webhook_subscriptions/{id}", operation::update_subscription, true},
    route{"DELETE", "/api/v1/webhook_subscriptions/{id}", operation::delete_subscription, true},
    route{"POST", "/api/v1/webhook_subscriptions/{id}/secret/rotate", operation::rotate_secret,
          true},
    route{"GET", "/api/v1/webhook_subscriptions/{id}/attempts", operation::list_attempts, true},
    route{"POST", "/api/v1/events", operation::publish_event, true},
    route{"POST", "/api/v1/events/{id}/redeliver", operation::redeliver_event, true},
};

/// Returns whether `path` matches the template `pattern`; on a match `id` holds the segment
/// that `{id}` stands for, if any.
constexpr bool match_path(std::string_view pattern, std::string_view path,
                          std::string_view& id) noexcept {
    constexpr std::string_view placeholder = "{id}";
    std::size_t p = 0;
    for (std::size_t t = 0; t < pattern.size();) {
        if (pattern.substr(t).starts_with(placeholder)) {
            auto end = std::min(path.find('/', p), path.size());
            if (end == p) {
                return false;
            }
            id = path.substr(p, end - p);
            p = end;
            t += placeholder.size();
        } else if (p < path.size() && path[p] == pattern[t]) {
            ++p;
            ++t;
        } else {
            return false;
        }
    }
    return p == path.size();
}

/// Returns the route of `method` on the path template `path`, or nullptr.
constexpr route const* find_route(std::string_view method, std::string_view path) noexcept {
    for (auto const& r : routes) {
        if (r.method == method && r.path == path) {
            return &r;
        }
    }
    return nullptr;
}

/// Returns the `Allow` header of the path template `path`, such as `GET, PATCH, DELETE`.
inline std::string allowed_methods(std::string_view path) {
    std::string out;
    for (auto const& r : routes) {
        if (r.path == path) {
            out += out.empty() ? "" : ", ";
            out += r.method;
        }
    }
    return out;
}

namespace detail {
// Whether no method and path appear twice in `routes` and no template matches a path that an
// earlier template matches, so that the first match is the only one.
consteval bool routes_are_unambiguous() {
    for (std::size_t i = 0; i < routes.size(); ++i) {
        for (std::size_t j = i + 1; j < routes.size(); ++j) {
            if (routes[i].path == routes[j].path && routes[i].method == routes[j].method) {
                return false;
            }
            std::string_view id;
            if (routes[i].path != routes[j].path &&
                (match_path(routes[i].path, routes[j].path, id) ||
                 match_path(routes[j].path, routes[i].path, id))) {
                return false;
            }
        }
    }
    return true;
}

// Whether `{id}` matches exactly one non-empty segment.
consteval bool placeholder_matches_one_segment() {
    std::string_view id;
    bool one = match_path("/a/{id}/b", "/a/x7/b", id) && id == "x7";
    return one && !match_path("/a/{id}/b", "/a//b", id) && !match_path("/a/{id}", "/a/x/", id) &&
           !match_path("/a/{id}", "/a/x/y", id) && !match_path("/a", "/a/", id);
}
} // namespace detail

static_assert(detail::routes_are_unambiguous(), "two routes overlap");
static_assert(detail::placeholder_matches_one_segment());

/// Serves the webhook API on top of a dispatcher.
class api {
public:
    /// `resolve` resolves the host names of new webhook URLs, which are rejected when any of
    /// their addresses is; an empty function uses the system resolver. `s` is the dispatcher's
    /// store, pinged by `/readyz`. After a secret rotation the replaced secret keeps signing
    /// beside the new one for `secret_grace`. Every reference must outlive the api.
    api(dispatcher& d, store& s, key_ring const& keys, address_policy const& policy,
        bool allow_http, http::resolve_function resolve = {},
        std::chrono::seconds secret_grace = std::chrono::hours(24))
        : dispatcher_(d)
        , store_(s)
        , keys_(keys)
        , policy_(policy)
        , allow_http_(allow_http)
        , resolve_(std::move(resolve))
        , secret_grace_(secret_grace) {}

    /// Answers one request and fills `facts` for the request log. Never throws for bad input; a
    /// store failure propagates and the HTTP server responds 500.
    asio::awaitable<http::response> handle(http::request& req, http::request_context const&,
                                           request_facts& facts) {
        auto path = std::string_view(req.target).substr(0, req.target.find('?'));

        std::string_view id;
        auto const* served = find_path(path, id);
        if (!served) {
            co_return not_found_route(path);
        }
        facts.route = std::string(served->path);
        auto const* r = find_route(req.method, served->path);
        if (!r) {
            co_return method_not_allowed(allowed_methods(served->path));
        }
        if (r->needs_key) {
            auto workspace = authenticate(req);
            if (!workspace) {
                co_return unauthorized(req);
            }
            facts.workspace = *workspace;
        }
        auto const& workspace = facts.workspace;

        switch (r->op) {
        case operation::health:
            co_return json_response(200, boost::json::object{{"status", "ok"}});
        case operation::readiness:
            if (!co_await store_.ping()) {
                co_return json_response(
                    503, boost::json::object{{"status", "unavailable"},
                                             {"message", "the store cannot run a query"}});
            }
            co_return json_response(200, boost::json::object{{"status", "ready"}});
        case operation::metrics:
            break; // find_path never returns it
        case operation::list_subscriptions:
            co_return list_subscriptions(req, workspace);
        case operation::create_subscription:
            co_return co_await create_subscription(req, workspace);
        case operation::get_subscription:
            co_return get_subscription(std::string(id), workspace);
        case operation::update_subscription:
            co_return co_await patch_subscription(req, std::string(id), workspace);
        case operation::delete_subscription:
            co_return co_await delete_subscription(std::string(id), workspace);
        case operation::rotate_secret:
            co_return co_await rotate_secret(req, std::string(id), workspace);
        case operation::list_attempts:
            co_return co_await list_attempts(req, std::string(id), workspace);
        case operation::publish_event:
            co_return co_await publish_event(req, workspace);
        case operation::redeliver_event:
            co_return co_await redeliver_event(req, std::string(id), workspace);
        }
        co_return not_found_route(path);
    }

    /// Returns the first route whose path template matches `path`, skipping `/metrics`, which
    /// the server answers before calling handle; sets `id` to the `{id}` segment, if any.
    static route const* find_path(std::string_view path, std::string_view& id) noexcept {
        for (auto const& r : routes) {
            if (r.op != operation::metrics && match_path(r.path, path, id)) {
                return &r;
            }
        }
        return nullptr;
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
        auto header = req.headers.find("Authorization");
        std::string message = "missing API key; send Authorization: Bearer <key>";
        if (header && !http::iequals(header->substr(0, 7), "Bearer ")) {
            message = "the Authorization header does not use the Bearer scheme; send "
                      "Authorization: Bearer <key>";
        } else if (header) {
            message = "the API key is not valid; send Authorization: Bearer <key> with a key of "
                      "this server";
        }
        auto res = error_response({401, "unauthorized", std::move(message), ""});
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

    // Returns the value of the charset parameter of a Content-Type value, unquoted, if it has
    // one.
    static std::optional<std::string_view> charset_of(std::string_view content_type) {
        auto at = content_type.find(';');
        while (at != std::string_view::npos) {
            auto parameter = content_type.substr(at + 1);
            auto end = parameter.find(';');
            auto text = http::detail::trim_ows(parameter.substr(0, end));
            auto equals = text.find('=');
            if (equals != std::string_view::npos && http::iequals(text.substr(0, equals), "charset")) {
                auto value = text.substr(equals + 1);
                if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
                    value = value.substr(1, value.size() - 2);
                }
                return value;
            }
            at = end == std::string_view::npos ? end : at + 1 + end;
        }
        return std::nullopt;
    }

    // Checks the media type and parses the body as one JSON object.
    static std::variant<boost::json::object, api_error> read_json_object(http::request const& req) {
        auto type = req.headers.find("Content-Type");
        auto media = type ? type->substr(0, type->find(';')) : std::string_view();
        while (!media.empty() && media.back() == ' ') {
            media.remove_suffix(1);
        }
        if (!type || !http::iequals(media, "application/json")) {
            auto got = type ? "got Content-Type " + printable(*type, 100)
                            : std::string("the request has no Content-Type");
            return api_error{415, "unsupported_media_type",
                             "send the body as JSON with Content-Type: application/json; " + got,
                             ""};
        }
        if (req.headers.count("Content-Type") > 1) {
            return api_error{400, "invalid_header",
                             "the request has more than one Content-Type field; send one, "
                             "Content-Type: application/json",
                             ""};
        }
        // JSON on the network is UTF-8 (RFC 8259 section 8.1), so another charset is an error
        // rather than a hint to ignore.
        if (auto charset = charset_of(*type); charset && !http::iequals(*charset, "utf-8")) {
            return api_error{415, "unsupported_media_type",
                             "send the body as UTF-8 JSON; got charset " +
                                 printable(*charset, 40),
                             ""};
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

    // Returns `names` separated by ", ".
    static std::string comma_list(std::initializer_list<std::string_view> names) {
        std::string list;
        for (auto name : names) {
            list += list.empty() ? "" : ", ";
            list += name;
        }
        return list;
    }

    static std::optional<api_error>
    reject_unknown_members(boost::json::object const& body,
                           std::initializer_list<std::string_view> known) {
        for (auto const& member : body) {
            if (std::find(known.begin(), known.end(), member.key()) == known.end()) {
                return api_error{422, "unknown_member",
                                 "unknown member \"" + std::string(member.key()) +
                                     "\"; the accepted members are " + comma_list(known),
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
                {422, "invalid_member",
                 std::string("webhook_url must be a string, not ") +
                     json_input::detail::kind_name(url->kind()),
                 "webhook_url"});
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

    // Reads the query string of `target` into name/value pairs, percent-decoded. Returns an
    // error for a malformed query, a repeated name, or a name outside `known`.
    static std::variant<std::map<std::string, std::string>, api_error>
    read_query(std::string_view target, std::initializer_list<std::string_view> known) {
        auto parsed = boost::urls::parse_origin_form(target);
        if (!parsed) {
            return api_error{400, "invalid_query", "the query string is not valid", ""};
        }
        std::map<std::string, std::string> out;
        for (auto const& param : parsed->params()) {
            if (std::find(known.begin(), known.end(), param.key) == known.end()) {
                return api_error{400, "unknown_parameter",
                                 "unknown query parameter " + printable(param.key, 100) +
                                     "; this endpoint accepts " + comma_list(known),
                                 param.key};
            }
            if (!out.emplace(param.key, param.value).second) {
                return api_error{400, "invalid_parameter",
                                 "the query parameter " + param.key + " appears more than once",
                                 param.key};
            }
        }
        return out;
    }

    // Reads `limit` (1 to 100, default 20), or returns the error for an invalid one.
    static std::variant<std::size_t, api_error>
    read_limit(std::map<std::string, std::string> const& params) {
        auto it = params.find("limit");
        if (it == params.end()) {
            return std::size_t{20};
        }
        auto const& text = it->second;
        bool digits =
            !text.empty() && text.size() <= 3 &&
            std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
        auto limit = digits ? std::stoul(text) : 0;
        if (limit < 1 || limit > 100) {
            return api_error{400, "invalid_parameter",
                             "limit must be an integer from 1 to 100, not " + printable(text, 20),
                             "limit"};
        }
        return std::size_t{limit};
    }

    // Bytes of a receiver's response body shown per attempt.
    static constexpr std::size_t response_prefix_bytes = 256;

    // Cuts `body` to response_prefix_bytes without splitting a UTF-8 sequence.
    // NOTE: bytes that are not UTF-8 at all pass through and make the answer invalid JSON text.
    static std::string body_prefix(std::string const& body) {
        if (body.size() <= response_prefix_bytes) {
            return body;
        }
        auto end = response_prefix_bytes;
        while (end > 0 && (static_cast<unsigned char>(body[end]) & 0xC0) == 0x80) {
            --end;
        }
        return body.substr(0, end);
    }

    // The list cursor is the hex encoding of "<created_at>.<id>" of the last item of a page;
    // clients treat it as opaque.
    static std::string encode_cursor(subscription const& s) {
        auto plain = std::to_string(s.created_at) + "." + s.id;
        constexpr char digits[] = "0123456789abcdef";
        std::string hex;
        for (unsigned char c : plain) {
            hex.push_back(digits[c >> 4]);
            hex.push_back(digits[c & 0x0f]);
        }
        return hex;
    }

    static std::optional<std::pair<unix_ms, std::string>> decode_cursor(std::string_view hex) {
        if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 256) {
            return std::nullopt;
        }
        auto nibble = [](char c) -> int {
            if (c >= '0' && c <= '9') {
                return c - '0';
            }
            if (c >= 'a' && c <= 'f') {
                return c - 'a' + 10;
            }
            return -1;
        };
        std::string plain;
        for (std::size_t i = 0; i < hex.size(); i += 2) {
            int high = nibble(hex[i]);
            int low = nibble(hex[i + 1]);
            if (high < 0 || low < 0) {
                return std::nullopt;
            }
            plain.push_back(static_cast<char>(high * 16 + low));
        }
        auto dot = plain.find('.');
        if (dot == 0 || dot == std::string::npos || dot > 19) {
            return std::nullopt;
        }
        unix_ms at = 0;
        for (std::size_t i = 0; i < dot; ++i) {
            if (plain[i] < '0' || plain[i] > '9') {
                return std::nullopt;
            }
            at = at * 10 + (plain[i] - '0');
        }
        auto id = plain.substr(dot + 1);
        if (!is_valid_id(id, "whk_")) {
            return std::nullopt;
        }
        return std::pair{at, std::move(id)};
    }

    http::response list_subscriptions(http::request const& req,
                                      std::string const& workspace) const {
        auto query = read_query(req.target, {"limit", "cursor", "event_type"});
        if (auto* e = std::get_if<api_error>(&query)) {
            return error_response(*e);
        }
        auto const& params = std::get<0>(query);

        auto read = read_limit(params);
        if (auto* e = std::get_if<api_error>(&read)) {
            return error_response(*e);
        }
        auto limit = std::get<std::size_t>(read);
        std::optional<event_type> type;
        if (auto it = params.find("event_type"); it != params.end()) {
            try {
                type = parse_event_type(it->second);
            } catch (std::invalid_argument const& e) {
                return error_response({400, "invalid_event_type", e.what(), "event_type"});
            }
        }
        std::optional<std::pair<unix_ms, std::string>> after;
        if (auto it = params.find("cursor"); it != params.end()) {
            after = decode_cursor(it->second);
            if (!after) {
                return error_response({400, "invalid_cursor",
                                       "cursor is not a next_cursor value from this endpoint",
                                       "cursor"});
            }
        }

        // The index has no order, so each page sorts the workspace's subscriptions.
        // NOTE: that costs O(n log n) per page in the number of the workspace's subscriptions.
        std::vector<subscription_index::pointer> items;
        dispatcher_.subscriptions().for_each([&](subscription_index::pointer const& s) {
            if (s->workspace != workspace || (type && s->type != *type)) {
                return;
            }
            if (after && std::pair(s->created_at, s->id) <= *after) {
                return;
            }
            items.push_back(s);
        });
        std::sort(items.begin(), items.end(), [](auto const& x, auto const& y) {
            return std::tie(x->created_at, x->id) < std::tie(y->created_at, y->id);
        });

        boost::json::array data;
        for (std::size_t i = 0; i < items.size() && i < limit; ++i) {
            data.push_back(subscription_json(*items[i]));
        }
        boost::json::value next = nullptr;
        if (items.size() > limit) {
            next = encode_cursor(*items[limit - 1]);
        }
        return json_response(200,
                             boost::json::object{{"data", std::move(data)}, {"next_cursor", next}});
    }

    // Finds a subscription of `workspace`; another workspace's id is treated as unknown.
    subscription_index::pointer find_own(std::string const& id,
                                         std::string const& workspace) const {
        auto s = dispatcher_.subscriptions().find(id);
        return s && s->workspace == workspace ? s : nullptr;
    }

    asio::awaitable<http::response> patch_subscription(http::request const& req,
                                                       std::string const& id,
                                                       std::string const& workspace) {
        auto parsed = read_json_object(req);
        if (auto* e = std::get_if<api_error>(&parsed)) {
            co_return error_response(*e);
        }
        auto& body = std::get<boost::json::object>(parsed);
        if (auto e = reject_unknown_members(body, {"webhook_url", "enabled"})) {
            co_return error_response(*e);
        }
        if (body.empty()) {
            co_return error_response(
                {422, "missing_member", "send webhook_url, enabled or both to change", ""});
        }
        // Check existence before the URL, so that an unknown id answers 404 whatever the body.
        auto current = find_own(id, workspace);
        if (!current) {
            co_return subscription_not_found(id);
        }
        auto changed = *current;
        auto const* url = body.if_contains("webhook_url");
        if (url) {
            if (!url->is_string()) {
                co_return error_response(
                    {422, "invalid_member",
                 std::string("webhook_url must be a string, not ") +
                     json_input::detail::kind_name(url->kind()),
                 "webhook_url"});
            }
            auto target = co_await check_webhook_destination(std::string(url->as_string()),
                                                             allow_http_, policy_, resolve_);
            if (auto* p = std::get_if<url_problem>(&target)) {
                co_return error_response({422, "invalid_webhook_url", p->message, "webhook_url"});
            }
            changed.webhook_url = std::string(url->as_string());
        }
        if (auto const* enabled = body.if_contains("enabled")) {
            if (!enabled->is_bool()) {
                co_return error_response(
                    {422, "invalid_member", "enabled must be true or false", "enabled"});
            }
            changed.enabled = enabled->as_bool();
        }
        changed.updated_at = now_ms();
        // The destination check suspended, so the subscription may have been deleted meanwhile.
        bool updated = false;
        if (find_own(id, workspace)) {
            updated = co_await dispatcher_.update_subscription(changed);
        }
        if (!updated) {
            co_return subscription_not_found(id);
        }
        co_return json_response(200, subscription_json(changed));
    }

    asio::awaitable<http::response> rotate_secret(http::request const& req, std::string const& id,
                                                  std::string const& workspace) {
        // The endpoint takes no parameters: an empty body or an empty object.
        if (!req.body.empty()) {
            auto parsed = read_json_object(req);
            if (auto* e = std::get_if<api_error>(&parsed)) {
                co_return error_response(*e);
            }
            auto const& body = std::get<boost::json::object>(parsed);
            if (!body.empty()) {
                co_return error_response(
                    {422, "unknown_member",
                     "unknown member " + printable(body.begin()->key(), 100) +
                         "; this endpoint takes no body, or an empty JSON object",
                     std::string(body.begin()->key())});
            }
        }
        auto current = find_own(id, workspace);
        if (!current) {
            co_return subscription_not_found(id);
        }
        auto changed = *current;
        auto now = now_ms();
        changed.previous_secret = current->secret;
        changed.previous_secret_expires_at =
            now + std::chrono::duration_cast<std::chrono::milliseconds>(secret_grace_).count();
        changed.secret = new_signing_secret();
        changed.updated_at = now;
        if (!co_await dispatcher_.update_subscription(changed)) {
            co_return subscription_not_found(id);
        }
        auto out = subscription_json(changed);
        // Shown once, like the secret of a new subscription.
        out["secret"] = changed.secret;
        out["previous_secret_expires_at"] = format_utc_timestamp(
            utc_timestamp(std::chrono::milliseconds(changed.previous_secret_expires_at)));
        co_return json_response(200, out);
    }

    asio::awaitable<http::response> list_attempts(http::request const& req, std::string const& id,
                                                  std::string const& workspace) {
        if (!find_own(id, workspace)) {
            co_return subscription_not_found(id);
        }
        auto query = read_query(req.target, {"limit", "cursor"});
        if (auto* e = std::get_if<api_error>(&query)) {
            co_return error_response(*e);
        }
        auto const& params = std::get<0>(query);
        auto read = read_limit(params);
        if (auto* e = std::get_if<api_error>(&read)) {
            co_return error_response(*e);
        }
        auto limit = std::get<std::size_t>(read);
        std::optional<std::string> cursor;
        if (auto it = params.find("cursor"); it != params.end()) {
            cursor = it->second;
        }
        attempt_page page;
        bool bad_cursor = false;
        try {
            page = co_await store_.list_attempts_page(id, limit, cursor);
        } catch (std::invalid_argument const&) {
            bad_cursor = true;
        }
        if (bad_cursor) {
            co_return error_response({400, "invalid_cursor",
                                      "cursor is not a next_cursor value from this endpoint",
                                      "cursor"});
        }

        // The delivery types come from each event's deliveries, read once per event.
        std::map<std::string, std::map<std::string, event_type>> types_by_event;
        for (auto const& a : page.items) {
            if (types_by_event.contains(a.event_id)) {
                continue;
            }
            auto& types = types_by_event[a.event_id];
            for (auto const& d : co_await store_.list_deliveries(a.event_id)) {
                types[d.id] = d.type;
            }
        }

        boost::json::array data;
        for (auto const& a : page.items) {
            boost::json::object item;
            item["id"] = a.id;
            item["message_id"] = a.delivery_id;
            item["event_id"] = a.event_id;
            auto const& types = types_by_event[a.event_id];
            auto type = types.find(a.delivery_id);
            item["event_type"] = type == types.end() ? boost::json::value(nullptr)
                                                     : boost::json::value(to_string(type->second));
            item["attempt"] = a.number;
            item["started_at"] =
                format_utc_timestamp(utc_timestamp(std::chrono::milliseconds(a.started_at)));
            item["duration_ms"] = a.duration_ms;
            item["status"] =
                a.status == 0 ? boost::json::value(nullptr) : boost::json::value(a.status);
            item["error"] =
                a.error.empty() ? boost::json::value(nullptr) : boost::json::value(a.error);
            item["response_body_prefix"] = body_prefix(a.response_body);
            data.push_back(std::move(item));
        }
        boost::json::value next = nullptr;
        if (page.next_cursor) {
            next = *page.next_cursor;
        }
        co_return json_response(
            200, boost::json::object{{"data", std::move(data)}, {"next_cursor", next}});
    }

    asio::awaitable<http::response> redeliver_event(http::request const& req, std::string const& id,
                                                    std::string const& workspace) {
        auto not_found = [&id] {
            return error_response({404, "not_found", "no event with id " + id, "id"});
        };
        std::optional<std::string> only;
        if (!req.body.empty()) {
            auto parsed = read_json_object(req);
            if (auto* e = std::get_if<api_error>(&parsed)) {
                co_return error_response(*e);
            }
            auto& body = std::get<boost::json::object>(parsed);
            if (auto e = reject_unknown_members(body, {"subscription_id"})) {
                co_return error_response(*e);
            }
            if (auto const* s = body.if_contains("subscription_id")) {
                if (!s->is_string()) {
                    co_return error_response({422, "invalid_member",
                                              "subscription_id must be a string",
                                              "subscription_id"});
                }
                only = std::string(s->as_string());
            }
        }
        if (!is_valid_id(id, "evt_")) {
            co_return not_found();
        }
        auto found = co_await store_.find_event(workspace, id);
        if (!found) {
            co_return not_found();
        }

        // The targets are the subscriptions the event was delivered to, with the same types.
        std::vector<std::pair<std::string, event_type>> targets;
        bool only_matched = false;
        for (auto const& d : co_await store_.list_deliveries(id)) {
            if (only && d.subscription_id != *only) {
                continue;
            }
            only_matched = true;
            auto pair = std::pair(d.subscription_id, d.type);
            if (std::find(targets.begin(), targets.end(), pair) == targets.end()) {
                targets.push_back(std::move(pair));
            }
        }
        if (only && (!only_matched || !find_own(*only, workspace))) {
            co_return error_response(
                {422, "not_a_recipient",
                 "subscription " + *only +
                     " does not exist or did not receive this event; omit subscription_id to "
                     "redeliver to every subscription that received it",
                 "subscription_id"});
        }
        auto queued = co_await dispatcher_.redeliver(std::move(*found), targets);
        boost::json::array ids;
        for (auto const& d : queued) {
            ids.emplace_back(d.id);
        }
        co_return json_response(
            202, boost::json::object{{"event_id", id}, {"message_ids", std::move(ids)}});
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
        if (!payload) {
            co_return error_response({422, "missing_member",
                                      "payload is required: the JSON object of the event",
                                      "payload"});
        }
        if (!payload->is_object()) {
            co_return error_response({422, "invalid_member",
                                      std::string("payload must be a JSON object, not ") +
                                          json_input::detail::kind_name(payload->kind()),
                                      "payload"});
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

        auto key = read_idempotency_key(req);
        if (auto* problem = std::get_if<api_error>(&key)) {
            co_return error_response(*problem);
        }
        e.idempotency_key = std::get<std::optional<std::string>>(std::move(key));
        auto not_before = e.created_at - idempotency_window_ms;
        if (e.idempotency_key) {
            auto earlier = co_await store_.find_event_by_idempotency_key(
                workspace, *e.idempotency_key, not_before);
            if (earlier) {
                co_return replay(*earlier, e);
            }
        }

        auto describe = [](publish_result const& result) {
            boost::json::array names;
            for (auto emitted : result.types) {
                names.emplace_back(to_string(emitted));
            }
            return boost::json::serialize(boost::json::object{{"id", result.event_id},
                                                              {"event_types", std::move(names)},
                                                              {"deliveries", result.deliveries}});
        };
        // A key older than the window may still be stored, so it is released and the publish
        // tried once more. A key stored within the window means that a concurrent request with
        // the same key won, and its answer is replayed.
        // NOTE: no test covers the release, because the window is 24 h of the system clock.
        for (int round = 0; round < 2; ++round) {
            std::optional<std::string> holder;
            try {
                auto result = co_await dispatcher_.publish(e, types, describe);
                co_return json_body_response(202, describe(result));
            } catch (duplicate_key_error const& duplicate) {
                holder = duplicate.existing_event_id();
            }
            auto existing = co_await store_.find_event(workspace, *holder);
            if (existing && existing->created_at >= not_before) {
                co_return replay(*existing, e);
            }
            co_await store_.release_idempotency_keys(not_before);
        }
        co_return error_response(
            {409, "idempotency_conflict", "the Idempotency-Key is in use; retry the request", ""});
    }

    // How long an Idempotency-Key stays bound to its first request.
    static constexpr unix_ms idempotency_window_ms = 24LL * 60 * 60 * 1000;

    // Reads the optional Idempotency-Key header: 1 to 255 printable ASCII characters.
    static std::variant<std::optional<std::string>, api_error>
    read_idempotency_key(http::request const& req) {
        auto value = req.headers.find("Idempotency-Key");
        if (!value) {
            return std::optional<std::string>{};
        }
        bool printable = std::all_of(value->begin(), value->end(),
                                     [](char c) { return c >= 0x20 && c <= 0x7e; });
        if (req.headers.count("Idempotency-Key") != 1 || value->empty() || value->size() > 255 ||
            !printable) {
            return api_error{400, "invalid_idempotency_key",
                             "Idempotency-Key must be one header of 1 to 255 printable ASCII "
                             "characters, such as a UUID",
                             "Idempotency-Key"};
        }
        return std::optional<std::string>(std::string(*value));
    }

    // Answers a request that repeats an earlier request's Idempotency-Key: the stored answer when
    // the request publishes the same event, 422 when it differs.
    static http::response replay(event const& earlier, event const& again) {
        bool same = earlier.type == again.type && earlier.payload == again.payload &&
                    earlier.workflow_id == again.workflow_id &&
                    earlier.campaign_id == again.campaign_id;
        if (!same) {
            return error_response(
                {422, "idempotency_key_reused",
                 "this Idempotency-Key was used in the last 24 hours for a request with a "
                 "different event_type, payload, workflow_id or campaign_id; use a new key for "
                 "a new event",
                 "Idempotency-Key"});
        }
        auto res = json_body_response(202, earlier.response);
        res.headers.add("Idempotent-Replayed", "true");
        return res;
    }

    static http::response json_body_response(int status, std::string body) {
        http::response res;
        res.status = status;
        res.headers.add("Content-Type", "application/json");
        res.body = std::move(body);
        return res;
    }

    dispatcher& dispatcher_;
    store& store_;
    key_ring const& keys_;
    address_policy const& policy_;
    bool allow_http_;
    http::resolve_function resolve_;
    std::chrono::seconds secret_grace_; // how long a replaced secret keeps signing
};

} // namespace revdesk::server
