// libFuzzer target for revdesk::http::response_parser.
//
// For every input it checks three properties. The parser never reads out of bounds or consumes
// more than it was given. Splitting the input changes neither the responses nor the error. The
// body cap keeps exactly a prefix of the body. The first input byte picks the limits, whether
// the response answers a HEAD request and the body cap.
//
// Build and run (clang 14):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       tests/fuzz/fuzz_response_parser.cpp -o fuzz_response_parser
//   python3 tests/fuzz/make_seeds.py responses seeds-responses
//   ./fuzz_response_parser -max_total_time=600 seeds-responses
#include <revdesk/http/parser.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace http = revdesk::http;

namespace {

struct run_result {
    std::vector<http::response> messages;
    std::vector<bool> truncated;
    std::error_code ec;
};

void check_at(bool condition, char const* expression, int line) {
    if (!condition) {
        std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, line, expression);
        std::abort();
    }
}

#define CHECK(condition) check_at((condition), #condition, __LINE__)

struct options {
    http::limits limits;
    bool head = false;
    std::size_t cap = std::string::npos;
};

run_result run(std::string_view input, options const& o, std::size_t piece) {
    run_result out;
    http::response_parser parser(o.limits);
    if (o.cap != std::string::npos) {
        parser.set_body_cap(o.cap);
    }
    if (o.head) {
        parser.expect_no_body();
    }
    std::size_t pos = 0;
    while (pos < input.size()) {
        std::string_view chunk = input.substr(pos, std::min(piece, input.size() - pos));
        while (!chunk.empty()) {
            std::size_t used = parser.feed(chunk, out.ec);
            CHECK(used <= chunk.size());
            chunk.remove_prefix(used);
            pos += used;
            if (out.ec) {
                return out;
            }
            if (parser.done()) {
                CHECK(parser.header_done());
                CHECK(parser.get().body.size() <= o.cap);
                out.truncated.push_back(parser.truncated());
                out.messages.push_back(parser.release());
                if (o.head) {
                    parser.expect_no_body();
                }
            } else {
                CHECK(chunk.empty());
            }
        }
    }
    parser.feed_eof(out.ec);
    if (!out.ec && parser.done()) {
        out.truncated.push_back(parser.truncated());
        out.messages.push_back(parser.release());
    }
    return out;
}

bool same_run(run_result const& a, run_result const& b) {
    if (a.ec != b.ec || a.messages.size() != b.messages.size() || a.truncated != b.truncated) {
        return false;
    }
    for (std::size_t i = 0; i < a.messages.size(); ++i) {
        auto const& x = a.messages[i];
        auto const& y = b.messages[i];
        if (x.status != y.status || x.reason != y.reason || x.http_version != y.http_version ||
            x.body != y.body || x.headers.size() != y.headers.size()) {
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
    options o;
    if (data[0] & 1) {
        o.limits.max_start_line = 64;
        o.limits.max_field = 48;
        o.limits.max_fields = 4;
        o.limits.max_header_bytes = 256;
        o.limits.max_body = 64;
        o.limits.max_chunk_size_digits = 3;
        o.limits.max_chunk_extension = 16;
        o.limits.max_trailer_bytes = 32;
    }
    o.head = (data[0] & 2) != 0;
    if (data[0] & 4) {
        o.cap = data[0] >> 4;
    }
    std::string_view input(reinterpret_cast<char const*>(data) + 1, size - 1);

    run_result whole = run(input, o, input.size() + 1);
    CHECK(same_run(whole, run(input, o, 1)));
    CHECK(same_run(whole, run(input, o, 1 + data[0] % 7)));

    if (o.cap != std::string::npos) {
        // The capped bodies are prefixes of the uncapped ones.
        options uncapped = o;
        uncapped.cap = std::string::npos;
        run_result full = run(input, uncapped, input.size() + 1);
        CHECK(full.ec == whole.ec);
        CHECK(full.messages.size() == whole.messages.size());
        for (std::size_t i = 0; i < full.messages.size(); ++i) {
            auto const& kept = whole.messages[i].body;
            auto const& all = full.messages[i].body;
            CHECK(all.compare(0, kept.size(), kept) == 0);
            CHECK(whole.truncated[i] == (all.size() > kept.size()));
        }
    }
    return 0;
}
