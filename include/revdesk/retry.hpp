// The retry decision: what an attempt's outcome means for its delivery, and when to try again.
// Sans-I/O: times and randomness come in as arguments.
#pragma once

#include <revdesk/http/client.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace revdesk {

/// The outcome of an attempt for its delivery.
enum class verdict {
    delivered, ///< 2xx: done.
    retry,     ///< A transient failure: try again after the delay.
    failed,    ///< A permanent failure, or the schedule is exhausted.
    gone,      ///< 410 Gone: the receiver asks to end the subscription.
};

/// The decision for one attempt.
struct retry_decision {
    revdesk::verdict verdict = verdict::failed;
    std::chrono::milliseconds delay{0}; ///< Time until the next attempt, for `retry` only.
};

/// Parses a `Retry-After` value: delay-seconds or an IMF-fixdate such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`. Returns the delay from `now` (never negative), or nothing
/// when the value is invalid.
///
/// NOTE: the two obsolete HTTP date forms (RFC 850 and asctime) are not accepted; a receiver
/// sending one gets the normal schedule.
inline std::optional<std::chrono::seconds>
parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now) {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
    }
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
    }
    if (value.empty()) {
        return std::nullopt;
    }

    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        std::uint64_t seconds = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
        if (ec == std::errc::result_out_of_range) {
            return std::chrono::seconds(INT32_MAX);
        }
        if (ec != std::errc{} || end != value.data() + value.size()) {
            return std::nullopt;
        }
        return std::chrono::seconds(std::min<std::uint64_t>(seconds, INT32_MAX));
    }

    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", exactly 29 characters.
    static constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (value.size() != 29 || value.substr(3, 2) != ", " || value.substr(25) != " GMT" ||
        value[7] != ' ' || value[11] != ' ' || value[16] != ' ' || value[19] != ':' ||
        value[22] != ':') {
        return std::nullopt;
    }
    auto number = [&](std::size_t at, std::size_t length) -> std::optional<int> {
        int n = 0;
        for (std::size_t i = at; i < at + length; ++i) {
            if (value[i] < '0' || value[i] > '9') {
                return std::nullopt;
            }
            n = n * 10 + (value[i] - '0');
        }
        return n;
    };
    auto day = number(5, 2);
    auto month_at = months.find(value.substr(8, 3));
    auto year = number(12, 4);
    auto hour = number(17, 2);
    auto minute = number(20, 2);
    auto second = number(23, 2);
    if (!day || month_at == std::string_view::npos || month_at % 3 != 0 || !year || !hour ||
        !minute || !second || *hour > 23 || *minute > 59 || *second > 60) {
        return std::nullopt;
    }
    std::chrono::year_month_day date{std::chrono::year(*year),
                                     std::chrono::month(static_cast<unsigned>(month_at / 3 + 1)),
                                     std::chrono::day(static_cast<unsigned>(*day))};
    if (!date.ok()) {
        return std::nullopt;
    }
    auto at = std::chrono::sys_days(date) + std::chrono::hours(*hour) +
              std::chrono::minutes(*minute) + std::chrono::seconds(*second);
    auto delay = std::chrono::duration_cast<std::chrono::seconds>(at - now);
    return std::max(delay, std::chrono::seconds(0));
}

/// When to retry a failed delivery.
///
/// The schedule lists the delay before each retry: with the default, a message gets one first
/// attempt and nine retries spread over about three days. Each delay is multiplied by a random
/// factor in [1 - jitter, 1 + jitter] so that the failures of one outage do not all retry at
/// the same moment.
struct retry_policy {
    std::vector<std::chrono::milliseconds> schedule = default_schedule();
    double jitter = 0.2;

    /// The bounds within which a receiver's `Retry-After` replaces the scheduled delay.
    std::chrono::milliseconds min_retry_after{1'000};
    std::chrono::milliseconds max_retry_after{std::chrono::hours(24)};

    /// Returns `5s,5m,30m,2h,5h,10h,14h,20h,24h`.
    static std::vector<std::chrono::milliseconds> default_schedule() {
        using namespace std::chrono;
        return {seconds(5), minutes(5), minutes(30), hours(2), hours(5),
                hours(10),  hours(14),  hours(20),   hours(24)};
    }

    /// Parses a schedule such as `5s,5m,30m,2h`: comma-separated positive integers, each with a
    /// unit of `ms`, `s`, `m`, `h` or `d`. Returns the delays, or a message naming the bad item.
    static std::variant<std::vector<std::chrono::milliseconds>, std::string>
    parse_schedule(std::string_view text) {
        std::vector<std::chrono::milliseconds> delays;
        while (true) {
            auto comma = text.find(',');
            auto item = text.substr(0, comma);
            std::uint64_t count = 0;
            auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), count);
            std::string_view unit(end, item.data() + item.size() - end);
            std::optional<std::chrono::milliseconds> one;
            if (ec == std::errc{} && end != item.data() && count > 0 && count < 1'000'000) {
                auto n = static_cast<std::int64_t>(count);
                if (unit == "ms") {
                    one = std::chrono::milliseconds(n);
                } else if (unit == "s") {
                    one = std::chrono::seconds(n);
                } else if (unit == "m") {
                    one = std::chrono::minutes(n);
                } else if (unit == "h") {
                    one = std::chrono::hours(n);
                } else if (unit == "d") {
                    one = std::chrono::hours(24 * n);
                }
            }
            if (!one) {
                return "invalid retry delay \"" + std::string(item) +
                       "\": write a positive whole number with a unit ms, s, m, h or d, "
                       "such as 5s,5m,30m";
            }
            delays.push_back(*one);
            if (comma == std::string_view::npos) {
                break;
            }
            text.remove_prefix(comma + 1);
        }
        if (delays.size() > 100) {
            return std::string("a retry schedule holds at most 100 delays");
        }
        return delays;
    }

    /// Decides what an attempt's outcome means. `attempts_made` counts the attempt just made
    /// (1 after the first). `unit_random` is uniform in [0, 1) and drives the jitter.
    ///
    /// Any 2xx is delivered. 410 is gone. Network failures, timeouts, 408, 429 and 5xx are
    /// retried while the schedule lasts; every other status, 3xx included, fails at once, and so
    /// does a destination the policy blocks. On 429 and 503 a valid `Retry-After` within
    /// [`min_retry_after`, `max_retry_after`] replaces the scheduled delay, and one outside it is
    /// clamped to the nearer bound.
    retry_decision decide(http::failure error, int status, std::uint32_t attempts_made,
                          std::optional<std::string_view> retry_after,
                          std::chrono::system_clock::time_point now, double unit_random) const {
        if (error == http::failure::none && status >= 200 && status <= 299) {
            return {verdict::delivered, {}};
        }
        if (error == http::failure::none && status == 410) {
            return {verdict::gone, {}};
        }

        bool transient = error == http::failure::none
                             ? status == 408 || status == 429 || (status >= 500 && status <= 599)
                             : error != http::failure::blocked;
        if (!transient || attempts_made == 0 || attempts_made > schedule.size()) {
            return {verdict::failed, {}};
        }

        auto base = schedule[attempts_made - 1];
        auto factor = 1.0 + jitter * (2.0 * unit_random - 1.0);
        auto delay = std::chrono::milliseconds(
            static_cast<std::int64_t>(static_cast<double>(base.count()) * factor));
        if (error == http::failure::none && (status == 429 || status == 503) && retry_after) {
            if (auto asked = parse_retry_after(*retry_after, now)) {
                auto wanted = std::chrono::duration_cast<std::chrono::milliseconds>(*asked);
                delay = std::clamp(wanted, min_retry_after, max_retry_after);
            }
        }
        return {verdict::retry, delay};
    }
};

} // namespace revdesk
