// Parses the same webhook API requests with revdesk::http::request_parser and with llhttp 8.1,
// and prints nanoseconds per request for each, with their ratio. See README.md in this folder.
//
// llhttp runs in two modes: `llhttp-bare`, with only the message-complete callback (its raw
// scanning speed), and `llhttp-build`, with callbacks that copy method, target, fields and body
// into a revdesk::http::request, which is what request_parser produces. The second is the
// like-for-like comparison.
//
// Options, all `--name value`:
//   --iterations N   requests of one sample per timed run (default 200000)
//   --repetitions R  timed runs per sample and parser; the median is reported (default 15)
//   --warmup W       untimed runs before the first timed one (default 2)
//   --parser P       revdesk, llhttp-bare, llhttp-build or all (default all)
//   --sample S       post, get, chunked or all (default all)
// Under `valgrind --tool=callgrind --instr-atstart=no`, instrumentation covers only the timed
// runs, so the instruction count per request is exact and repeatable (see callgrind.sh).
#include <revdesk/http/parser.hpp>

#include <llhttp.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace http = revdesk::http;

namespace {

struct sample {
    std::string name;
    std::string bytes;
};

// A call_completed event as a RevDesk client publishes it: 319 bytes of JSON.
std::string const event_body =
    R"({"event_type":"call_completed","payload":{"id":"call_01j9zq4m8h6x2v7c5n3b1k0pq",)"
    R"("from_number":"+15551234567","to_number":"+15557654321","direction":"outbound",)"
    R"("duration_seconds":73,"status":"COMPLETED","failure_code":null,"failure_category":null,)"
    R"("disconnection_reason":"hangup","created_at":"2026-06-30T19:31:00.000Z"}})";

std::string const common_fields = "Host: api.revdesk.example\r\n"
                                  "User-Agent: revdesk-python/1.4.2\r\n"
                                  "Accept: application/json\r\n"
                                  "Accept-Encoding: gzip, deflate\r\n"
                                  "Authorization: Bearer rdk_3f9a1c7e5b2d4a6f8e0c1b3d5f7a9c2e\r\n"
                                  "X-Request-Id: 5f1c2e9a-7b3d-4e8f-a6c1-0d2b4f6a8c9e\r\n";

std::vector<sample> make_samples() {
    std::string const hex_first = "80"; // 128 bytes in the first chunk
    std::string chunked = event_body.substr(0, 128);
    std::string rest = event_body.substr(128);
    char rest_size[16];
    std::snprintf(rest_size, sizeof rest_size, "%zx", rest.size());
    return {
        {"post", "POST /api/v1/events HTTP/1.1\r\n" + common_fields +
                     "Content-Type: application/json\r\nContent-Length: " +
                     std::to_string(event_body.size()) + "\r\n\r\n" + event_body},
        {"get", "GET /api/v1/webhook_subscriptions/whk_01j9zq4m8h6x2v7c5n3b1k0pq HTTP/1.1\r\n" +
                    common_fields + "\r\n"},
        {"chunked", "POST /api/v1/events HTTP/1.1\r\n" + common_fields +
                        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                        hex_first + "\r\n" + chunked + "\r\n" + rest_size + "\r\n" + rest +
                        "\r\n0\r\n\r\n"},
    };
}

[[noreturn]] void fail(std::string const& what) {
    std::fprintf(stderr, "parser_bench: %s\n", what.c_str());
    std::exit(1);
}

// Keeps the optimizer from dropping a parse whose result is otherwise unused.
std::size_t volatile sink = 0;

class revdesk_runner {
public:
    // Parses `bytes` `n` times, one whole request each time.
    void run(std::string_view bytes, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            std::error_code ec;
            parser_.feed(bytes, ec);
            if (ec || !parser_.done()) {
                fail("request_parser did not accept a sample: " + ec.message());
            }
            auto request = parser_.release();
            sink = sink + request.body.size();
        }
    }

    http::request parse_once(std::string_view bytes) {
        std::error_code ec;
        parser_.feed(bytes, ec);
        if (ec || !parser_.done()) {
            fail("request_parser did not accept a sample: " + ec.message());
        }
        return parser_.release();
    }

private:
    http::request_parser parser_;
};

class llhttp_runner {
public:
    explicit llhttp_runner(bool build)
        : build_(build) {
        llhttp_settings_init(&settings_);
        settings_.on_message_complete = [](llhttp_t* p) {
            ++self(p).completed_;
            return 0;
        };
        if (build_) {
            settings_.on_method = [](llhttp_t* p, char const* at, std::size_t n) {
                self(p).request_.method.append(at, n);
                return 0;
            };
            settings_.on_url = [](llhttp_t* p, char const* at, std::size_t n) {
                self(p).request_.target.append(at, n);
                return 0;
            };
            settings_.on_header_field = [](llhttp_t* p, char const* at, std::size_t n) {
                auto& s = self(p);
                if (!s.in_name_) {
                    s.names_.emplace_back();
                    s.values_.emplace_back();
                    s.in_name_ = true;
                }
                s.names_.back().append(at, n);
                return 0;
            };
            settings_.on_header_value = [](llhttp_t* p, char const* at, std::size_t n) {
                auto& s = self(p);
                s.in_name_ = false;
                s.values_.back().append(at, n);
                return 0;
            };
            settings_.on_headers_complete = [](llhttp_t* p) {
                auto& s = self(p);
                s.request_.http_version = p->http_major * 10 + p->http_minor;
                for (std::size_t i = 0; i < s.names_.size(); ++i) {
                    s.request_.headers.add(std::move(s.names_[i]), std::move(s.values_[i]));
                }
                s.names_.clear();
                s.values_.clear();
                s.in_name_ = false;
                return 0;
            };
            settings_.on_body = [](llhttp_t* p, char const* at, std::size_t n) {
                self(p).request_.body.append(at, n);
                return 0;
            };
        }
        llhttp_init(&parser_, HTTP_REQUEST, &settings_);
        parser_.data = this;
    }

    llhttp_runner(llhttp_runner const&) = delete;
    llhttp_runner& operator=(llhttp_runner const&) = delete;

    // Parses `bytes` `n` times on one kept-alive stream, one whole request each time.
    void run(std::string_view bytes, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            parse(bytes);
            sink = sink + request_.body.size();
        }
    }

    http::request parse_once(std::string_view bytes) {
        parse(bytes);
        return std::move(request_);
    }

private:
    static llhttp_runner& self(llhttp_t* p) { return *static_cast<llhttp_runner*>(p->data); }

    void parse(std::string_view bytes) {
        request_ = http::request{};
        auto before = completed_;
        auto status = llhttp_execute(&parser_, bytes.data(), bytes.size());
        if (status != HPE_OK || completed_ != before + 1) {
            fail(std::string("llhttp did not accept a sample: ") + llhttp_errno_name(status));
        }
    }

    bool build_;
    llhttp_settings_t settings_{};
    llhttp_t parser_{};
    std::size_t completed_ = 0;
    http::request request_;
    std::vector<std::string> names_;
    std::vector<std::string> values_;
    bool in_name_ = false;
};

// Checks that both parsers read each sample the same way, so that they do the same work.
void check_agreement(std::vector<sample> const& samples) {
    for (auto const& s : samples) {
        revdesk_runner ours;
        llhttp_runner theirs(true);
        auto a = ours.parse_once(s.bytes);
        auto b = theirs.parse_once(s.bytes);
        bool same = a.method == b.method && a.target == b.target &&
                    a.http_version == b.http_version && a.body == b.body &&
                    a.headers.size() == b.headers.size();
        for (std::size_t i = 0; same && i < a.headers.size(); ++i) {
            same = a.headers.items()[i].name == b.headers.items()[i].name &&
                   a.headers.items()[i].value == b.headers.items()[i].value;
        }
        if (!same) {
            fail("the parsers disagree on sample " + s.name);
        }
    }
}

struct options {
    std::size_t iterations = 200'000;
    std::size_t repetitions = 15;
    std::size_t warmup = 2;
    std::string parser = "all";
    std::string sample = "all";
};

options parse_options(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; i += 2) {
        std::string name = argv[i];
        if (i + 1 >= argc) {
            fail("option " + name + " needs a value");
        }
        std::string value = argv[i + 1];
        auto count = [&] {
            try {
                return static_cast<std::size_t>(std::stoull(value));
            } catch (std::exception const&) {
                fail("option " + name + " needs a whole number, got \"" + value + "\"");
            }
        };
        if (name == "--iterations") {
            o.iterations = count();
        } else if (name == "--repetitions") {
            o.repetitions = std::max<std::size_t>(1, count());
        } else if (name == "--warmup") {
            o.warmup = count();
        } else if (name == "--parser") {
            o.parser = value;
        } else if (name == "--sample") {
            o.sample = value;
        } else {
            fail("unknown option " + name +
                 ": use --iterations, --repetitions, --warmup, --parser or --sample");
        }
    }
    return o;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    auto mid = v.size() / 2;
    return v.size() % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

} // namespace

int main(int argc, char** argv) {
    auto opt = parse_options(argc, argv);
    auto samples = make_samples();
    check_agreement(samples);

    std::vector<std::string> const all_parsers = {"revdesk", "llhttp-build", "llhttp-bare"};
    std::vector<std::string> parsers;
    for (auto const& p : all_parsers) {
        if (opt.parser == "all" || opt.parser == p) {
            parsers.push_back(p);
        }
    }
    if (parsers.empty()) {
        fail("unknown parser " + opt.parser + ": use revdesk, llhttp-build, llhttp-bare or all");
    }
    std::erase_if(samples,
                  [&](sample const& s) { return opt.sample != "all" && s.name != opt.sample; });
    if (samples.empty()) {
        fail("unknown sample " + opt.sample + ": use post, get, chunked or all");
    }

    revdesk_runner ours;
    llhttp_runner build(true);
    llhttp_runner bare(false);
    auto run_one = [&](std::string const& parser, std::string_view bytes, std::size_t n) {
        if (parser == "revdesk") {
            ours.run(bytes, n);
        } else if (parser == "llhttp-build") {
            build.run(bytes, n);
        } else {
            bare.run(bytes, n);
        }
    };

    // ns per request, keyed by sample and parser. The parsers take turns in every repetition, so
    // a slow moment of the machine does not hit one of them only.
    std::map<std::string, std::map<std::string, std::vector<double>>> timings;
    for (auto const& s : samples) {
        for (auto const& p : parsers) {
            for (std::size_t w = 0; w < opt.warmup; ++w) {
                run_one(p, s.bytes, opt.iterations);
            }
        }
    }
    CALLGRIND_START_INSTRUMENTATION;
    for (std::size_t r = 0; r < opt.repetitions; ++r) {
        for (auto const& s : samples) {
            for (auto const& p : parsers) {
                auto started = std::chrono::steady_clock::now();
                run_one(p, s.bytes, opt.iterations);
                std::chrono::duration<double, std::nano> took =
                    std::chrono::steady_clock::now() - started;
                timings[s.name][p].push_back(took.count() / static_cast<double>(opt.iterations));
            }
        }
    }
    CALLGRIND_STOP_INSTRUMENTATION;

    std::printf("ns per request, median of %zu runs of %zu requests after %zu warm-up runs\n",
                opt.repetitions, opt.iterations, opt.warmup);
    std::printf("%-8s %6s", "sample", "bytes");
    for (auto const& p : parsers) {
        std::printf(" %13s", p.c_str());
    }
    bool ratios = parsers.size() == all_parsers.size();
    if (ratios) {
        std::printf(" %14s %13s", "revdesk/build", "revdesk/bare");
    }
    std::printf("\n");
    for (auto const& s : samples) {
        std::printf("%-8s %6zu", s.name.c_str(), s.bytes.size());
        for (auto const& p : parsers) {
            std::printf(" %13.1f", median(timings[s.name][p]));
        }
        if (ratios) {
            auto ours_ns = median(timings[s.name]["revdesk"]);
            std::printf(" %14.2f %13.2f", ours_ns / median(timings[s.name]["llhttp-build"]),
                        ours_ns / median(timings[s.name]["llhttp-bare"]));
        }
        std::printf("\n");
    }
    return 0;
}
