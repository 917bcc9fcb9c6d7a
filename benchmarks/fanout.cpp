// Drives revdesk::dispatcher against the loopback receiver that run.py starts (nginx answering
// 200 to every POST) and prints one JSON line per measurement.
//
//   revdesk-bench-fanout --mode throughput|latency|memory [options]
//
// throughput: publishes events that each fan out to every subscription, keeps a bounded number of
//   deliveries outstanding, and reports delivered messages per second and CPU seconds of the whole
//   process (getrusage, all threads) for a warm-up batch and then each measured batch.
// latency: publishes events on a fixed schedule (open loop) at --rate deliveries per second and
//   reports percentiles of the time from an event's scheduled publish time to the receiver's 2xx
//   response arriving back at the dispatcher. Measuring from the scheduled time keeps a stalled
//   publisher from hiding its own delay.
// memory: reports the resident set size empty, with --subscriptions subscriptions, and with
//   --connections idle keep-alive connections open to the receiver.
//
// Receivers are named rJ.bench.test (J from 0 to --endpoints - 1) with port --http-port + J or
// --https-port + J; bench::loopback_resolver maps every such name to 127.0.0.1.

#include <revdesk/dispatcher.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/store/memory_store.hpp>
#include <revdesk/store/sqlite_store.hpp>

#include "bench_common.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <unordered_map>

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
    std::string mode = "throughput";
    std::string scheme = "http";
    std::string store = "memory";
    std::string sqlite_path = "fanout-bench.db";
    std::string ca_file;
    std::string payload;
    std::size_t subscriptions = 64;
    std::size_t endpoints = 1;
    std::uint16_t http_port = 0;
    std::uint16_t https_port = 0;
    std::size_t concurrency = 64; // dispatcher max_in_flight
    std::size_t per_origin = 64;  // dispatcher max_per_origin
    std::size_t threads = 0;      // client threads; 0 runs the exchanges on the dispatcher's

    // throughput
    std::size_t warmup_deliveries = 2000;
    std::size_t min_deliveries = 2000;
    double target_seconds = 1.0;
    std::size_t runs = 5;

    // latency
    double rate = 1000; // deliveries per second
    double warmup_seconds = 0.5;
    double seconds = 2;

    // memory
    std::size_t connections = 1000;
};

settings read_settings(bench::arguments const& args) {
    settings s;
    s.mode = args.text("mode", s.mode);
    s.scheme = args.text("scheme", s.scheme);
    s.store = args.text("store", s.store);
    s.sqlite_path = args.text("sqlite-path", s.sqlite_path);
    s.ca_file = args.text("ca-file", s.ca_file);
    auto payload_file = args.text("payload", "");
    s.subscriptions = args.count("subscriptions", s.subscriptions);
    s.endpoints = args.count("endpoints", s.endpoints);
    s.http_port = static_cast<std::uint16_t>(args.count("http-port", 0));
    s.https_port = static_cast<std::uint16_t>(args.count("https-port", 0));
    s.concurrency = args.count("concurrency", s.concurrency);
    s.per_origin = args.count("per-origin", s.per_origin);
    s.threads = args.count("threads", s.threads);
    s.warmup_deliveries = args.count("warmup-deliveries", s.warmup_deliveries);
    s.min_deliveries = args.count("min-deliveries", s.min_deliveries);
    s.target_seconds = args.number("target-seconds", s.target_seconds);
    s.runs = args.count("runs", s.runs);
    s.rate = args.number("rate", s.rate);
    s.warmup_seconds = args.number("warmup-seconds", s.warmup_seconds);
    s.seconds = args.number("seconds", s.seconds);
    s.connections = args.count("connections", s.connections);

    if (s.scheme != "http" && s.scheme != "https") {
        throw std::invalid_argument("--scheme must be http or https, got \"" + s.scheme + "\"");
    }
    if (s.store != "memory" && s.store != "sqlite") {
        throw std::invalid_argument("--store must be memory or sqlite, got \"" + s.store + "\"");
    }
    if ((s.scheme == "http" ? s.http_port : s.https_port) == 0) {
        throw std::invalid_argument("--" + s.scheme +
                                    "-port is required: the first port of the "
                                    "receiver's range");
    }
    if (s.scheme == "https" && s.ca_file.empty()) {
        throw std::invalid_argument("--ca-file is required with --scheme https: the PEM file "
                                    "of the CA that signed the receiver's certificate");
    }
    if (payload_file.empty()) {
        throw std::invalid_argument("--payload is required: a file holding the event body");
    }
    std::ifstream in(payload_file, std::ios::binary);
    if (!in) {
        throw std::invalid_argument("cannot read --payload file \"" + payload_file + "\"");
    }
    s.payload.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (s.subscriptions == 0 || s.endpoints == 0 || s.concurrency == 0 || s.per_origin == 0) {
        throw std::invalid_argument(
            "--subscriptions, --endpoints, --concurrency and --per-origin must be at least 1");
    }
    return s;
}

std::unique_ptr<revdesk::store> open_store(settings const& s) {
    if (s.store == "memory") {
        return std::make_unique<revdesk::memory_store>();
    }
    // Every run starts from an empty database.
    for (auto suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(s.sqlite_path + suffix);
    }
    return std::make_unique<revdesk::sqlite_store>(s.sqlite_path);
}

// One dispatcher with its client, store and counters, on a single-threaded io_context.
class bench_dispatcher {
public:
    explicit bench_dispatcher(settings const& s)
        : settings_(s)
        , tls_(asio::ssl::context::tls_client)
        , progress_(io_) {
        if (!s.ca_file.empty()) {
            tls_.load_verify_file(s.ca_file);
        }
        tls_.set_verify_mode(asio::ssl::verify_peer);
        policy_.allow(*revdesk::cidr::parse("127.0.0.0/8"));

        revdesk::http::client_options client_options;
        // Keep every connection of the memory measurement, and more than the concurrency.
        client_options.max_idle_per_origin = std::max<std::size_t>(64, s.per_origin);
        client_options.threads = s.threads;
        client_options.kept_response_fields = revdesk::dispatcher_response_fields();
        client_ = std::make_unique<revdesk::http::client>(
            io_.get_executor(), tls_, policy_, client_options, bench::loopback_resolver());
        store_ = open_store(s);

        revdesk::dispatcher_options options;
        options.allow_http = true;
        options.max_in_flight = s.concurrency;
        options.max_per_origin = s.per_origin;
        options.attempt_timeout = std::chrono::seconds(10);
        // A failed attempt is counted, never retried: every failure is a benchmark error.
        options.retries.schedule.clear();
        options.on_attempt = [this](revdesk::attempt const& a, revdesk::delivery const& d,
                                    revdesk::subscription const&) { on_attempt(a, d); };
        options.on_error = [](std::string_view what) { std::cerr << what << '\n'; };
        dispatcher_ = std::make_unique<revdesk::dispatcher>(io_.get_executor(), *store_, *client_,
                                                            policy_, std::move(options));
    }

    asio::io_context& io() { return io_; }
    revdesk::dispatcher& dispatcher() { return *dispatcher_; }
    revdesk::http::client& client() { return *client_; }

    std::string receiver_url(std::size_t endpoint, std::size_t subscription) const {
        auto base = settings_.scheme == "http" ? settings_.http_port : settings_.https_port;
        return settings_.scheme + "://r" + std::to_string(endpoint) +
               std::string(bench::receiver_domain) + ":" + std::to_string(base + endpoint) +
               "/hooks/" + std::to_string(subscription);
    }

    // Subscribes `count` receivers of `type` in `workspace`, spread round-robin over `endpoints`,
    // with up to 512 stores in flight so that a durable store commits them in groups.
    asio::awaitable<void> subscribe_many(std::string workspace, revdesk::event_type type,
                                         std::size_t count, std::size_t endpoints) {
        std::size_t started = 0;
        std::size_t done = 0;
        while (done < count) {
            while (started < count && started - done < 512) {
                revdesk::subscription s;
                s.id = revdesk::new_subscription_id();
                s.workspace = workspace;
                s.webhook_url = receiver_url(started % endpoints, started);
                s.type = type;
                s.secret = revdesk::new_signing_secret();
                s.created_at = revdesk::now_ms();
                asio::co_spawn(io_, dispatcher_->subscribe(std::move(s)),
                               [this, &done](std::exception_ptr failure) {
                                   if (failure) {
                                       std::rethrow_exception(failure);
                                   }
                                   ++done;
                                   progress_.cancel();
                               });
                ++started;
            }
            co_await wait_for_progress();
        }
    }

    // Publishes one event of `type` to `workspace` without waiting for the store.
    void publish(std::string const& workspace, revdesk::event_type type,
                 std::string* event_id_out = nullptr) {
        revdesk::event e;
        e.id = revdesk::new_event_id();
        e.workspace = workspace;
        e.type = type;
        e.payload = settings_.payload;
        e.created_at = revdesk::now_ms();
        if (event_id_out) {
            *event_id_out = e.id;
        }
        auto types = std::array{type};
        asio::co_spawn(
            io_,
            [this, e = std::move(e), types]() mutable -> asio::awaitable<void> {
                co_await dispatcher_->publish(std::move(e), types);
            },
            [](std::exception_ptr failure) {
                if (failure) {
                    std::rethrow_exception(failure);
                }
            });
    }

    // Suspends until an attempt finishes or a subscription is stored.
    asio::awaitable<void> wait_for_progress() {
        progress_.expires_at(clock_type::time_point::max());
        co_await progress_.async_wait(revdesk::http::use_nothrow);
    }

    std::size_t delivered() const { return delivered_; }
    std::size_t failed() const { return failed_; }
    std::size_t finished() const { return delivered_ + failed_; }
    std::string const& last_failure() const { return last_failure_; }

    /// Called with the scheduled publish time of each event, for latency samples.
    std::unordered_map<std::string, clock_type::time_point>* event_times = nullptr;
    std::vector<double>* latency_samples = nullptr;
    clock_type::time_point sample_from = clock_type::time_point::max();

private:
    void on_attempt(revdesk::attempt const& a, revdesk::delivery const& d) {
        if (d.state == revdesk::delivery_state::delivered) {
            ++delivered_;
        } else {
            ++failed_;
            last_failure_ = "status " + std::to_string(a.status) + " " + a.error + ": " +
                            a.response_body.substr(0, 200);
        }
        if (event_times) {
            auto it = event_times->find(d.event_id);
            if (it != event_times->end() && it->second >= sample_from) {
                auto took =
                    std::chrono::duration<double, std::micro>(clock_type::now() - it->second);
                latency_samples->push_back(took.count());
            }
        }
        progress_.cancel();
    }

    settings const& settings_;
    asio::io_context io_{1};
    asio::ssl::context tls_;
    revdesk::address_policy policy_;
    std::unique_ptr<revdesk::http::client> client_;
    std::unique_ptr<revdesk::store> store_;
    std::unique_ptr<revdesk::dispatcher> dispatcher_;
    asio::steady_timer progress_;
    std::size_t delivered_ = 0;
    std::size_t failed_ = 0;
    std::string last_failure_;
};

constexpr auto bench_type = revdesk::event_type::call_completed;
constexpr std::string_view bench_workspace = "bench";

boost::json::object describe(settings const& s) {
    return {{"scheme", s.scheme},
            {"store", s.store},
            {"subscriptions", s.subscriptions},
            {"endpoints", s.endpoints},
            {"concurrency", s.concurrency},
            {"per_origin", s.per_origin},
            {"threads", s.threads},
            {"body_bytes", s.payload.size()}};
}

// Publishes events until `total` deliveries have finished, with at most `window` outstanding.
asio::awaitable<boost::json::object> run_batch(bench_dispatcher& b, settings const& s,
                                               std::size_t total, bool warmup) {
    auto const n = s.subscriptions;
    auto const window = std::max(2 * n, 8 * s.concurrency);
    auto const start_finished = b.finished();
    auto const start_failed = b.failed();
    auto finished = [&] { return b.finished() - start_finished; };

    auto cpu_before = bench::cpu_seconds();
    auto started = clock_type::now();
    std::size_t published = 0;
    while (published < total) {
        while (published - finished() + n > window) {
            co_await b.wait_for_progress();
        }
        b.publish(std::string(bench_workspace), bench_type);
        published += n;
    }
    while (finished() < published) {
        co_await b.wait_for_progress();
    }
    auto seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    auto cpu = bench::cpu_seconds() - cpu_before;
    auto failed = b.failed() - start_failed;
    auto delivered = published - failed;

    auto result = describe(s);
    result["kind"] = "fanout";
    result["warmup"] = warmup;
    result["deliveries"] = delivered;
    result["failed"] = failed;
    result["seconds"] = seconds;
    result["deliveries_per_second"] = static_cast<double>(delivered) / seconds;
    result["cpu_seconds"] = cpu;
    result["cpu_seconds_per_1000"] = delivered ? cpu * 1000.0 / static_cast<double>(delivered) : 0;
    if (failed) {
        result["last_failure"] = b.last_failure();
    }
    co_return result;
}

asio::awaitable<void> run_throughput(bench_dispatcher& b, settings const& s) {
    co_await b.subscribe_many(std::string(bench_workspace), bench_type, s.subscriptions,
                              s.endpoints);
    auto round_up = [&](double deliveries) {
        auto events = static_cast<std::size_t>(std::ceil(deliveries / double(s.subscriptions)));
        return std::max<std::size_t>(events, 1) * s.subscriptions;
    };

    // The warm-up opens the connections and sizes the measured batches to --target-seconds.
    auto warm = co_await run_batch(b, s, round_up(double(s.warmup_deliveries)), true);
    bench::emit(warm);
    auto rate = warm["deliveries_per_second"].as_double();
    auto total = round_up(std::max(double(s.min_deliveries), rate * s.target_seconds));
    for (std::size_t i = 0; i < s.runs; ++i) {
        bench::emit(co_await run_batch(b, s, total, false));
    }
}

// Publishes events on a fixed schedule for --warmup-seconds plus --seconds and returns the
// latency percentiles of the deliveries of events scheduled after the warm-up.
asio::awaitable<boost::json::object> run_schedule(bench_dispatcher& b, settings const& s) {
    std::unordered_map<std::string, clock_type::time_point> event_times;
    std::vector<double> samples;
    auto to_duration = [](double seconds) {
        return std::chrono::duration_cast<clock_type::duration>(
            std::chrono::duration<double>(seconds));
    };
    auto interval = to_duration(double(s.subscriptions) / s.rate);
    auto start = clock_type::now() + std::chrono::milliseconds(10);
    auto measured_from = start + to_duration(s.warmup_seconds);
    auto stop = measured_from + to_duration(s.seconds);
    b.event_times = &event_times;
    b.latency_samples = &samples;
    b.sample_from = measured_from;
    samples.reserve(static_cast<std::size_t>(s.rate * (s.seconds + 1)));

    auto const finished_before = b.finished();
    auto const failed_before = b.failed();
    std::size_t published = 0;
    std::size_t measured_deliveries = 0;
    asio::steady_timer timer(b.io());
    auto due = start;
    while (due < stop) {
        timer.expires_at(due);
        co_await timer.async_wait(revdesk::http::use_nothrow);
        // Publish every event whose time has come, so that a late wake-up catches up.
        auto now = clock_type::now();
        while (due <= now && due < stop) {
            std::string id;
            b.publish(std::string(bench_workspace), bench_type, &id);
            event_times.emplace(std::move(id), due);
            published += s.subscriptions;
            if (due >= measured_from) {
                measured_deliveries += s.subscriptions;
            }
            due += interval;
        }
    }
    auto deadline = clock_type::now() + std::chrono::seconds(30);
    while (b.finished() - finished_before < published && clock_type::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(5));
        co_await timer.async_wait(revdesk::http::use_nothrow);
    }
    b.event_times = nullptr;
    b.latency_samples = nullptr;

    std::sort(samples.begin(), samples.end());
    auto result = describe(s);
    result["kind"] = "latency";
    result["warmup"] = false;
    result["rate"] = s.rate;
    result["seconds"] = s.seconds;
    result["deliveries"] = samples.size();
    result["expected_deliveries"] = measured_deliveries;
    result["failed"] = b.failed() - failed_before;
    result["p50_us"] = bench::percentile(samples, 0.50);
    result["p99_us"] = bench::percentile(samples, 0.99);
    result["p999_us"] = bench::percentile(samples, 0.999);
    result["max_us"] = samples.empty() ? 0.0 : samples.back();
    co_return result;
}

asio::awaitable<void> run_latency(bench_dispatcher& b, settings const& s) {
    co_await b.subscribe_many(std::string(bench_workspace), bench_type, s.subscriptions,
                              s.endpoints);
    // Open the connections first, as a long-running dispatcher would have them.
    co_await run_batch(b, s, std::max<std::size_t>(s.subscriptions, 4 * s.concurrency), true);
    for (std::size_t i = 0; i < s.runs; ++i) {
        bench::emit(co_await run_schedule(b, s));
    }
}

asio::awaitable<void> run_memory(bench_dispatcher& b, settings const& s) {
    auto empty = bench::resident_bytes();

    // Subscriptions of another workspace, spread over every event type, which the connection
    // step below does not publish to.
    std::size_t per_type = s.subscriptions / revdesk::all_event_types.size();
    std::size_t added = 0;
    for (std::size_t i = 0; i < revdesk::all_event_types.size(); ++i) {
        auto count = i + 1 == revdesk::all_event_types.size() ? s.subscriptions - added : per_type;
        co_await b.subscribe_many("idle", revdesk::all_event_types[i], count, s.endpoints);
        added += count;
    }
    auto with_subscriptions = bench::resident_bytes();

    // One event to --connections subscriptions spread evenly over the endpoints; with
    // --per-origin equal to connections / endpoints, every attempt opens its own connection,
    // which then stays idle in the client's pool.
    co_await b.subscribe_many(std::string(bench_workspace), bench_type, s.connections, s.endpoints);
    auto before = b.finished();
    b.publish(std::string(bench_workspace), bench_type);
    while (b.finished() - before < s.connections) {
        co_await b.wait_for_progress();
    }
    auto with_connections = bench::resident_bytes();

    auto result = describe(s);
    result["kind"] = "memory";
    result["subscriptions"] = s.subscriptions + s.connections;
    result["connections"] = b.client().idle_connections();
    result["failed"] = b.failed();
    result["rss_empty_bytes"] = empty;
    result["rss_subscriptions_bytes"] = with_subscriptions;
    result["rss_connections_bytes"] = with_connections;
    if (b.failed()) {
        result["last_failure"] = b.last_failure();
    }
    bench::emit(result);
}

} // namespace

int main(int argc, char** argv) {
    try {
        bench::raise_open_file_limit();
        auto s = read_settings(bench::arguments(argc, argv));
        bench_dispatcher b(s);
        std::exception_ptr failure;
        asio::co_spawn(
            b.io(),
            [&]() -> asio::awaitable<void> {
                co_await b.dispatcher().start();
                if (s.mode == "throughput") {
                    co_await run_throughput(b, s);
                } else if (s.mode == "latency") {
                    co_await run_latency(b, s);
                } else if (s.mode == "memory") {
                    co_await run_memory(b, s);
                } else {
                    throw std::invalid_argument(
                        "--mode must be throughput, latency or memory, got \"" + s.mode + "\"");
                }
                // Ends the dispatcher's retry timer so that the io_context stops with nothing
                // pending.
                co_await b.dispatcher().drain(std::chrono::seconds(5));
                // Every 2xx of the process, warm-ups included, to compare with the receiver's
                // own request count.
                bench::emit({{"kind", "total"}, {"deliveries", b.delivered()}});
                b.io().stop();
            },
            [&](std::exception_ptr e) {
                failure = e;
                b.io().stop();
            });
        b.io().run();
        if (failure) {
            std::rethrow_exception(failure);
        }
        return 0;
    } catch (std::exception const& e) {
        std::cerr << "revdesk-bench-fanout: " << e.what() << '\n';
        return 1;
    }
}
