// Throughput of revdesk::http::request_parser against llhttp 8.1 on typical requests.
//
// Not a test: it prints nanoseconds per request for each parser, the best of 15 repetitions in
// which the parsers take turns. llhttp runs twice: with empty callbacks (its raw scanning speed)
// and with callbacks that build the same revdesk::http::request the codec produces (the
// like-for-like comparison, since a server needs the fields as strings).
//
// Build and run from the repository root:
//   cd /tmp && for f in api http llhttp; do
//     gcc -O2 -c -I/usr/share/include/llhttp /usr/share/llhttp/$f.c; done; cd -
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -I/usr/share/include/llhttp
//     tests/llhttp/parser_benchmark.cpp /tmp/api.o /tmp/http.o /tmp/llhttp.o -o parser_benchmark
//   ./parser_benchmark
#include <revdesk/http/parser.hpp>

#include <llhttp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace http = revdesk::http;

namespace {

struct sample {
    char const* name;
    std::string bytes;
};

std::vector<sample> samples() {
    std::string json(1024, 'x');
    json.front() = '{';
    json.back() = '}';
    return {
        {"curl GET (3 fields)",
         "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
         "Accept: */*\r\n\r\n"},
        {"browser GET (9 fields)",
         "GET /dashboard/webhooks?page=2&sort=created HTTP/1.1\r\nHost: app.example.com\r\n"
         "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
         "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
         "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
         "Referer: https://app.example.com/dashboard\r\nConnection: keep-alive\r\n"
         "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
         "Cache-Control: max-age=0\r\n\r\n"},
        {"webhook POST, 1 KiB body",
         "POST /hooks/deliver HTTP/1.1\r\nHost: receiver.example\r\n"
         "Content-Type: application/json\r\nUser-Agent: revdesk-webhooks/1.0\r\n"
         "X-Revdesk-Signature: t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536"
         "d0ce8e108d8bd\r\nX-Revdesk-Event: ticket.created\r\nContent-Length: 1024\r\n\r\n" +
             json},
        {"chunked POST, 2 x 512 B",
         "POST /hooks/deliver HTTP/1.1\r\nHost: receiver.example\r\n"
         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" +
             json.substr(0, 512) + "\r\n200\r\n" + json.substr(512) + "\r\n0\r\n\r\n"},
    };
}

// llhttp callbacks that build an http::request, as a server would need.
struct building_state {
    http::request message;
    std::string field;
    std::string value;
    bool in_value = false;
};

building_state& state_of(llhttp_t* p) {
    return *static_cast<building_state*>(p->data);
}

int on_url(llhttp_t* p, char const* at, std::size_t n) {
    state_of(p).message.target.append(at, n);
    return 0;
}

int on_method(llhttp_t* p, char const* at, std::size_t n) {
    state_of(p).message.method.append(at, n);
    return 0;
}

int on_header_field(llhttp_t* p, char const* at, std::size_t n) {
    auto& s = state_of(p);
    if (s.in_value) {
        s.message.headers.add(std::move(s.field), std::move(s.value));
        s.field.clear();
        s.value.clear();
        s.in_value = false;
    }
    s.field.append(at, n);
    return 0;
}

int on_header_value(llhttp_t* p, char const* at, std::size_t n) {
    auto& s = state_of(p);
    s.in_value = true;
    s.value.append(at, n);
    return 0;
}

int on_headers_complete(llhttp_t* p) {
    auto& s = state_of(p);
    if (s.in_value) {
        s.message.headers.add(std::move(s.field), std::move(s.value));
        s.field.clear();
        s.value.clear();
        s.in_value = false;
    }
    s.message.http_version = p->http_major * 10 + p->http_minor;
    return 0;
}

int on_body(llhttp_t* p, char const* at, std::size_t n) {
    state_of(p).message.body.append(at, n);
    return 0;
}

/// Returns the best time per call of each parse function, in nanoseconds. The functions take
/// turns within every repetition, so a burst of load on the machine hits them alike.
template <class... Parse>
std::vector<double> best_ns_per_request(std::size_t iterations, Parse... parse) {
    std::vector<double> best(sizeof...(Parse), 1e300);
    auto time_one = [&](auto& f, std::size_t slot) {
        auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < iterations; ++i) {
            f();
        }
        std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
        best[slot] = std::min(best[slot], elapsed.count() / static_cast<double>(iterations));
    };
    for (int repetition = 0; repetition < 15; ++repetition) {
        std::size_t slot = 0;
        (time_one(parse, slot++), ...);
    }
    return best;
}

volatile std::size_t sink = 0; // keeps the parsed results alive for the optimizer

} // namespace

int main() {
    constexpr std::size_t iterations = 50'000;
    std::printf("%-28s %12s %14s %16s %8s\n", "request", "codec ns", "llhttp raw ns",
                "llhttp+build ns", "ratio");
    for (auto const& s : samples()) {
        http::request_parser parser;
        auto codec = [&] {
            std::error_code ec;
            std::size_t used = parser.feed(s.bytes, ec);
            if (ec || !parser.done() || used != s.bytes.size()) {
                std::fprintf(stderr, "codec failed on %s\n", s.name);
                std::exit(1);
            }
            http::request r = parser.release();
            sink = sink + r.body.size() + r.headers.size();
        };

        llhttp_settings_t raw_settings;
        llhttp_settings_init(&raw_settings);
        auto raw = [&] {
            llhttp_t p;
            llhttp_init(&p, HTTP_REQUEST, &raw_settings);
            if (llhttp_execute(&p, s.bytes.data(), s.bytes.size()) != HPE_OK) {
                std::fprintf(stderr, "llhttp failed on %s\n", s.name);
                std::exit(1);
            }
            sink = sink + p.method;
        };

        llhttp_settings_t build_settings;
        llhttp_settings_init(&build_settings);
        build_settings.on_url = on_url;
        build_settings.on_method = on_method;
        build_settings.on_header_field = on_header_field;
        build_settings.on_header_value = on_header_value;
        build_settings.on_headers_complete = on_headers_complete;
        build_settings.on_body = on_body;
        auto build = [&] {
            building_state state;
            llhttp_t p;
            llhttp_init(&p, HTTP_REQUEST, &build_settings);
            p.data = &state;
            if (llhttp_execute(&p, s.bytes.data(), s.bytes.size()) != HPE_OK) {
                std::fprintf(stderr, "llhttp failed on %s\n", s.name);
                std::exit(1);
            }
            sink = sink + state.message.body.size() + state.message.headers.size();
        };

        auto best = best_ns_per_request(iterations, codec, raw, build);
        std::printf("%-28s %12.0f %14.0f %16.0f %8.2f\n", s.name, best[0], best[1], best[2],
                    best[0] / best[2]);
    }
    return 0;
}
