#include <revdesk/http/serializer.hpp>

#define BOOST_TEST_MODULE http_serializer
#include <boost/test/unit_test.hpp>

#include <revdesk/http/parser.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace http = revdesk::http;

namespace {

http::request make_request(std::string method, std::string target, std::string body = {}) {
    http::request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.headers.add("Host", "example.com");
    r.body = std::move(body);
    return r;
}

http::request parse_one_request(std::string const& wire) {
    http::request_parser parser;
    std::error_code ec;
    std::size_t used = parser.feed(wire, ec);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    BOOST_REQUIRE(parser.done());
    BOOST_REQUIRE_EQUAL(used, wire.size());
    return parser.release();
}

http::response parse_one_response(std::string const& wire) {
    http::response_parser parser;
    std::error_code ec;
    std::size_t used = parser.feed(wire, ec);
    BOOST_REQUIRE_MESSAGE(!ec, ec.message());
    BOOST_REQUIRE(parser.done());
    BOOST_REQUIRE_EQUAL(used, wire.size());
    return parser.release();
}

} // namespace

BOOST_AUTO_TEST_CASE(serialize_get_without_body_adds_no_length) {
    auto wire = http::serialize(make_request("GET", "/a?b=c"));
    BOOST_TEST(wire == "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(serialize_adds_content_length) {
    struct length_case {
        char const* method;
        std::string body;
        bool expect_length;
    };
    std::vector<length_case> cases = {
        {"POST", "", true},  {"PUT", "", true},  {"PATCH", "", true},
        {"POST", "x", true}, {"GET", "", false}, {"DELETE", "abc", true},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.method << " with " << c.body.size() << " body bytes") {
            auto wire = http::serialize(make_request(c.method, "/", c.body));
            std::string field = "Content-Length: " + std::to_string(c.body.size()) + "\r\n";
            BOOST_TEST((wire.find(field) != std::string::npos) == c.expect_length);
            BOOST_TEST(wire.ends_with("\r\n\r\n" + c.body));
        }
    }
}

BOOST_AUTO_TEST_CASE(serialize_keeps_given_content_length) {
    auto r = make_request("POST", "/", "abc");
    r.headers.add("content-length", "3");
    auto wire = http::serialize(r);
    BOOST_TEST(wire == "POST / HTTP/1.1\r\nHost: example.com\r\ncontent-length: 3\r\n\r\nabc");
}

BOOST_AUTO_TEST_CASE(serialize_chunked_body) {
    auto r = make_request("POST", "/", std::string(20, 'z'));
    r.headers.add("Transfer-Encoding", "chunked");
    auto wire = http::serialize(r);
    BOOST_TEST(wire.ends_with("\r\n\r\n14\r\n" + std::string(20, 'z') + "\r\n0\r\n\r\n"));
    BOOST_TEST(wire.find("Content-Length") == std::string::npos);
    BOOST_TEST(parse_one_request(wire).body == r.body);

    auto empty = make_request("POST", "/");
    empty.headers.add("Transfer-Encoding", "chunked");
    BOOST_TEST(http::serialize(empty).ends_with("\r\n\r\n0\r\n\r\n"));
}

BOOST_AUTO_TEST_CASE(serialize_request_round_trips) {
    auto r = make_request("PUT", "/hooks/1", "{\"a\":1}");
    r.headers.add("Content-Type", "application/json");
    r.headers.add("X-Empty", "");
    r.http_version = 10;
    auto parsed = parse_one_request(http::serialize(r));
    BOOST_TEST(parsed.method == r.method);
    BOOST_TEST(parsed.target == r.target);
    BOOST_TEST(parsed.http_version == 10);
    BOOST_TEST(parsed.body == r.body);
    BOOST_REQUIRE_EQUAL(parsed.headers.size(), 4u);
    BOOST_TEST(*parsed.headers.find("Content-Type") == "application/json");
    BOOST_TEST(*parsed.headers.find("Content-Length") == "7");
}

BOOST_AUTO_TEST_CASE(serialize_rejects_invalid_requests) {
    struct invalid_case {
        char const* name;
        http::request r;
    };
    auto with_field = [](std::string name, std::string value) {
        auto r = make_request("POST", "/");
        r.headers.add(std::move(name), std::move(value));
        return r;
    };
    auto with_version = [](int v) {
        auto r = make_request("GET", "/");
        r.http_version = v;
        return r;
    };
    std::vector<invalid_case> cases = {
        {"empty method", make_request("", "/")},
        {"space in method", make_request("GE T", "/")},
        {"empty target", make_request("GET", "")},
        {"space in target", make_request("GET", "/a b")},
        {"CRLF in target", make_request("GET", "/a\r\nX: y")},
        {"CRLF in value", with_field("X", "a\r\nInjected: 1")},
        {"LF in value", with_field("X", "a\nb")},
        {"NUL in value", with_field("X", std::string("a\0b", 3))},
        {"colon in name", with_field("X:Y", "a")},
        {"empty name", with_field("", "a")},
        {"length mismatch", with_field("Content-Length", "5")},
        {"length not digits", with_field("Content-Length", "-0")},
        {"gzip last", with_field("Transfer-Encoding", "chunked, gzip")},
        {"chunked twice", with_field("Transfer-Encoding", "chunked, chunked")},
        {"version 2", with_version(20)},
    };
    auto both = with_field("Transfer-Encoding", "chunked");
    both.headers.add("Content-Length", "0");
    cases.push_back({"length and chunked", both});
    auto old = with_field("Transfer-Encoding", "chunked");
    old.http_version = 10;
    cases.push_back({"chunked in HTTP/1.0", old});
    auto two = with_field("Content-Length", "0");
    two.headers.add("Content-Length", "0");
    cases.push_back({"two lengths", two});

    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            BOOST_CHECK_THROW(http::serialize(c.r), std::invalid_argument);
        }
    }
}

BOOST_AUTO_TEST_CASE(serialize_response_defaults) {
    http::response r;
    r.status = 404;
    r.body = "missing";
    BOOST_TEST(http::serialize(r) == "HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nmissing");

    http::response custom;
    custom.status = 299;
    BOOST_TEST(http::serialize(custom) == "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");

    http::response reasoned;
    reasoned.status = 200;
    reasoned.reason = "Fine";
    reasoned.http_version = 10;
    BOOST_TEST(http::serialize(reasoned) == "HTTP/1.0 200 Fine\r\nContent-Length: 0\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(serialize_bodiless_statuses_without_length) {
    for (int status : {100, 101, 204, 304}) {
        BOOST_TEST_CONTEXT(status) {
            http::response r;
            r.status = status;
            auto wire = http::serialize(r);
            BOOST_TEST(wire.find("Content-Length") == std::string::npos);
            BOOST_TEST(
                wire.ends_with(" " + std::string(http::default_reason(status)) + "\r\n\r\n"));
            r.body = "x";
            BOOST_CHECK_THROW(http::serialize(r), std::invalid_argument);
        }
    }
    http::response no_content;
    no_content.status = 204;
    no_content.headers.add("Content-Length", "0");
    BOOST_CHECK_THROW(http::serialize(no_content), std::invalid_argument);

    http::response not_modified;
    not_modified.status = 304;
    not_modified.headers.add("Content-Length", "120");
    BOOST_TEST(http::serialize(not_modified) ==
               "HTTP/1.1 304 Not Modified\r\nContent-Length: 120\r\n\r\n");
}

BOOST_AUTO_TEST_CASE(serialize_head_response_keeps_length) {
    http::response r;
    r.status = 200;
    r.headers.add("Content-Length", "42");
    BOOST_TEST(http::serialize(r) == "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
    r.body = "short";
    BOOST_CHECK_THROW(http::serialize(r), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(serialize_response_round_trips) {
    http::response r;
    r.status = 201;
    r.headers.add("Location", "/hooks/whk_1");
    r.headers.add("Transfer-Encoding", "chunked");
    r.body = "created";
    auto parsed = parse_one_response(http::serialize(r));
    BOOST_TEST(parsed.status == 201);
    BOOST_TEST(parsed.reason == "Created");
    BOOST_TEST(parsed.body == "created");
    BOOST_TEST(*parsed.headers.find("Location") == "/hooks/whk_1");
}

BOOST_AUTO_TEST_CASE(serialize_rejects_invalid_responses) {
    http::response low;
    low.status = 99;
    BOOST_CHECK_THROW(http::serialize(low), std::invalid_argument);
    http::response high;
    high.status = 600;
    BOOST_CHECK_THROW(http::serialize(high), std::invalid_argument);
    http::response injected;
    injected.status = 200;
    injected.reason = "OK\r\nSet-Cookie: a=b";
    BOOST_CHECK_THROW(http::serialize(injected), std::invalid_argument);
    http::response bad_value;
    bad_value.status = 200;
    bad_value.headers.add("X", "a\rb");
    BOOST_CHECK_THROW(http::serialize(bad_value), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(prefix_matches_serialize) {
    http::fields fixed;
    fixed.add("Host", "example.com:8443");
    fixed.add("Content-Type", "application/json");
    http::request_prefix prefix("POST", "/hooks/1?x=y", fixed);
    http::field_view const more[] = {{"webhook-id", "msg_1"}, {"webhook-timestamp", "1700000000"}};

    for (std::string body : {std::string(), std::string(R"({"n":1})")}) {
        auto wire = prefix.finish(more, body);

        auto expected = make_request("POST", "/hooks/1?x=y", body);
        expected.headers = fixed;
        expected.headers.add("webhook-id", "msg_1");
        expected.headers.add("webhook-timestamp", "1700000000");
        BOOST_TEST(wire == http::serialize(expected));

        auto parsed = parse_one_request(wire);
        BOOST_TEST(parsed.body == body);
        BOOST_TEST(parsed.headers.find("webhook-id").value_or("") == "msg_1");
        BOOST_TEST(parsed.headers.find("Content-Length").value_or("") ==
                   std::to_string(body.size()));
    }
}

BOOST_AUTO_TEST_CASE(prefix_rejects_invalid_parts) {
    http::fields fixed;
    fixed.add("Host", "example.com");
    BOOST_CHECK_THROW(http::request_prefix("PO ST", "/", fixed), std::invalid_argument);
    BOOST_CHECK_THROW(http::request_prefix("POST", "/a b", fixed), std::invalid_argument);
    BOOST_CHECK_THROW(http::request_prefix("POST", "", fixed), std::invalid_argument);

    auto injected = fixed;
    injected.add("User-Agent", "x\r\nEvil: 1");
    BOOST_CHECK_THROW(http::request_prefix("POST", "/", injected), std::invalid_argument);
    for (auto framing : {"Content-Length", "Transfer-Encoding"}) {
        auto framed = fixed;
        framed.add(framing, framing == std::string("Content-Length") ? "0" : "chunked");
        BOOST_CHECK_THROW(http::request_prefix("POST", "/", framed), std::invalid_argument);
    }

    http::request_prefix prefix("POST", "/", fixed);
    http::field_view const bad_value[] = {{"webhook-id", "a\r\nEvil: 1"}};
    BOOST_CHECK_THROW(prefix.finish(bad_value, ""), std::invalid_argument);
    http::field_view const bad_name[] = {{"web hook", "a"}};
    BOOST_CHECK_THROW(prefix.finish(bad_name, ""), std::invalid_argument);
    http::field_view const framing[] = {{"content-length", "5"}};
    BOOST_CHECK_THROW(prefix.finish(framing, "12345"), std::invalid_argument);
}
