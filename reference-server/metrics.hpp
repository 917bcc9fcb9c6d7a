// The reference server's metrics, written in the Prometheus text exposition format 0.0.4.
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>

namespace revdesk::server {

/// Returns `value` escaped for a label value of the text format: backslash, double quote and
/// line feed become `\\`, `\"` and `\n`.
inline std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out.push_back(c);
        }
    }
    return out;
}

/// Counters and a latency histogram of one server process, plus the gauges read at scrape
/// time. Thread safety: none; the server updates and renders it on its one thread.
class metrics {
public:
    /// Upper bounds in seconds of the attempt latency histogram, without `+Inf`.
    static constexpr std::array<double, 12> latency_bounds{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                           0.5,   1,    2.5,   5,    10,  30};

    /// Counts one answered request. `route` is a route template, never a raw path, so the
    /// number of series stays bounded.
    void count_request(std::string const& method, std::string const& route, int status) {
        ++requests_[{method, route, status}];
    }

    /// Counts one event accepted by `POST /api/v1/events` (not a replayed answer).
    void count_event() { ++events_; }

    /// Counts one attempt that took `seconds`, and the delivery's state after it: `delivered`,
    /// `retrying`, `failed` or `cancelled`.
    void count_attempt(double seconds, std::string const& outcome) {
        ++deliveries_[outcome];
        for (std::size_t i = 0; i < latency_bounds.size(); ++i) {
            if (seconds <= latency_bounds[i]) {
                ++buckets_[i];
            }
        }
        ++attempts_;
        latency_sum_ += seconds;
    }

    /// Renders every metric; `queued` and `connections` are the current gauge values.
    std::string render(std::size_t queued, std::size_t in_flight, std::size_t connections) const {
        std::string out;
        out += "# HELP revdesk_http_requests_total HTTP requests answered, by method, route "
               "template and status.\n";
        out += "# TYPE revdesk_http_requests_total counter\n";
        for (auto const& [key, count] : requests_) {
            auto const& [method, route, status] = key;
            out += "revdesk_http_requests_total{method=\"" + escape_label_value(method) +
                   "\",route=\"" + escape_label_value(route) + "\",status=\"" +
                   std::to_string(status) + "\"} " + std::to_string(count) + "\n";
        }
        out += "# HELP revdesk_events_accepted_total Events accepted for delivery.\n";
        out += "# TYPE revdesk_events_accepted_total counter\n";
        out += "revdesk_events_accepted_total " + std::to_string(events_) + "\n";
        out += "# HELP revdesk_delivery_attempts_total Delivery attempts, by the state of the "
               "delivery afterwards (delivered, retrying, failed, cancelled).\n";
        out += "# TYPE revdesk_delivery_attempts_total counter\n";
        for (auto const& [outcome, count] : deliveries_) {
            out += "revdesk_delivery_attempts_total{outcome=\"" + escape_label_value(outcome) +
                   "\"} " + std::to_string(count) + "\n";
        }
        out += "# HELP revdesk_attempt_duration_seconds Duration of delivery attempts, from "
               "resolving the host to the end of the response.\n";
        out += "# TYPE revdesk_attempt_duration_seconds histogram\n";
        for (std::size_t i = 0; i < latency_bounds.size(); ++i) {
            out += "revdesk_attempt_duration_seconds_bucket{le=\"" + number(latency_bounds[i]) +
                   "\"} " + std::to_string(buckets_[i]) + "\n";
        }
        out += "revdesk_attempt_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(attempts_) +
               "\n";
        out += "revdesk_attempt_duration_seconds_sum " + number(latency_sum_) + "\n";
        out += "revdesk_attempt_duration_seconds_count " + std::to_string(attempts_) + "\n";
        out += "# HELP revdesk_queue_depth Messages this server holds that wait for an attempt, due "
               "or scheduled. With a shared PostgreSQL store, only those it has claimed: the "
               "shared backlog is in the database.\n";
        out += "# TYPE revdesk_queue_depth gauge\n";
        out += "revdesk_queue_depth " + std::to_string(queued) + "\n";
        out += "# HELP revdesk_attempts_in_flight Delivery attempts in flight.\n";
        out += "# TYPE revdesk_attempts_in_flight gauge\n";
        out += "revdesk_attempts_in_flight " + std::to_string(in_flight) + "\n";
        out += "# HELP revdesk_open_connections Open connections to the API.\n";
        out += "# TYPE revdesk_open_connections gauge\n";
        out += "revdesk_open_connections " + std::to_string(connections) + "\n";
        return out;
    }

private:
    // The shortest text that reads back as `value`, such as `0.005` or `30`; Prometheus
    // parses it like Go's ParseFloat.
    static std::string number(double value) {
        std::array<char, 32> buffer{};
        auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
        return error == std::errc() ? std::string(buffer.data(), end) : std::string("NaN");
    }

    std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
    std::map<std::string, std::uint64_t> deliveries_;
    std::uint64_t events_ = 0;
    std::array<std::uint64_t, latency_bounds.size()> buckets_{}; // cumulative counts
    std::uint64_t attempts_ = 0;
    double latency_sum_ = 0;
};

} // namespace revdesk::server
