// Measures revdesk::subscription_index::match while the index grows from 1 to 100,000
// subscriptions and the event keeps matching exactly one of them, and prints one JSON line per
// measurement (a warm-up, then --runs measured ones per size).
//
//   revdesk-bench-index [--sizes 1,10,100,1000,10000,100000] [--runs 5] [--target-seconds 0.2]
//
// The other subscriptions share the workspace, the event type or a scope with the event in
// every combination except a matching one, so each lookup probes the same four buckets whatever
// the size.

#include <revdesk/subscription_index.hpp>

#include "bench_common.hpp"

#include <chrono>
#include <random>
#include <sstream>

namespace {

using clock_type = std::chrono::steady_clock;

revdesk::subscription make_subscription(std::size_t i, std::mt19937_64& random) {
    revdesk::subscription s;
    s.id = "whk_" + std::to_string(i);
    s.webhook_url = "https://r" + std::to_string(i % 256) + ".bench.test/hooks";
    s.secret = "whsec_c2VjcmV0";
    if (i == 0) {
        s.workspace = "w0";
        s.type = revdesk::event_type::call_completed;
        return s;
    }
    s.workspace = "w" + std::to_string(random() % 1000);
    s.type = revdesk::all_event_types[random() % revdesk::all_event_types.size()];
    if (random() % 2) {
        s.workflow_id = revdesk::scope_id{"wf" + std::to_string(random() % 100)};
    }
    if (random() % 2) {
        s.campaign_id = revdesk::scope_id{"cmp" + std::to_string(random() % 100)};
    }
    // Keep the match count at one: an unscoped call_completed subscription of w0 would match.
    if (s.workspace == "w0" && s.type == revdesk::event_type::call_completed && !s.workflow_id &&
        !s.campaign_id) {
        s.workflow_id = revdesk::scope_id{"wf-other"};
    }
    return s;
}

// Returns nanoseconds per match over `iterations` lookups.
double time_matches(revdesk::subscription_index const& index, std::size_t iterations,
                    std::size_t& matched) {
    std::optional<revdesk::scope_id> workflow = revdesk::scope_id{"wf-query"};
    std::optional<revdesk::scope_id> campaign = revdesk::scope_id{"cmp-query"};
    std::size_t total = 0;
    auto started = clock_type::now();
    for (std::size_t i = 0; i < iterations; ++i) {
        total += index.match("w0", revdesk::event_type::call_completed, workflow, campaign).size();
    }
    auto elapsed = std::chrono::duration<double, std::nano>(clock_type::now() - started);
    matched = total / iterations;
    return elapsed.count() / static_cast<double>(iterations);
}

} // namespace

int main(int argc, char** argv) {
    try {
        bench::arguments args(argc, argv);
        auto runs = args.count("runs", 5);
        auto target_seconds = args.number("target-seconds", 0.2);
        std::vector<std::size_t> sizes;
        std::stringstream list(args.text("sizes", "1,10,100,1000,10000,100000"));
        for (std::string item; std::getline(list, item, ',');) {
            sizes.push_back(std::stoul(item));
        }

        std::mt19937_64 random(42);
        revdesk::subscription_index index;
        for (auto size : sizes) {
            while (index.size() < size) {
                index.insert(make_subscription(index.size(), random));
            }
            // The warm-up also sizes the measured runs to about --target-seconds each.
            std::size_t matched = 0;
            auto warm_ns = time_matches(index, 10'000, matched);
            auto iterations = std::max<std::size_t>(
                1000, static_cast<std::size_t>(target_seconds * 1e9 / warm_ns));
            for (std::size_t run = 0; run <= runs; ++run) {
                auto ns = run == 0 ? warm_ns : time_matches(index, iterations, matched);
                bench::emit({{"kind", "index"},
                             {"warmup", run == 0},
                             {"subscriptions", index.size()},
                             {"matches", matched},
                             {"iterations", run == 0 ? 10'000 : iterations},
                             {"ns_per_match", ns}});
            }
        }
        return 0;
    } catch (std::exception const& e) {
        std::cerr << "revdesk-bench-index: " << e.what() << '\n';
        return 1;
    }
}
