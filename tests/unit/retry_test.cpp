#include <revdesk/retry.hpp>

#define BOOST_TEST_MODULE retry
#include <boost/test/unit_test.hpp>

#include <chrono>

using namespace std::chrono_literals;
using revdesk::retry_policy;
using revdesk::verdict;
using revdesk::http::failure;

namespace {

auto const now = std::chrono::sys_days(std::chrono::year(2026) / 6 / 30) + 19h + 30min;

} // namespace

BOOST_AUTO_TEST_CASE(decide_by_status) {
    retry_policy policy;
    policy.jitter = 0;
    struct row {
        int status;
        verdict expected;
    };
    for (auto [status, expected] :
         {row{200, verdict::delivered}, row{204, verdict::delivered}, row{299, verdict::delivered},
          row{301, verdict::failed}, row{307, verdict::failed}, row{400, verdict::failed},
          row{401, verdict::failed}, row{404, verdict::failed}, row{408, verdict::retry},
          row{410, verdict::gone}, row{422, verdict::failed}, row{429, verdict::retry},
          row{500, verdict::retry}, row{502, verdict::retry}, row{503, verdict::retry},
          row{599, verdict::retry}}) {
        BOOST_TEST_CONTEXT("status " << status) {
            auto d = policy.decide(failure::none, status, 1, std::nullopt, now, 0.5);
            BOOST_TEST((d.verdict == expected));
        }
    }
}

BOOST_AUTO_TEST_CASE(decide_by_failure_class) {
    retry_policy policy;
    for (auto f : {failure::timeout, failure::dns, failure::connect, failure::tls,
                   failure::protocol, failure::io}) {
        BOOST_TEST_CONTEXT("failure " << revdesk::http::to_string(f)) {
            BOOST_TEST((policy.decide(f, 0, 1, std::nullopt, now, 0.5).verdict == verdict::retry));
        }
    }
    BOOST_TEST(
        (policy.decide(failure::blocked, 0, 1, std::nullopt, now, 0.5).verdict == verdict::failed));
}

BOOST_AUTO_TEST_CASE(decide_follows_schedule_then_fails) {
    retry_policy policy;
    policy.jitter = 0;
    auto schedule = retry_policy::default_schedule();
    BOOST_TEST_REQUIRE(schedule.size() == 9u);
    for (std::uint32_t n = 1; n <= schedule.size(); ++n) {
        BOOST_TEST_CONTEXT("attempt " << n) {
            auto d = policy.decide(failure::none, 503, n, std::nullopt, now, 0.5);
            BOOST_TEST((d.verdict == verdict::retry));
            BOOST_TEST(d.delay.count() == schedule[n - 1].count());
        }
    }
    auto last = policy.decide(failure::none, 503, 10, std::nullopt, now, 0.5);
    BOOST_TEST((last.verdict == verdict::failed));
}

BOOST_AUTO_TEST_CASE(decide_applies_jitter_within_bounds) {
    retry_policy policy;
    policy.jitter = 0.2;
    auto low = policy.decide(failure::io, 0, 2, std::nullopt, now, 0.0);
    auto high = policy.decide(failure::io, 0, 2, std::nullopt, now, 0.999999);
    auto mid = policy.decide(failure::io, 0, 2, std::nullopt, now, 0.5);
    BOOST_TEST(low.delay.count() == 240'000);
    BOOST_TEST(high.delay.count() >= 359'000);
    BOOST_TEST(high.delay.count() <= 360'000);
    BOOST_TEST(mid.delay.count() == 300'000);
}

BOOST_AUTO_TEST_CASE(decide_honours_retry_after) {
    retry_policy policy;
    policy.jitter = 0;
    auto seconds = policy.decide(failure::none, 429, 1, "120", now, 0.5);
    BOOST_TEST(seconds.delay.count() == 120'000);

    auto date = policy.decide(failure::none, 503, 1, "Tue, 30 Jun 2026 19:40:00 GMT", now, 0.5);
    BOOST_TEST(date.delay.count() == 600'000);

    auto too_long = policy.decide(failure::none, 429, 1, "9999999", now, 0.5);
    BOOST_TEST(too_long.delay.count() == policy.max_retry_after.count());

    auto zero = policy.decide(failure::none, 429, 1, "0", now, 0.5);
    BOOST_TEST(zero.delay.count() == policy.min_retry_after.count());

    // Only 429 and 503 carry a meaningful Retry-After; a 500 keeps the schedule.
    auto ignored = policy.decide(failure::none, 500, 1, "120", now, 0.5);
    BOOST_TEST(ignored.delay.count() == 5'000);

    auto invalid = policy.decide(failure::none, 429, 1, "soon", now, 0.5);
    BOOST_TEST(invalid.delay.count() == 5'000);
}

BOOST_AUTO_TEST_CASE(parse_retry_after_forms) {
    BOOST_TEST(revdesk::parse_retry_after("0", now)->count() == 0);
    BOOST_TEST(revdesk::parse_retry_after(" 30 ", now)->count() == 30);
    BOOST_TEST(revdesk::parse_retry_after("Tue, 30 Jun 2026 19:29:00 GMT", now)->count() == 0);
    BOOST_TEST(!revdesk::parse_retry_after("", now));
    BOOST_TEST(!revdesk::parse_retry_after("-5", now));
    BOOST_TEST(!revdesk::parse_retry_after("1.5", now));
    BOOST_TEST(!revdesk::parse_retry_after("Tue, 31 Jun 2026 19:29:00 GMT", now));
    BOOST_TEST(!revdesk::parse_retry_after("Tuesday, 30-Jun-26 19:29:00 GMT", now));
}

BOOST_AUTO_TEST_CASE(parse_schedule_accepts_units) {
    auto parsed = retry_policy::parse_schedule("250ms,5s,5m,2h,1d");
    BOOST_TEST_REQUIRE(parsed.index() == 0u);
    auto const& delays = std::get<0>(parsed);
    BOOST_TEST_REQUIRE(delays.size() == 5u);
    BOOST_TEST(delays[0].count() == 250);
    BOOST_TEST(delays[1].count() == 5'000);
    BOOST_TEST(delays[2].count() == 300'000);
    BOOST_TEST(delays[3].count() == 7'200'000);
    BOOST_TEST(delays[4].count() == 86'400'000);
}

BOOST_AUTO_TEST_CASE(parse_schedule_rejects_bad_items) {
    for (auto text : {"", "5", "5x", "0s", "-5s", "5s,", ",5s", "5 s", "1.5s"}) {
        BOOST_TEST_CONTEXT("schedule \"" << text << "\"") {
            auto parsed = retry_policy::parse_schedule(text);
            BOOST_TEST_REQUIRE(parsed.index() == 1u);
            BOOST_TEST(std::get<1>(parsed).find("invalid retry delay") != std::string::npos);
        }
    }
}
