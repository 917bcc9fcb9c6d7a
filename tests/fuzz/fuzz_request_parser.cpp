// libFuzzer target for revdesk::http::request_parser.
//
// For every input it checks three properties. The parser never reads out of bounds or consumes
// more than it was given (the sanitizers and the checks below). Splitting the input at any point
// gives the same messages and the same error as one piece. Every message it accepts survives
// serialize() and parses back to the same message. The first input byte picks the limits, so
// the small-limit paths are reached too.
//
// Build and run (clang 14):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/fuzz_request_parser.cpp -o fuzz_request_parser
//   python3 tests/fuzz/make_seeds.py requests seeds-requests
//   ./fuzz_request_parser -max_total_time=600 seeds-requests
#include <revdesk/http/parser.hpp>
#include <revdesk/http/serializer.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace http = revdesk::http;

namespace {

struct run_result {
    std::vector<http::request> messages;
    std::error_code ec;
};

void check_at(bool condition, char const* expression, int line) {
    if (!condition) {
        std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, line, expression);
        std::abort();
    }
}

#define CHECK(condition) check_at((condition), #condition, __LINE__)

/// Feeds `input` in pieces of at most `piece` bytes, releasing each complete message.
run_result run(std::string_view input, http::limits const& l, std::size_t piece) {
    run_result out;
    http::request_parser parser(l);
    std::size_t pos = 0;
    while (pos < input.size()) {
        std::string_view chunk = input.substr(pos, std::min(piece, input.size() - pos));
        while (!chunk.empty()) {
            std::size_t used = parser.feed(chunk, out.ec);
            CHECK(used <= chunk.size());
            chunk.remove_prefix(used);
            pos += used;
            if (out.ec) {
                CHECK(parser.feed("x", out.ec) == 0); // stays failed
                CHECK(out.ec != std::error_code{});
                return out;
            }
            if (parser.done()) {
                CHECK(parser.header_done());
                out.messages.push_back(parser.release());
            } else {
                CHECK(chunk.empty()); // only a message end or an error stops early
            }
        }
    }
    return out;
}

bool same_message(http::request const& a, http::request const& b) {
    if (a.method != b.method || a.target != b.target || a.http_version != b.http_version ||
        a.body != b.body || a.headers.size() != b.headers.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.headers.size(); ++i) {
        if (a.headers.items()[i].name != b.headers.items()[i].name ||
            a.headers.items()[i].value != b.headers.items()[i].value) {
            return false;
        }
    }
    return true;
}

bool same_run(run_result const& a, run_result const& b) {
    if (a.ec != b.ec || a.messages.size() != b.messages.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.messages.size(); ++i) {
        if (!same_message(a.messages[i], b.messages[i])) {
            return false;
        }
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    http::limits l;
    if (data[0] & 1) {
        l.max_start_line = 64;
        l.max_field = 48;
        l.max_fields = 4;
        l.max_header_bytes = 256;
        l.max_body = 64;
        l.max_chunk_size_digits = 3;
        l.max_chunk_extension = 16;
        l.max_trailer_bytes = 32;
    }
    std::string_view input(reinterpret_cast<char const*>(data) + 1, size - 1);

    run_result whole = run(input, l, input.size() + 1);
    CHECK(same_run(whole, run(input, l, 1)));
    CHECK(same_run(whole, run(input, l, 1 + data[0] % 13)));

    for (auto const& message : whole.messages) {
        http::limits roomy;
        roomy.max_header_bytes = 1 << 20;
        roomy.max_start_line = 1 << 20;
        roomy.max_field = 1 << 20;
        roomy.max_fields = 1 << 20; // serialize() may add a Content-Length field
        std::string wire = http::serialize(message);
        run_result again = run(wire, roomy, wire.size());
        CHECK(!again.ec);
        CHECK(again.messages.size() == 1);
        http::request const& back = again.messages[0];
        // The serializer adds Content-Length to a POST, PUT or PATCH without framing fields.
        bool added_length = !message.headers.find("Content-Length") &&
                            !message.headers.find("Transfer-Encoding") &&
                            back.headers.size() == message.headers.size() + 1;
        if (!added_length) {
            CHECK(same_message(message, back));
        } else {
            CHECK(back.body == message.body);
            CHECK(back.method == message.method);
        }
    }
    return 0;
}
