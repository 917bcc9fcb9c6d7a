#include <revdesk/http/parser.hpp>

#define BOOST_TEST_MODULE http_llhttp_differential
#include <boost/test/unit_test.hpp>

#include "llhttp_oracle.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// Differential test of revdesk::http::request_parser against llhttp 8.1.
//
// Both parsers read the same byte streams: the project's corpus (tests/data/http/requests.json)
// and mutations of it generated from a fixed seed. Where both complete a message, method, target,
// version, fields, body and keep-alive must be equal. Where they disagree, the codec may only be
// the stricter one, and only for a reason listed in docs/http-conformance.md (the set
// `documented_stricter` below mirrors that list). The codec's own result must also not depend on
// how the input is split between calls to `feed`.
//
// NOTE: only requests are compared; response_parser is covered by the unit tests and its fuzz
// target, not by llhttp.

namespace http = revdesk::http;
namespace test = revdesk::test;

#ifndef REVDESK_HTTP_CORPUS
#define REVDESK_HTTP_CORPUS ""
#endif

namespace {

/// Returns the corpus path: REVDESK_HTTP_CORPUS when defined, else the file beside this source.
std::filesystem::path corpus_path() {
    std::string configured = REVDESK_HTTP_CORPUS;
    if (!configured.empty()) {
        return configured;
    }
    return std::filesystem::path(__FILE__).parent_path().parent_path() / "data" / "http" /
           "requests.json";
}

std::string printable(std::string_view bytes) {
    std::string out;
    for (unsigned char c : bytes) {
        if (c == '\r') {
            out += "\\r";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

// The enumerator names of http::error, as the corpus spells them.
std::map<std::string, http::error> const error_names = {
    {"bad_request_line", http::error::bad_request_line},
    {"bad_method", http::error::bad_method},
    {"unknown_method", http::error::unknown_method},
    {"bad_target", http::error::bad_target},
    {"bad_version", http::error::bad_version},
    {"version_not_supported", http::error::version_not_supported},
    {"bad_line_ending", http::error::bad_line_ending},
    {"bad_field_name", http::error::bad_field_name},
    {"space_before_colon", http::error::space_before_colon},
    {"bad_field_value", http::error::bad_field_value},
    {"obs_fold", http::error::obs_fold},
    {"space_after_start_line", http::error::space_after_start_line},
    {"bad_content_length", http::error::bad_content_length},
    {"multiple_content_length", http::error::multiple_content_length},
    {"content_length_and_transfer_encoding", http::error::content_length_and_transfer_encoding},
    {"transfer_encoding_in_http10", http::error::transfer_encoding_in_http10},
    {"bad_transfer_encoding", http::error::bad_transfer_encoding},
    {"unsupported_transfer_coding", http::error::unsupported_transfer_coding},
    {"bad_chunk_size", http::error::bad_chunk_size},
    {"bad_chunk_extension", http::error::bad_chunk_extension},
    {"bad_chunk_end", http::error::bad_chunk_end},
    {"bad_trailer", http::error::bad_trailer},
    {"start_line_too_long", http::error::start_line_too_long},
    {"field_too_long", http::error::field_too_long},
    {"too_many_fields", http::error::too_many_fields},
    {"header_too_large", http::error::header_too_large},
    {"body_too_large", http::error::body_too_large},
    {"chunk_size_too_long", http::error::chunk_size_too_long},
    {"chunk_extension_too_long", http::error::chunk_extension_too_long},
    {"trailer_too_large", http::error::trailer_too_large},
};

std::string name_of(std::error_code ec) {
    for (auto const& [name, e] : error_names) {
        if (ec == e) {
            return name;
        }
    }
    return ec.message();
}

// Errors with which the codec may reject what llhttp accepts, each a deliberate rule documented
// in docs/http-conformance.md. "incomplete" covers a message the codec is still reading where
// llhttp already failed or finished: the codec checks a line only once its LF has arrived.
std::set<std::string> const documented_stricter = {
    "unknown_method",                       // methods outside RFC 9110 and WebDAV (M-SEARCH *)
    "bad_target",                           // RFC 3986 characters, forms of RFC 9112 section 3.2
    "version_not_supported",                // only HTTP/1.0 and HTTP/1.1
    "bad_version",                          // HTTP-version grammar
    "bad_request_line",                     // request-line grammar
    "bad_line_ending",                      // CRLF only
    "bad_field_name",                       // field-name = token
    "bad_field_value",                      // no CTL in values
    "obs_fold",                             // RFC 9112 section 5.2
    "space_after_start_line",               // RFC 9112 section 2.2
    "space_before_colon",                   // RFC 9112 section 5.1
    "bad_content_length",                   // 1*DIGIT within 64 bits, no HTAB around it
    "content_length_and_transfer_encoding", // RFC 9112 section 6.3, rejected even when llhttp
                                            // is still waiting for the body
    "multiple_content_length",              // one Content-Length only
    "transfer_encoding_in_http10",          // RFC 9112 section 6.1
    "bad_transfer_encoding",                // chunked exactly once, last, no empty list elements
    "unsupported_transfer_coding",          // only chunked is implemented
    "bad_chunk_size",                       // chunk-size grammar
    "bad_chunk_extension",                  // chunk-ext grammar
    "bad_chunk_end",                        // CRLF after chunk data
    "bad_trailer",                          // trailer field-line grammar
    "start_line_too_long",                  // limits
    "field_too_long", "too_many_fields", "header_too_large", "body_too_large",
    "chunk_size_too_long", "chunk_extension_too_long", "trailer_too_large", "incomplete",
    "closes_connection", // `Connection: close` followed by HTAB, which llhttp 8.1 overlooks
};

enum class verdict { accept, reject, incomplete };

char const* to_string(verdict v) {
    switch (v) {
    case verdict::accept:
        return "accept";
    case verdict::reject:
        return "reject";
    case verdict::incomplete:
        return "incomplete";
    }
    return "?";
}

verdict from_oracle(test::oracle_verdict v) {
    switch (v) {
    case test::oracle_verdict::accept:
        return verdict::accept;
    case test::oracle_verdict::reject:
        return verdict::reject;
    case test::oracle_verdict::incomplete:
        return verdict::incomplete;
    }
    return verdict::reject;
}

struct codec_result {
    verdict v = verdict::accept;
    std::vector<http::request> messages;
    std::error_code ec;
};

/// Returns whether a server would stop reading HTTP after `r`: llhttp's rule for an upgrade
/// (CONNECT, or an Upgrade field with a Connection `upgrade` token) or a closing message.
bool ends_stream(http::request const& r) {
    if (!r.keep_alive() || r.method == "CONNECT") {
        return true;
    }
    auto connection = r.headers.find("Connection");
    return r.headers.find("Upgrade").has_value() && connection &&
           http::detail::connection_has(*connection, "upgrade");
}

/// Runs the codec over `input` in pieces: `piece` bytes at a time, with an extra cut at `split`.
codec_result run_codec(std::string_view input, std::size_t piece = std::string_view::npos,
                       std::size_t split = std::string_view::npos) {
    codec_result out;
    http::request_parser parser;
    std::size_t pos = 0;
    std::size_t message_start = 0;
    while (pos < input.size()) {
        std::size_t end = pos + std::min(piece, input.size() - pos);
        if (pos < split && split < end) {
            end = split;
        }
        std::string_view chunk = input.substr(pos, end - pos);
        while (!chunk.empty()) {
            std::size_t used = parser.feed(chunk, out.ec);
            chunk.remove_prefix(used);
            pos += used;
            if (out.ec) {
                out.v = verdict::reject;
                return out;
            }
            if (parser.done()) {
                out.messages.push_back(parser.release());
                message_start = pos;
                if (ends_stream(out.messages.back())) {
                    return out;
                }
            }
        }
    }
    // Bytes after the last message other than empty lines belong to an unfinished one.
    std::string_view rest = input.substr(message_start);
    while (rest.starts_with("\r\n")) {
        rest.remove_prefix(2);
    }
    out.v = rest.empty() ? verdict::accept : verdict::incomplete;
    return out;
}

bool same_results(codec_result const& a, codec_result const& b, std::string& difference) {
    if (a.v != b.v || a.ec != b.ec || a.messages.size() != b.messages.size()) {
        difference = std::string(to_string(a.v)) + "/" + name_of(a.ec) + "/" +
                     std::to_string(a.messages.size()) + " vs " + to_string(b.v) + "/" +
                     name_of(b.ec) + "/" + std::to_string(b.messages.size());
        return false;
    }
    for (std::size_t i = 0; i < a.messages.size(); ++i) {
        auto const& x = a.messages[i];
        auto const& y = b.messages[i];
        bool fields_equal = x.headers.size() == y.headers.size();
        for (std::size_t j = 0; fields_equal && j < x.headers.size(); ++j) {
            fields_equal = x.headers.items()[j].name == y.headers.items()[j].name &&
                           x.headers.items()[j].value == y.headers.items()[j].value;
        }
        if (x.method != y.method || x.target != y.target || x.http_version != y.http_version ||
            x.body != y.body || !fields_equal) {
            difference = "message " + std::to_string(i) + " differs";
            return false;
        }
    }
    return true;
}

/// Compares one message of each parser; returns an empty string when they are equal.
std::string compare_message(http::request const& ours, test::oracle_message const& theirs) {
    if (ours.method != theirs.method) {
        return "method " + ours.method + " vs " + theirs.method;
    }
    if (ours.target != theirs.target) {
        return "target " + printable(ours.target) + " vs " + printable(theirs.target);
    }
    if (ours.http_version != theirs.http_version) {
        return "version " + std::to_string(ours.http_version) + " vs " +
               std::to_string(theirs.http_version);
    }
    if (ours.headers.size() != theirs.fields.size()) {
        return "field count " + std::to_string(ours.headers.size()) + " vs " +
               std::to_string(theirs.fields.size());
    }
    for (std::size_t i = 0; i < theirs.fields.size(); ++i) {
        auto const& f = ours.headers.items()[i];
        if (f.name != theirs.fields[i].first || f.value != theirs.fields[i].second) {
            return "field " + printable(f.name) + ": " + printable(f.value) + " vs " +
                   printable(theirs.fields[i].first) + ": " + printable(theirs.fields[i].second);
        }
    }
    if (ours.body != theirs.body) {
        return "body " + printable(ours.body) + " vs " + printable(theirs.body);
    }
    return {};
}

/// The relation of the codec's result to llhttp's on one stream.
struct comparison {
    enum kind { agree, stricter, looser, mismatch } k = agree;
    std::string detail; // the codec's error name for `stricter`, a description otherwise
};

comparison compare(codec_result const& ours, test::oracle_result const& theirs) {
    std::size_t common = std::min(ours.messages.size(), theirs.messages.size());
    for (std::size_t i = 0; i < common; ++i) {
        std::string diff = compare_message(ours.messages[i], theirs.messages[i]);
        if (!diff.empty()) {
            return {comparison::mismatch, "message " + std::to_string(i) + ": " + diff};
        }
        if (ours.messages[i].keep_alive() && !theirs.messages[i].keep_alive) {
            return {comparison::looser, "message " + std::to_string(i) +
                                            ": codec keeps the connection, llhttp closes it"};
        }
        if (!ours.messages[i].keep_alive() && theirs.messages[i].keep_alive) {
            // Closing where llhttp keeps the connection is the safe side.
            return {comparison::stricter, "closes_connection"};
        }
    }
    verdict their_verdict = from_oracle(theirs.verdict);
    if (ours.messages.size() > theirs.messages.size()) {
        return {comparison::looser, "codec completed " + std::to_string(ours.messages.size()) +
                                        " messages, llhttp " +
                                        std::to_string(theirs.messages.size()) + " (" +
                                        theirs.error + ": " + theirs.reason + ")"};
    }
    std::string our_reason = ours.v == verdict::reject ? name_of(ours.ec) : "incomplete";
    if (ours.messages.size() < theirs.messages.size()) {
        return {comparison::stricter, our_reason};
    }
    if (ours.v == their_verdict) {
        return {comparison::agree, {}};
    }
    if (ours.v == verdict::accept) {
        return {comparison::looser, std::string("codec accepts, llhttp ") +
                                        to_string(their_verdict) + " (" + theirs.error + ": " +
                                        theirs.reason + ")"};
    }
    if (ours.v == verdict::incomplete && their_verdict == verdict::reject) {
        return {comparison::agree, {}}; // the codec has not read the offending line's end yet
    }
    return {comparison::stricter, our_reason};
}

/// Reads the corpus: JSON strings whose code points U+0000..U+00FF stand for single bytes.
struct corpus_case {
    std::string name;
    std::string raw;
    std::string expect;       // "accept", "incomplete" or an http::error enumerator name
    std::string llhttp;       // llhttp 8.1's verdict: "accept", "reject" or "incomplete"
    std::string llhttp_error; // llhttp's errno name for a reject
};

std::string bytes_from_json(boost::json::string const& s) {
    std::string out;
    std::string_view utf8(s.data(), s.size());
    for (std::size_t i = 0; i < utf8.size(); ++i) {
        auto c = static_cast<unsigned char>(utf8[i]);
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else {
            // Only two-byte sequences for U+0080..U+00FF appear in the corpus.
            BOOST_REQUIRE((c & 0xe0) == 0xc0 && c <= 0xc3 && i + 1 < utf8.size());
            auto next = static_cast<unsigned char>(utf8[++i]);
            out += static_cast<char>(((c & 0x1f) << 6) | (next & 0x3f));
        }
    }
    return out;
}

std::vector<corpus_case> const& corpus() {
    static std::vector<corpus_case> const cases = [] {
        std::ifstream file(corpus_path(), std::ios::binary);
        BOOST_REQUIRE_MESSAGE(file, "cannot open corpus " << corpus_path());
        std::stringstream text;
        text << file.rdbuf();
        std::vector<corpus_case> out;
        boost::json::value document = boost::json::parse(text.str());
        for (auto const& item : document.as_array()) {
            auto const& o = item.as_object();
            out.push_back(
                {std::string(o.at("name").as_string()), bytes_from_json(o.at("raw").as_string()),
                 std::string(o.at("expect").as_string()), std::string(o.at("llhttp").as_string()),
                 o.contains("llhttp_error") ? std::string(o.at("llhttp_error").as_string())
                                            : std::string()});
        }
        return out;
    }();
    return cases;
}

/// splitmix64: a small generator whose sequence is the same on every platform, unlike the
/// distributions of <random>.
class rng {
public:
    explicit rng(std::uint64_t seed)
        : state_(seed) {}

    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }

private:
    std::uint64_t state_;
};

/// Applies one to three random edits to `input`. An edit is a byte replacement, a bit flip, an
/// insertion of a byte that matters to HTTP framing (CR, LF, SP, HTAB, NUL, ':', ';', ',', '"',
/// digits and more), a deletion, a duplicated line, a case change or a truncation.
std::string mutate(std::string input, rng& r) {
    static constexpr std::string_view specials[] = {
        "\r",   "\n", " ",    "\t", std::string_view("\0", 1),
        ":",    ";",  ",",    "\"", "=",
        "0",    "1",  "9",    "a",  "f",
        "-",    "+",  "\r\n", "\\", "\x7f",
        "\xff",
    };
    std::size_t edits = 1 + r.below(3);
    for (std::size_t e = 0; e < edits; ++e) {
        std::size_t at = r.below(input.size() + 1);
        switch (r.below(8)) {
        case 0:
            if (at < input.size()) {
                input[at] = static_cast<char>(r.below(256));
            }
            break;
        case 1:
            if (at < input.size()) {
                input[at] = static_cast<char>(input[at] ^ (1 << r.below(8)));
            }
            break;
        case 2:
        case 3:
            input.insert(at, specials[r.below(std::size(specials))]);
            break;
        case 4:
            if (at < input.size()) {
                input.erase(at, 1 + r.below(3));
            }
            break;
        case 5: {
            auto line_end = input.find("\r\n", at);
            if (line_end != std::string::npos) {
                auto line_start = input.rfind("\r\n", at);
                line_start = line_start == std::string::npos ? 0 : line_start + 2;
                if (line_start <= line_end) {
                    std::string line = input.substr(line_start, line_end + 2 - line_start);
                    input.insert(line_start, line);
                }
            }
            break;
        }
        case 6:
            if (at < input.size() && std::isalpha(static_cast<unsigned char>(input[at]))) {
                input[at] = static_cast<char>(input[at] ^ 0x20);
            }
            break;
        case 7:
            if (at < input.size()) {
                input.resize(at + r.below(input.size() - at) + 1);
            }
            break;
        }
    }
    return input;
}

} // namespace

BOOST_AUTO_TEST_CASE(corpus_matches_expectations) {
    BOOST_REQUIRE_GE(corpus().size(), 200u);
    for (auto const& c : corpus()) {
        BOOST_TEST_CONTEXT(c.name << ": " << printable(c.raw)) {
            codec_result ours = run_codec(c.raw);
            std::string got = ours.v == verdict::reject ? name_of(ours.ec) : to_string(ours.v);
            BOOST_TEST(got == c.expect);
        }
    }
}

BOOST_AUTO_TEST_CASE(corpus_llhttp_verdicts_recorded) {
    for (auto const& c : corpus()) {
        BOOST_TEST_CONTEXT(c.name << ": " << printable(c.raw)) {
            auto theirs = test::llhttp_parse_requests(c.raw);
            BOOST_TEST(to_string(from_oracle(theirs.verdict)) == c.llhttp,
                       theirs.error << ": " << theirs.reason);
            BOOST_TEST(theirs.error == c.llhttp_error);
        }
    }
}

BOOST_AUTO_TEST_CASE(corpus_never_looser_than_llhttp) {
    std::map<std::string, int> stricter;
    for (auto const& c : corpus()) {
        BOOST_TEST_CONTEXT(c.name << ": " << printable(c.raw)) {
            auto result = compare(run_codec(c.raw), test::llhttp_parse_requests(c.raw));
            BOOST_TEST(result.k != comparison::looser, result.detail);
            BOOST_TEST(result.k != comparison::mismatch, result.detail);
            if (result.k == comparison::stricter) {
                ++stricter[result.detail];
                BOOST_TEST(documented_stricter.count(result.detail) == 1u, result.detail);
            }
        }
    }
    for (auto const& [reason, count] : stricter) {
        BOOST_TEST_MESSAGE("corpus: codec stricter than llhttp with " << reason << ": " << count);
    }
}

BOOST_AUTO_TEST_CASE(corpus_same_result_at_every_split) {
    for (auto const& c : corpus()) {
        if (c.raw.size() > 2048) {
            continue; // the long-line cases cost quadratic time here; the mutations cover them
        }
        codec_result whole = run_codec(c.raw);
        for (std::size_t split = 1; split < c.raw.size(); ++split) {
            std::string difference;
            bool same =
                same_results(whole, run_codec(c.raw, std::string_view::npos, split), difference);
            BOOST_TEST_CONTEXT(c.name << " split at " << split) {
                BOOST_TEST(same, difference);
            }
        }
        std::string difference;
        BOOST_TEST_CONTEXT(c.name << " byte by byte") {
            BOOST_TEST(same_results(whole, run_codec(c.raw, 1), difference), difference);
        }
    }
}

BOOST_AUTO_TEST_CASE(mutations_never_looser_than_llhttp) {
    constexpr std::size_t mutation_count = 100'000;
    constexpr std::uint64_t seed = 0x5eed'0f'4774'c0dec;
    rng r(seed);
    auto const& cases = corpus();

    std::map<std::string, int> stricter;
    std::map<std::string, int> failures; // looser or mismatching results, by description
    std::size_t agree = 0;
    std::size_t split_failures = 0;
    std::size_t llhttp_accepts = 0;

    for (std::size_t n = 0; n < mutation_count; ++n) {
        std::string const& base = cases[r.below(cases.size())].raw;
        std::string input = mutate(base, r);

        codec_result ours = run_codec(input);
        auto theirs = test::llhttp_parse_requests(input);
        llhttp_accepts += theirs.verdict == test::oracle_verdict::accept ? 1 : 0;
        comparison result = compare(ours, theirs);
        if (result.k == comparison::agree) {
            ++agree;
        } else if (result.k == comparison::stricter) {
            if (result.detail == "closes_connection" && stricter[result.detail] < 3) {
                BOOST_TEST_MESSAGE("closes_connection: " << printable(input));
            }
            ++stricter[result.detail];
            if (documented_stricter.count(result.detail) == 0) {
                ++failures["undocumented stricter " + result.detail];
                BOOST_TEST_MESSAGE("undocumented: " << result.detail << ": " << printable(input));
            }
        } else {
            if (failures[result.detail]++ == 0) {
                BOOST_TEST_MESSAGE((result.k == comparison::looser ? "looser: " : "mismatch: ")
                                   << result.detail << ": " << printable(input));
            }
        }

        // The split invariance: one random cut, and byte by byte, must change nothing.
        std::string difference;
        std::size_t cut = 1 + r.below(input.size() > 1 ? input.size() - 1 : 1);
        if (!same_results(ours, run_codec(input, std::string_view::npos, cut), difference) ||
            !same_results(ours, run_codec(input, 1), difference)) {
            if (split_failures++ < 5) {
                BOOST_TEST_MESSAGE("split changes the result (" << difference
                                                                << "): " << printable(input));
            }
        }
    }

    BOOST_TEST_MESSAGE("mutations: " << mutation_count << ", llhttp accepts " << llhttp_accepts
                                     << ", same verdict " << agree);
    for (auto const& [reason, count] : stricter) {
        BOOST_TEST_MESSAGE("mutations: codec stricter than llhttp with " << reason << ": "
                                                                         << count);
    }
    BOOST_TEST(failures.empty());
    for (auto const& [what, count] : failures) {
        BOOST_TEST_MESSAGE("failure: " << what << " x" << count);
    }
    BOOST_TEST(split_failures == 0u);
}
