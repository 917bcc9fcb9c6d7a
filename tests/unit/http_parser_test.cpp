#include <revdesk/http/parser.hpp>

#define BOOST_TEST_MODULE http_parser
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace http = revdesk::http;
using namespace std::string_literals;

namespace {

/// What a parser made of a byte stream: the messages it completed, then either a clear code
/// (every byte belonged to a complete message, or the stream ended mid-message) or its error.
template <class Message>
struct outcome {
    std::vector<Message> messages;
    std::error_code ec;
    bool incomplete = false; // the stream ended inside a message without an error
};

/// Feeds `input` to a fresh request parser in pieces of at most `piece` bytes, starting a new
/// piece also at `split` (so one split point can be placed anywhere).
outcome<http::request> parse_requests(std::string_view input, http::limits l = {},
                                      std::size_t piece = std::string_view::npos,
                                      std::size_t split = std::string_view::npos) {
    outcome<http::request> out;
    http::request_parser parser(l);
    std::size_t pos = 0;
    while (pos < input.size()) {
        std::size_t end = std::min(input.size(), pos + std::min(piece, input.size()));
        if (pos < split && split < end) {
            end = split;
        }
        std::string_view chunk = input.substr(pos, end - pos);
        while (!chunk.empty()) {
            std::size_t used = parser.feed(chunk, out.ec);
            BOOST_REQUIRE_LE(used, chunk.size());
            chunk.remove_prefix(used);
            pos += used;
            out.incomplete = true;
            if (out.ec) {
                return out;
            }
            if (parser.done()) {
                out.messages.push_back(parser.release());
                out.incomplete = false;
            } else {
                // Only the end of a message or an error stops a parser before the input's end.
                BOOST_REQUIRE(chunk.empty());
            }
        }
    }
    return out;
}

/// Parses exactly one request from `input` in one piece and returns its error code.
std::error_code request_error(std::string_view input, http::limits l = {}) {
    return parse_requests(input, l).ec;
}

outcome<http::response> parse_responses(std::string_view input, bool eof = true,
                                        std::size_t piece = std::string_view::npos) {
    outcome<http::response> out;
    http::response_parser parser;
    std::size_t pos = 0;
    while (pos < input.size()) {
        std::string_view chunk = input.substr(pos, std::min(piece, input.size() - pos));
        std::size_t used = parser.feed(chunk, out.ec);
        pos += used;
        if (out.ec) {
            return out;
        }
        if (parser.done()) {
            out.messages.push_back(parser.release());
        }
    }
    if (eof) {
        parser.feed_eof(out.ec);
        if (!out.ec && parser.done()) {
            out.messages.push_back(parser.release());
        }
    }
    return out;
}

std::string error_name(std::error_code ec) {
    return ec ? ec.message() : "success";
}

/// Returns the code of `e`, or a clear code for `http::error{}` (which means "no error" here).
std::error_code code_of(http::error e) {
    return e == http::error{} ? std::error_code{} : http::make_error_code(e);
}

} // namespace

BOOST_AUTO_TEST_CASE(feed_simple_get) {
    http::request_parser parser;
    std::error_code ec;
    std::string input = "GET /hooks?id=1 HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\n\r\n";
    std::size_t used = parser.feed(input, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(used == input.size());
    BOOST_TEST(parser.header_done());
    BOOST_TEST(parser.done());
    auto& r = parser.get();
    BOOST_TEST(r.method == "GET");
    BOOST_TEST(r.target == "/hooks?id=1");
    BOOST_TEST(r.http_version == 11);
    BOOST_TEST(r.headers.size() == 2u);
    BOOST_TEST(*r.headers.find("host") == "example.com");
    BOOST_TEST(*r.headers.find("X-Empty") == "");
    BOOST_TEST(r.body.empty());
    BOOST_TEST(r.keep_alive());
}

BOOST_AUTO_TEST_CASE(feed_keeps_names_and_trims_values) {
    auto out = parse_requests("GET / HTTP/1.1\r\nX-CaSe:  \t a  b \t \r\n\r\n");
    BOOST_REQUIRE(!out.ec);
    BOOST_REQUIRE_EQUAL(out.messages.size(), 1u);
    auto const& f = out.messages[0].headers.items().at(0);
    BOOST_TEST(f.name == "X-CaSe");
    BOOST_TEST(f.value == "a  b");
}

BOOST_AUTO_TEST_CASE(feed_content_length_body) {
    auto out =
        parse_requests("POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world");
    BOOST_REQUIRE(!out.ec);
    BOOST_REQUIRE_EQUAL(out.messages.size(), 1u);
    BOOST_TEST(out.messages[0].body == "hello world");
}

BOOST_AUTO_TEST_CASE(feed_chunked_body_drops_extensions_and_trailers) {
    std::string input = "POST /h HTTP/1.1\r\nHost: a\r\ntRANSFER-ENCODING: chunked\r\n\r\n"
                        "5;flag;name=value\r\nhello\r\n"
                        "6;q=\"quoted; str\"\r\n world\r\n"
                        "0\r\nX-Trailer: t\r\nContent-Length: 99\r\n\r\n";
    auto out = parse_requests(input);
    BOOST_REQUIRE_MESSAGE(!out.ec, error_name(out.ec));
    BOOST_REQUIRE_EQUAL(out.messages.size(), 1u);
    auto const& r = out.messages[0];
    BOOST_TEST(r.body == "hello world");
    BOOST_TEST(r.headers.size() == 2u);
    BOOST_TEST(!r.headers.find("X-Trailer").has_value());
    BOOST_TEST(!r.headers.find("Content-Length").has_value());
}

BOOST_AUTO_TEST_CASE(feed_stops_after_each_pipelined_request) {
    std::string first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    std::string second = "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    std::string third = "\r\nPOST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "1\r\nx\r\n0\r\n\r\n";
    std::string input = first + second + third;

    http::request_parser parser;
    std::error_code ec;
    std::size_t used = parser.feed(input, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(used == first.size());
    BOOST_TEST(parser.done());
    BOOST_TEST(parser.feed(std::string_view(input).substr(used), ec) == 0u);
    auto a = parser.release();
    BOOST_TEST(a.target == "/a");
    BOOST_TEST(a.body == "abc");

    std::size_t used2 = parser.feed(std::string_view(input).substr(used), ec);
    BOOST_TEST(used2 == second.size());
    BOOST_TEST(parser.release().target == "/b");

    std::size_t used3 = parser.feed(std::string_view(input).substr(used + used2), ec);
    BOOST_TEST(!ec);
    BOOST_TEST(used3 == third.size());
    auto c = parser.release();
    BOOST_TEST(c.target == "/c");
    BOOST_TEST(c.body == "x");
}

BOOST_AUTO_TEST_CASE(feed_http10_keep_alive_rules) {
    auto out =
        parse_requests("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                       "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    BOOST_REQUIRE(!out.ec);
    BOOST_REQUIRE_EQUAL(out.messages.size(), 3u);
    BOOST_TEST(out.messages[0].http_version == 10);
    BOOST_TEST(!out.messages[0].keep_alive());
    BOOST_TEST(out.messages[1].keep_alive());
    BOOST_TEST(!out.messages[2].keep_alive());
}

BOOST_AUTO_TEST_CASE(feed_accepts_valid_targets_and_methods) {
    std::vector<std::string> lines = {
        "GET / HTTP/1.1",
        "GET /a/b;c=d/%7Efoo?x=1&y=%20z/?:@!$'()*+,;= HTTP/1.1",
        "GET http://example.com:8080/p?q HTTP/1.1",
        "GET http://[::1]:80/ HTTP/1.1",
        "CONNECT example.com:443 HTTP/1.1",
        "CONNECT [::1]:443 HTTP/1.1",
        "OPTIONS * HTTP/1.1",
        "M-SEARCH * HTTP/1.1",
        "PROPFIND /dav HTTP/1.1",
        "PATCH /x HTTP/1.0",
    };
    // M-SEARCH with asterisk-form is an exception of UPnP, not of RFC 9112: rejected.
    for (auto const& line : lines) {
        BOOST_TEST_CONTEXT(line) {
            auto ec = request_error(line + "\r\nHost: a\r\n\r\n");
            if (line.starts_with("M-SEARCH")) {
                BOOST_TEST(ec == http::error::bad_target);
            } else {
                BOOST_TEST(!ec, error_name(ec));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(feed_ignores_empty_lines_before_request_line) {
    auto out = parse_requests("\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    BOOST_REQUIRE(!out.ec);
    BOOST_TEST(out.messages.size() == 1u);
}

struct reject_case {
    char const* name;
    std::string input;
    http::error expected;
};

// Each case breaks one rule; the comment of each group names the rule.
std::vector<reject_case> const request_rejects = {
    // Request line: RFC 9112 section 3.
    {"no version", "GET /\r\n\r\n", http::error::bad_request_line},
    {"double space", "GET  / HTTP/1.1\r\n\r\n", http::error::bad_request_line},
    {"tab separator", "GET\t/ HTTP/1.1\r\n\r\n", http::error::bad_request_line},
    {"leading space", " GET / HTTP/1.1\r\n\r\n", http::error::bad_request_line},
    {"trailing space", "GET / HTTP/1.1 \r\n\r\n", http::error::bad_request_line},
    {"space in target", "GET /a b HTTP/1.1\r\n\r\n", http::error::bad_request_line},
    {"method only", "GET\r\n\r\n", http::error::bad_request_line},
    {"method with slash", "GE/T / HTTP/1.1\r\n\r\n", http::error::bad_method},
    {"method with NUL", "GE\0T / HTTP/1.1\r\n\r\n"s, http::error::bad_method},
    {"lower-case method", "get / HTTP/1.1\r\n\r\n", http::error::unknown_method},
    {"unknown method", "FOO / HTTP/1.1\r\n\r\n", http::error::unknown_method},
    {"NUL in target", "GET /a\0b HTTP/1.1\r\n\r\n"s, http::error::bad_target},
    {"DEL in target", "GET /a\x7f HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"byte over 0x7f in target", "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"fragment in target", "GET /a#b HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"quote in target", "GET /a\"b HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"backslash in target", "GET /a\\b HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"bad percent escape", "GET /a%zz HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"truncated percent escape", "GET /a%4 HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"asterisk with GET", "GET * HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"CONNECT origin-form", "CONNECT /a HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"CONNECT without port", "CONNECT example.com HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"relative target", "GET a/b HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"brackets in origin-form", "GET /[a] HTTP/1.1\r\n\r\n", http::error::bad_target},
    {"lower-case version", "GET / http/1.1\r\n\r\n", http::error::bad_version},
    {"short version", "GET / HTTP/1\r\n\r\n", http::error::bad_version},
    {"two-digit minor", "GET / HTTP/1.10\r\n\r\n", http::error::bad_version},
    {"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", http::error::version_not_supported},
    {"HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", http::error::version_not_supported},
    {"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", http::error::version_not_supported},

    // Line endings: RFC 9112 section 2.2, read strictly (CRLF only).
    {"bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", http::error::bad_line_ending},
    {"bare LF after field", "GET / HTTP/1.1\r\nHost: a\n\r\n", http::error::bad_line_ending},
    {"bare LF as end of header", "GET / HTTP/1.1\r\nHost: a\r\n\n", http::error::bad_line_ending},
    {"bare CR in request line", "GET /\r HTTP/1.1\r\n\r\n", http::error::bad_line_ending},
    {"bare CR in field value", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", http::error::bad_line_ending},
    {"bare CR in field name", "GET / HTTP/1.1\r\nA\rB: c\r\n\r\n", http::error::bad_line_ending},
    {"CR CR LF", "GET / HTTP/1.1\r\r\n\r\n", http::error::bad_line_ending},
    {"bare LF leading line", "\nGET / HTTP/1.1\r\n\r\n", http::error::bad_line_ending},

    // Field lines: RFC 9110 section 5, RFC 9112 section 5.
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", http::error::space_before_colon},
    {"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", http::error::space_before_colon},
    {"no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", http::error::bad_field_name},
    {"name only", "GET / HTTP/1.1\r\nHost\r\n\r\n", http::error::bad_field_name},
    {"empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", http::error::bad_field_name},
    {"space inside name", "GET / HTTP/1.1\r\nX Y: a\r\n\r\n", http::error::bad_field_name},
    {"NUL in name", "GET / HTTP/1.1\r\nX\0Y: a\r\n\r\n"s, http::error::bad_field_name},
    {"non-ASCII name", "GET / HTTP/1.1\r\nX\xe9: a\r\n\r\n", http::error::bad_field_name},
    {"NUL in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"s, http::error::bad_field_value},
    {"DEL in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", http::error::bad_field_value},
    {"control in value", "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", http::error::bad_field_value},
    {"escape in value", "GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n", http::error::bad_field_value},
    {"obs-fold with space", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", http::error::obs_fold},
    {"obs-fold with tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", http::error::obs_fold},
    {"space after request line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
     http::error::space_after_start_line},

    // Content-Length: RFC 9110 section 8.6, RFC 9112 section 6.3.
    {"negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
     http::error::bad_content_length},
    {"plus sign", "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", http::error::bad_content_length},
    {"hex length", "POST / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\n",
     http::error::bad_content_length},
    {"space inside length", "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
     http::error::bad_content_length},
    {"empty length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", http::error::bad_content_length},
    {"letters", "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", http::error::bad_content_length},
    {"fraction", "POST / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\n", http::error::bad_content_length},
    {"overflow 2^64", "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
     http::error::bad_content_length},
    {"overflow many digits", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
     http::error::bad_content_length},
    {"tab around length", "POST / HTTP/1.1\r\nContent-Length:\t1\r\n\r\nx",
     http::error::bad_content_length},
    {"two equal lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
     http::error::multiple_content_length},
    {"two different lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nx",
     http::error::multiple_content_length},
    {"list of equal values", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
     http::error::multiple_content_length},
    {"list of different values", "POST / HTTP/1.1\r\nContent-Length: 1,2\r\n\r\nx",
     http::error::multiple_content_length},

    // Transfer-Encoding: RFC 9112 sections 6.1 and 6.3.
    {"length then chunked",
     "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     http::error::content_length_and_transfer_encoding},
    {"chunked then length",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n",
     http::error::content_length_and_transfer_encoding},
    {"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     http::error::transfer_encoding_in_http10},
    {"gzip only", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
     http::error::unsupported_transfer_coding},
    {"gzip then chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     http::error::unsupported_transfer_coding},
    {"identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
     http::error::unsupported_transfer_coding},
    {"chunked then gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"chunked twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"chunked in two fields",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"chunked field then gzip field",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"empty element", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"empty value", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"tab after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"chunked with parameter", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;a=b\r\n\r\n",
     http::error::bad_transfer_encoding},
    {"chunkedx", "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n",
     http::error::unsupported_transfer_coding},
    {"quoted chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
     http::error::bad_transfer_encoding},

    // Chunked framing: RFC 9112 section 7.1.
    {"no chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
     http::error::bad_chunk_size},
    {"signed chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
     http::error::bad_chunk_size},
    {"0x chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\n",
     http::error::bad_chunk_size},
    {"leading space chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\n",
     http::error::bad_chunk_size},
    {"bare LF after chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n",
     http::error::bad_line_ending},
    {"CR without LF after size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\rx",
     http::error::bad_line_ending},
    {"data longer than size",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
     http::error::bad_chunk_end},
    {"bare LF after data", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n",
     http::error::bad_chunk_end},
    {"extension without name", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"extension with NUL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\0\r\nx\r\n"s,
     http::error::bad_chunk_extension},
    {"extension empty value", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"extension unterminated quote",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"b\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"extension bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nx\r\n",
     http::error::bad_line_ending},
    {"trailing space after size",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n",
     http::error::bad_chunk_size},
    {"space before extension", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 ;a\r\nx\r\n",
     http::error::bad_chunk_size},
    {"space after semicolon", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1; a\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"space around equals", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a =b\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"quoted-pair in extension",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"\\\"\"\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"extension after token value",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b;c\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"text after quoted value",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"b\"c\r\nx\r\n",
     http::error::bad_chunk_extension},
    {"bad trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA : b\r\n\r\n",
     http::error::bad_trailer},
    {"trailer obs-fold",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
     http::error::bad_trailer},
    {"trailer bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\r\n",
     http::error::bad_line_ending},
    {"chunk size of 17 digits",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n",
     http::error::chunk_size_too_long},
};

BOOST_AUTO_TEST_CASE(feed_rejects_each_rule) {
    for (auto const& c : request_rejects) {
        BOOST_TEST_CONTEXT(c.name) {
            auto ec = request_error(c.input);
            BOOST_TEST(ec == c.expected, error_name(ec) << " != " << error_name(c.expected));
        }
    }
}

BOOST_AUTO_TEST_CASE(feed_rejects_each_rule_at_every_split) {
    for (auto const& c : request_rejects) {
        for (std::size_t split = 1; split < c.input.size(); ++split) {
            BOOST_TEST_CONTEXT(c.name << " split at " << split) {
                auto ec = parse_requests(c.input, {}, std::string_view::npos, split).ec;
                BOOST_TEST(ec == c.expected, error_name(ec));
            }
        }
        BOOST_TEST_CONTEXT(c.name << " byte by byte") {
            auto ec = parse_requests(c.input, {}, 1).ec;
            BOOST_TEST(ec == c.expected, error_name(ec));
        }
    }
}

BOOST_AUTO_TEST_CASE(feed_same_messages_at_every_split) {
    std::vector<std::string> inputs = {
        "GET /a HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n",
        "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.0\r\n\r\n",
        "\r\nPOST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=\"b;c\"\r\nabc\r\n"
        "A\r\n0123456789\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    };
    for (auto const& input : inputs) {
        auto whole = parse_requests(input);
        BOOST_REQUIRE(!whole.ec);
        for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}}) {
            for (std::size_t split = 0; split <= input.size(); ++split) {
                BOOST_TEST_CONTEXT("piece " << piece << " split " << split << ": " << input) {
                    auto parts = parse_requests(input, {}, piece, split);
                    BOOST_TEST(!parts.ec);
                    BOOST_REQUIRE_EQUAL(parts.messages.size(), whole.messages.size());
                    for (std::size_t i = 0; i < whole.messages.size(); ++i) {
                        auto const& a = whole.messages[i];
                        auto const& b = parts.messages[i];
                        BOOST_TEST(a.method == b.method);
                        BOOST_TEST(a.target == b.target);
                        BOOST_TEST(a.http_version == b.http_version);
                        BOOST_TEST(a.body == b.body);
                        BOOST_TEST(a.headers.size() == b.headers.size());
                        for (std::size_t j = 0; j < a.headers.size(); ++j) {
                            BOOST_TEST(a.headers.items()[j].name == b.headers.items()[j].name);
                            BOOST_TEST(a.headers.items()[j].value == b.headers.items()[j].value);
                        }
                    }
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(feed_enforces_each_limit) {
    http::limits small;
    small.max_start_line = 32;
    small.max_field = 32;
    small.max_fields = 4;
    small.max_header_bytes = 128;
    small.max_body = 10;
    small.max_chunk_size_digits = 4;
    small.max_chunk_extension = 8;
    small.max_trailer_bytes = 16;

    std::string chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct limit_case {
        char const* name;
        std::string input;
        http::error expected; // error{} when the input must pass
    };
    std::vector<limit_case> cases = {
        {"start line at limit", "GET /" + std::string(18, 'a') + " HTTP/1.1\r\n\r\n", {}},
        {"start line over limit", "GET /" + std::string(19, 'a') + " HTTP/1.1\r\n\r\n",
         http::error::start_line_too_long},
        {"field at limit", "GET / HTTP/1.1\r\nX: " + std::string(29, 'a') + "\r\n\r\n", {}},
        {"field over limit", "GET / HTTP/1.1\r\nX: " + std::string(30, 'a') + "\r\n\r\n",
         http::error::field_too_long},
        {"fields at limit", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", {}},
        {"fields over limit", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
         http::error::too_many_fields},
        {"header section over limit",
         "GET / HTTP/1.1\r\nA: " + std::string(27, 'a') + "\r\nB: " + std::string(27, 'a') +
             "\r\nC: " + std::string(27, 'a') + "\r\nD: " + std::string(27, 'a') + "\r\n\r\n",
         http::error::header_too_large},
        {"body at limit", "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", {}},
        {"declared body over limit", "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n",
         http::error::body_too_large},
        {"chunks at limit", chunked + "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", {}},
        {"chunk sum over limit", chunked + "5\r\n01234\r\n6\r\n", http::error::body_too_large},
        {"chunk size over limit", chunked + "b\r\n", http::error::body_too_large},
        {"chunk digits at limit", chunked + "0005\r\n01234\r\n0\r\n\r\n", {}},
        {"chunk digits over limit", chunked + "00005\r\n", http::error::chunk_size_too_long},
        {"chunk extension at limit", chunked + "1;abcdefg\r\nx\r\n0\r\n\r\n", {}},
        {"chunk extension over limit", chunked + "1;abcdefgh\r\n",
         http::error::chunk_extension_too_long},
        {"trailers at limit", chunked + "0\r\nA: 123456789\r\n\r\n", {}},
        {"trailers over limit", chunked + "0\r\nA: 1234567890\r\n\r\n",
         http::error::trailer_too_large},
        {"trailer field over limit", chunked + "0\r\nA: " + std::string(22, 'a') + "\r\n\r\n",
         http::error::trailer_too_large},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            auto ec = parse_requests(c.input, small).ec;
            BOOST_TEST(ec == code_of(c.expected), error_name(ec));
            BOOST_TEST(parse_requests(c.input, small, 1).ec == code_of(c.expected));
        }
    }
}

BOOST_AUTO_TEST_CASE(feed_rejects_long_line_before_its_end) {
    http::limits small;
    small.max_field = 16;
    http::request_parser parser(small);
    std::error_code ec;
    parser.feed("GET / HTTP/1.1\r\nX: ", ec);
    BOOST_TEST(!ec);
    parser.feed(std::string(13, 'a'), ec); // 16 bytes of line content: at the limit
    BOOST_TEST(!ec);
    parser.feed("\r", ec); // might still be the terminator
    BOOST_TEST(!ec);
    parser.feed("a", ec); // the CR was content: 18 bytes
    BOOST_TEST(ec == http::error::field_too_long);
}

BOOST_AUTO_TEST_CASE(feed_rejects_declared_length_without_reading_body) {
    http::limits small;
    small.max_body = 100;
    http::request_parser parser(small);
    std::error_code ec;
    std::string header = "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
    std::size_t used = parser.feed(header, ec);
    BOOST_TEST(ec == http::error::body_too_large);
    BOOST_TEST(used == header.size());
    BOOST_TEST(http::status_for(ec) == 413);

    parser.reset();
    parser.feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6", ec);
    BOOST_TEST(!ec);
    parser.feed("5", ec); // 0x65 = 101 bytes declared, before the line ends
    BOOST_TEST(ec == http::error::body_too_large);
}

BOOST_AUTO_TEST_CASE(feed_stays_failed_until_reset) {
    http::request_parser parser;
    std::error_code ec;
    parser.feed("GET / HTTP/1.1\r\nA : b\r\n\r\n", ec);
    BOOST_TEST(ec == http::error::space_before_colon);
    BOOST_TEST(parser.feed("GET / HTTP/1.1\r\n\r\n", ec) == 0u);
    BOOST_TEST(ec == http::error::space_before_colon);
    BOOST_TEST(!parser.done());
    parser.reset();
    parser.feed("GET / HTTP/1.1\r\n\r\n", ec);
    BOOST_TEST(!ec);
    BOOST_TEST(parser.done());
}

BOOST_AUTO_TEST_CASE(feed_reports_header_done_before_body) {
    http::request_parser parser;
    std::error_code ec;
    parser.feed("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nab", ec);
    BOOST_TEST(!ec);
    BOOST_TEST(parser.header_done());
    BOOST_TEST(!parser.done());
    BOOST_TEST(*parser.get().headers.find("expect") == "100-continue");
    parser.feed("cd", ec);
    BOOST_TEST(parser.done());
    BOOST_TEST(parser.get().body == "abcd");
}

BOOST_AUTO_TEST_CASE(status_for_maps_each_class) {
    struct status_case {
        http::error e;
        int status;
    };
    std::vector<status_case> cases = {
        {http::error::bad_request_line, 400},
        {http::error::content_length_and_transfer_encoding, 400},
        {http::error::bad_transfer_encoding, 400},
        {http::error::unsupported_transfer_coding, 501},
        {http::error::unknown_method, 501},
        {http::error::version_not_supported, 505},
        {http::error::body_too_large, 413},
        {http::error::chunk_extension_too_long, 413},
        {http::error::start_line_too_long, 414},
        {http::error::field_too_long, 431},
        {http::error::too_many_fields, 431},
        {http::error::header_too_large, 431},
        {http::error::trailer_too_large, 431},
        {http::error::unexpected_eof, 400},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(error_name(c.e)) {
            BOOST_TEST(http::status_for(c.e) == c.status);
        }
    }
    BOOST_TEST(http::status_for({}) == 0);
    BOOST_TEST(http::status_for(std::make_error_code(std::errc::io_error)) == 500);
}

BOOST_AUTO_TEST_CASE(error_codes_have_messages_and_category) {
    std::error_code ec = http::error::obs_fold;
    BOOST_TEST(ec.category().name() == std::string("revdesk.http"));
    BOOST_TEST(ec.message().find("folding") != std::string::npos);
    for (int v = static_cast<int>(http::error::bad_request_line);
         v <= static_cast<int>(http::error::bad_host); ++v) {
        BOOST_TEST_CONTEXT(v) {
            BOOST_TEST(http::category().message(v).find("unknown") == std::string::npos);
        }
    }
}

BOOST_AUTO_TEST_CASE(validate_host_checks_count_and_value) {
    struct host_case {
        std::string input;
        std::error_code expected;
    };
    std::vector<host_case> cases = {
        {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", {}},
        {"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", {}},
        {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", {}},
        {"GET / HTTP/1.1\r\nHost:\r\n\r\n", {}},
        {"GET / HTTP/1.0\r\n\r\n", {}},
        {"GET / HTTP/1.1\r\n\r\n", http::error::missing_host},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", http::error::multiple_host},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", http::error::bad_host},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", http::error::bad_host},
        {"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", http::error::bad_host},
        {"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", http::error::bad_host},
        {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", http::error::bad_host},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.input) {
            auto out = parse_requests(c.input);
            BOOST_REQUIRE(!out.ec);
            BOOST_REQUIRE_EQUAL(out.messages.size(), 1u);
            BOOST_TEST(http::validate_host(out.messages[0]) == c.expected);
        }
    }
}

// Responses.

BOOST_AUTO_TEST_CASE(response_content_length_body) {
    auto out = parse_responses("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 201 \r\n"
                               "Content-Length: 0\r\n\r\n",
                               false);
    BOOST_REQUIRE(!out.ec);
    BOOST_REQUIRE_EQUAL(out.messages.size(), 2u);
    BOOST_TEST(out.messages[0].status == 200);
    BOOST_TEST(out.messages[0].reason == "OK");
    BOOST_TEST(out.messages[0].body == "ok");
    BOOST_TEST(out.messages[1].status == 201);
    BOOST_TEST(out.messages[1].reason == "");
}

BOOST_AUTO_TEST_CASE(response_skips_interim_responses) {
    std::string input =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    for (std::size_t piece : {std::size_t{1}, std::string_view::npos}) {
        auto out = parse_responses(input, false, piece);
        BOOST_REQUIRE(!out.ec);
        BOOST_REQUIRE_EQUAL(out.messages.size(), 1u);
        BOOST_TEST(out.messages[0].status == 200);
        BOOST_TEST(!out.messages[0].headers.find("Link").has_value());
        BOOST_TEST(out.messages[0].body == "x");
    }
}

BOOST_AUTO_TEST_CASE(response_switching_protocols_ends_at_header) {
    http::response_parser parser;
    std::error_code ec;
    std::string input = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"s;
    std::size_t used = parser.feed(input, ec);
    BOOST_TEST(!ec);
    BOOST_TEST(parser.done());
    BOOST_TEST(used == input.size() - 2);
}

BOOST_AUTO_TEST_CASE(response_without_body_by_status) {
    for (int status : {204, 304}) {
        BOOST_TEST_CONTEXT(status) {
            std::string input = "HTTP/1.1 " + std::to_string(status) +
                                " X\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\n";
            http::response_parser parser;
            std::error_code ec;
            std::size_t used = parser.feed(input, ec);
            BOOST_TEST(!ec);
            BOOST_TEST(parser.done());
            BOOST_TEST(used == input.find("HTTP/1.1 200"));
        }
    }
}

BOOST_AUTO_TEST_CASE(response_to_head_has_no_body) {
    http::response_parser parser;
    parser.expect_no_body();
    std::error_code ec;
    std::string input = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    BOOST_TEST(parser.feed(input, ec) == input.size());
    BOOST_TEST(!ec);
    BOOST_TEST(parser.done());
    BOOST_TEST(*parser.get().headers.find("Content-Length") == "10");
    parser.reset();
    parser.feed(input, ec);
    BOOST_TEST(!parser.done()); // expect_no_body applies to one message only
}

BOOST_AUTO_TEST_CASE(response_body_until_eof) {
    http::response_parser parser;
    std::error_code ec;
    parser.feed("HTTP/1.0 200 OK\r\n\r\nsome ", ec);
    parser.feed("bytes", ec);
    BOOST_TEST(!ec);
    BOOST_TEST(parser.header_done());
    BOOST_TEST(!parser.done());
    parser.feed_eof(ec);
    BOOST_TEST(!ec);
    BOOST_TEST(parser.done());
    BOOST_TEST(parser.get().body == "some bytes");
}

BOOST_AUTO_TEST_CASE(response_eof_inside_message_fails) {
    std::vector<std::string> inputs = {
        "",
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
    };
    for (auto const& input : inputs) {
        BOOST_TEST_CONTEXT(input) {
            auto out = parse_responses(input, true);
            BOOST_TEST(out.ec == http::error::unexpected_eof);
        }
    }
}

BOOST_AUTO_TEST_CASE(response_body_cap_truncates_and_follows_framing) {
    http::response_parser parser;
    parser.set_body_cap(4);
    std::error_code ec;
    std::string first = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n";
    std::size_t used = parser.feed(first + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz", ec);
    BOOST_TEST(!ec);
    BOOST_TEST(used == first.size());
    BOOST_TEST(parser.done());
    BOOST_TEST(parser.truncated());
    BOOST_TEST(parser.get().body == "abcd");

    parser.release();
    BOOST_TEST(!parser.truncated());
    parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz", ec);
    BOOST_TEST(parser.done());
    BOOST_TEST(!parser.truncated());
    BOOST_TEST(parser.get().body == "xyz");
}

BOOST_AUTO_TEST_CASE(response_keeps_only_named_fields) {
    std::string_view const kept[] = {"retry-after", "Connection"};
    http::response_parser parser;
    parser.keep_only(kept);
    std::error_code ec;
    std::string first = "HTTP/1.1 503 Busy\r\nServer: x\r\nRetry-After: 7\r\n"
                        "Content-Length: 4\r\nCONNECTION: close\r\nX-Other: y\r\n\r\nbusy";
    std::size_t used = parser.feed(first + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ec);
    BOOST_TEST(!ec);
    BOOST_TEST(used == first.size()); // the dropped Content-Length still framed the body
    BOOST_TEST(parser.done());
    auto const& r = parser.get();
    BOOST_TEST(r.body == "busy");
    BOOST_REQUIRE_EQUAL(r.headers.size(), 2u);
    BOOST_TEST(r.headers.find("Retry-After").value_or("") == "7");
    BOOST_TEST(!r.keep_alive());
    BOOST_TEST(!r.headers.find("Server").has_value());

    // The filter stays across release(), and a field that is dropped still counts towards
    // max_fields, as does each field of an interim response only until that response ends.
    parser.release();
    BOOST_TEST(parser.feed("HTTP/1.1 200 OK\r\nA: 1\r\nRetry-After: 2\r\n\r\n", ec) > 0);
    BOOST_TEST(parser.get().headers.size() == 1u);

    http::limits few;
    few.max_fields = 3;
    http::response_parser bounded(few);
    bounded.keep_only(kept);
    bounded.feed("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nLink: </b>\r\nLink: </c>\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n",
                 ec);
    BOOST_TEST(!ec);
    BOOST_TEST(bounded.done());
    bounded.release();
    bounded.feed("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n", ec);
    BOOST_TEST(ec == http::error::too_many_fields);
}

BOOST_AUTO_TEST_CASE(response_rejects_each_rule) {
    struct response_case {
        char const* name;
        std::string input;
        http::error expected;
    };
    std::vector<response_case> cases = {
        {"no reason separator", "HTTP/1.1 200\r\n\r\n", http::error::bad_status_line},
        {"no status", "HTTP/1.1\r\n\r\n", http::error::bad_status_line},
        {"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", http::error::bad_status_code},
        {"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", http::error::bad_status_code},
        {"status 099", "HTTP/1.1 099 X\r\n\r\n", http::error::bad_status_code},
        {"status 600", "HTTP/1.1 600 X\r\n\r\n", http::error::bad_status_code},
        {"bad version", "HTTP/1 200 OK\r\n\r\n", http::error::bad_version},
        {"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", http::error::version_not_supported},
        {"NUL in reason", "HTTP/1.1 200 O\0K\r\n\r\n"s, http::error::bad_reason},
        {"bare LF", "HTTP/1.1 200 OK\n\n", http::error::bad_line_ending},
        {"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", http::error::bad_status_line},
        {"length and chunked",
         "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         http::error::content_length_and_transfer_encoding},
        {"gzip only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
         http::error::unsupported_transfer_coding},
        {"chunked in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
         http::error::transfer_encoding_in_http10},
        {"obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", http::error::obs_fold},
        {"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
         http::error::bad_chunk_size},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            auto ec = parse_responses(c.input, false).ec;
            BOOST_TEST(ec == c.expected, error_name(ec));
            BOOST_TEST(parse_responses(c.input, false, 1).ec == c.expected);
        }
    }
}

BOOST_AUTO_TEST_CASE(response_eof_body_limit) {
    http::limits small;
    small.max_body = 4;
    http::response_parser parser(small);
    std::error_code ec;
    parser.feed("HTTP/1.1 200 OK\r\n\r\n1234", ec);
    BOOST_TEST(!ec);
    parser.feed("5", ec);
    BOOST_TEST(ec == http::error::body_too_large);
}
