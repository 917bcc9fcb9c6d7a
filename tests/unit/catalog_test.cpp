#include <revdesk/catalog.hpp>

#define BOOST_TEST_MODULE catalog
#include <boost/test/unit_test.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk {
// Lets BOOST_TEST print event types in failure messages.
inline std::ostream& boost_test_print_type(std::ostream& os, event_type t) {
    return os << to_string(t) << " (" << static_cast<int>(t) << ")";
}
inline std::ostream& boost_test_print_type(std::ostream& os, std::optional<event_type> t) {
    if (!t) {
        return os << "nothing";
    }
    return boost_test_print_type(os, *t);
}
} // namespace revdesk

namespace {

using revdesk::event_type;
using namespace std::string_view_literals;

boost::json::object parse_object(std::string_view text) {
    return boost::json::parse(text).as_object();
}

// One valid example payload per event type; docs/events.md shows the same payloads.
constexpr std::string_view call_start_example =
    R"({"id":"call_abc123","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","status":"RINGING","contact_id":"ct_8f2k1m",)"
    R"("created_at":"2026-06-30T19:30:00.000Z"})";

constexpr std::string_view call_example =
    R"({"id":"call_abc123","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","duration_seconds":0,"status":"VOICEMAIL",)"
    R"("failure_code":"voicemail_reached","failure_category":"voicemail",)"
    R"("disconnection_reason":null,"created_at":"2026-06-30T19:30:00.000Z"})";

constexpr std::string_view inbound_sms_example =
    R"({"id":"msg_7d1c9e","phone_number":"+15557654321","to_number":"+15551234567",)"
    R"("direction":"inbound","body":"Yes, 3pm works.","contact_id":"ct_8f2k1m",)"
    R"("channel":"sms","created_at":"2026-06-30T19:31:12.000Z"})";

constexpr std::string_view sms_example =
    R"({"id":"msg_uuid","phone_number":"+15557654321","from_number":"+15551234567",)"
    R"("direction":"outbound","status":"delivered","provider_id":"…","error_message":null,)"
    R"("channel":"sms","created_at":"2026-06-30T19:30:00.000Z"})";

constexpr std::string_view contact_example =
    R"({"id":"ct_8f2k1m","phone_number":"+15557654321","first_name":"Ada",)"
    R"("last_name":"Lovelace","email":null,"created_at":"2026-06-30T19:25:03.000Z"})";

constexpr std::string_view number_example =
    R"({"id":4821,"phone_number":"+15551234567","area_code":"555","status":"ACTIVE",)"
    R"("organization_id":"…"})";

constexpr std::string_view appointment_example =
    R"({"id":"apt_5q2w8e","contact_id":"ct_8f2k1m","phone_number":"+15557654321",)"
    R"("title":"Product demo","starts_at":"2026-07-02T15:00:00.000Z",)"
    R"("ends_at":"2026-07-02T15:30:00.000Z","timezone":"America/New_York",)"
    R"("created_at":"2026-06-30T19:32:45.120Z"})";

constexpr std::string_view workflow_example =
    R"({"id":"wfr_3n6b1x","workflow_id":"wf_follow_up","workflow_name":"Missed-call follow-up",)"
    R"("contact_id":"ct_8f2k1m","phone_number":"+15557654321",)"
    R"("completed_at":"2026-07-01T09:00:00.000Z","created_at":"2026-06-30T19:30:05.000Z"})";

std::string_view example_for(event_type t) {
    switch (t) {
    case event_type::new_call:
        return call_start_example;
    case event_type::call_completed:
    case event_type::call_voicemail:
        return call_example;
    case event_type::call_no_answer:
        return R"({"id":"call_abc124","from_number":"+15551234567","to_number":"+15557654321",)"
               R"("direction":"outbound","duration_seconds":0,"status":"NO_ANSWER",)"
               R"("failure_code":"ring_timeout","failure_category":"no_answer",)"
               R"("disconnection_reason":null,"created_at":"2026-06-30T19:30:00.000Z"})";
    case event_type::call_busy:
        return R"({"id":"call_abc125","from_number":"+15551234567","to_number":"+15557654321",)"
               R"("direction":"outbound","duration_seconds":0,"status":"BUSY",)"
               R"("failure_code":"user_busy","failure_category":"busy",)"
               R"("disconnection_reason":null,"created_at":"2026-06-30T19:30:00.000Z"})";
    case event_type::call_failed:
        return R"({"id":"call_abc126","from_number":"+15551234567","to_number":"+15557654321",)"
               R"("direction":"outbound","duration_seconds":0,"status":"FAILED",)"
               R"("failure_code":"carrier_rejected","failure_category":"failed",)"
               R"("disconnection_reason":"carrier","created_at":"2026-06-30T19:30:00.000Z"})";
    case event_type::contact_replied:
        return inbound_sms_example;
    case event_type::sms_sent:
    case event_type::sms_delivered:
    case event_type::sms_failed:
        return sms_example;
    case event_type::contact_created:
        return contact_example;
    case event_type::number_purchased:
    case event_type::number_released:
        return number_example;
    case event_type::new_appointment:
        return appointment_example;
    case event_type::workflow_contact_completed:
        return workflow_example;
    }
    return {};
}

// The members of each example that may be null.
bool is_nullable(event_type t, std::string_view member) {
    static const std::set<std::string_view> call_nullable{"failure_code", "failure_category",
                                                          "disconnection_reason"};
    switch (t) {
    case event_type::new_call:
        return member == "contact_id";
    case event_type::call_completed:
    case event_type::call_no_answer:
    case event_type::call_voicemail:
    case event_type::call_busy:
    case event_type::call_failed:
        return call_nullable.contains(member);
    case event_type::contact_replied:
        return member == "contact_id";
    case event_type::sms_sent:
    case event_type::sms_delivered:
    case event_type::sms_failed:
        return member == "provider_id" || member == "error_message";
    case event_type::contact_created:
        return member != "id" && member != "created_at";
    case event_type::number_purchased:
    case event_type::number_released:
        return member == "area_code";
    case event_type::new_appointment:
        return member == "contact_id" || member == "phone_number" || member == "title" ||
               member == "timezone";
    case event_type::workflow_contact_completed:
        return member == "workflow_name" || member == "phone_number";
    }
    return false;
}

// Returns the example of `t` with `member` set to the JSON value `replacement`.
boost::json::object example_with(event_type t, std::string_view member,
                                 std::string_view replacement) {
    auto payload = parse_object(example_for(t));
    BOOST_REQUIRE(payload.contains(member));
    payload[member] = boost::json::parse(replacement);
    return payload;
}

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

} // namespace

// ---- names -------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(to_string_all_types_in_order) {
    constexpr std::string_view expected[] = {
        "new_call",        "call_completed",  "call_no_answer",
        "call_voicemail",  "call_busy",       "call_failed",
        "contact_replied", "sms_sent",        "sms_delivered",
        "sms_failed",      "contact_created", "number_purchased",
        "number_released", "new_appointment", "workflow_contact_completed",
    };
    BOOST_TEST_REQUIRE(revdesk::all_event_types.size() == std::size(expected));
    for (std::size_t i = 0; i < std::size(expected); ++i) {
        BOOST_TEST_CONTEXT("index " << i) {
            BOOST_TEST(static_cast<std::size_t>(revdesk::all_event_types[i]) == i);
            BOOST_TEST(revdesk::to_string(revdesk::all_event_types[i]) == expected[i]);
        }
    }
}

BOOST_AUTO_TEST_CASE(find_event_type_every_name_round_trips) {
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            auto found = revdesk::find_event_type(revdesk::to_string(t));
            BOOST_TEST_REQUIRE(found.has_value());
            BOOST_TEST(*found == t);
            BOOST_TEST(revdesk::parse_event_type(revdesk::to_string(t)) == t);
        }
    }
}

BOOST_AUTO_TEST_CASE(find_event_type_wrong_case_or_unknown_rejected) {
    constexpr std::string_view names[] = {
        "Call_Completed",
        "CALL_COMPLETED",
        "call_completed ",
        " call_completed",
        "call-completed",
        "callcompleted",
        "call_complete",
        "",
        "sms",
        "new_call\n",
        "New_Call",
        "call_completed\0"sv,
    };
    for (auto name : names) {
        BOOST_TEST_CONTEXT("name \"" << name << "\"") {
            BOOST_TEST(!revdesk::find_event_type(name).has_value());
            BOOST_CHECK_THROW(revdesk::parse_event_type(name), std::invalid_argument);
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_event_type_wrong_case_lists_names) {
    std::string message;
    try {
        revdesk::parse_event_type("Call_Completed");
    } catch (std::invalid_argument const& e) {
        message = e.what();
    }
    BOOST_TEST(message == "unknown event type \"Call_Completed\"; expected one of: new_call, "
                          "call_completed, call_no_answer, call_voicemail, call_busy, call_failed, "
                          "contact_replied, sms_sent, sms_delivered, sms_failed, contact_created, "
                          "number_purchased, number_released, new_appointment, "
                          "workflow_contact_completed (event type names are case-sensitive: did "
                          "you mean \"call_completed\"?)");
}

BOOST_AUTO_TEST_CASE(parse_event_type_unknown_has_no_hint) {
    std::string message;
    try {
        revdesk::parse_event_type("call_ended");
    } catch (std::invalid_argument const& e) {
        message = e.what();
    }
    BOOST_TEST(
        message.starts_with("unknown event type \"call_ended\"; expected one of: new_call, "));
    BOOST_TEST(message.ends_with(", workflow_contact_completed"));
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            BOOST_TEST(contains(message, revdesk::to_string(t)));
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_event_type_hostile_name_escaped_and_cut) {
    std::string name(200, 'x');
    name[0] = '"';
    name[1] = '\n';
    std::string message;
    try {
        revdesk::parse_event_type(name);
    } catch (std::invalid_argument const& e) {
        message = e.what();
    }
    BOOST_TEST(message.starts_with("unknown event type \"\\\"\\u000a" + std::string(62, 'x') +
                                   "\"... (200 bytes in total); expected one of: "));
    BOOST_TEST(message.size() < 500u);
}

BOOST_AUTO_TEST_CASE(parse_event_type_cut_keeps_utf8_whole) {
    // 63 ASCII bytes and then a 3-byte character that straddles the 64-byte cut.
    std::string name = std::string(63, 'a') + "…tail";
    std::string message;
    try {
        revdesk::parse_event_type(name);
    } catch (std::invalid_argument const& e) {
        message = e.what();
    }
    BOOST_TEST(message.starts_with("unknown event type \"" + std::string(63, 'a') + "\"... ("));
}

BOOST_AUTO_TEST_CASE(to_string_out_of_range_is_empty) {
    auto bad = static_cast<event_type>(200);
    BOOST_TEST(revdesk::to_string(bad).empty());
    BOOST_TEST(revdesk::describe(bad).empty());
    BOOST_TEST(!revdesk::is_call_disposition(bad));
}

BOOST_AUTO_TEST_CASE(describe_every_type_has_sentence) {
    BOOST_TEST(revdesk::describe(event_type::new_call) == "A call starts.");
    BOOST_TEST(revdesk::describe(event_type::contact_replied) == "An inbound SMS was received.");
    std::set<std::string_view> seen;
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            auto text = revdesk::describe(t);
            BOOST_TEST(!text.empty());
            BOOST_TEST(text.ends_with("."));
            BOOST_TEST(seen.insert(text).second);
        }
    }
}

BOOST_AUTO_TEST_CASE(is_call_disposition_exactly_four) {
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            bool expected = t == event_type::call_no_answer || t == event_type::call_voicemail ||
                            t == event_type::call_busy || t == event_type::call_failed;
            BOOST_TEST(revdesk::is_call_disposition(t) == expected);
        }
    }
}

// ---- timestamps --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(parse_utc_timestamp_valid_values) {
    using namespace std::chrono;
    struct case_t {
        std::string_view text;
        sys_time<milliseconds> expected;
    };
    const case_t cases[] = {
        {"1970-01-01T00:00:00.000Z", sys_time<milliseconds>{}},
        {"2026-06-30T19:30:00.000Z", sys_days{2026y / June / 30} + 19h + 30min},
        {"2024-02-29T23:59:59.999Z", sys_days{2024y / February / 29} + 23h + 59min + 59s + 999ms},
        {"1969-12-31T23:59:59.999Z", sys_time<milliseconds>{-1ms}},
        {"0000-01-01T00:00:00.000Z", sys_days{year{0} / January / 1} + 0ms},
        {"9999-12-31T23:59:59.999Z", sys_days{9999y / December / 31} + 23h + 59min + 59s + 999ms},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.text) {
            auto parsed = revdesk::parse_utc_timestamp(c.text);
            BOOST_TEST_REQUIRE(parsed.has_value());
            BOOST_TEST(parsed->time_since_epoch().count() == c.expected.time_since_epoch().count());
            BOOST_TEST(revdesk::format_utc_timestamp(*parsed) == c.text);
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_utc_timestamp_other_forms_rejected) {
    constexpr std::string_view texts[] = {
        "",
        "2026-06-30T19:30:00Z",          // no fraction
        "2026-06-30T19:30:00.0Z",        // one fraction digit
        "2026-06-30T19:30:00.000000Z",   // microseconds
        "2026-06-30T19:30:00.000+00:00", // offset instead of Z
        "2026-06-30T19:30:00.000",       // no zone
        "2026-06-30 19:30:00.000Z",      // space instead of T
        "2026-06-30t19:30:00.000Z",      // lower-case t
        "2026-06-30T19:30:00.000z",      // lower-case z
        "2026-02-30T19:30:00.000Z",      // February 30
        "2025-02-29T19:30:00.000Z",      // not a leap year
        "2026-13-01T19:30:00.000Z",      // month 13
        "2026-00-01T19:30:00.000Z",      // month 0
        "2026-06-00T19:30:00.000Z",      // day 0
        "2026-06-30T24:00:00.000Z",      // hour 24
        "2026-06-30T19:60:00.000Z",      // minute 60
        "2026-06-30T23:59:60.000Z",      // leap second
        "2026-6-30T19:30:00.000Z",       // one-digit month
        "+2026-06-30T19:30:00.000Z",     // signed year
        "2026-06-30T19:30:0a.000Z",      // letter
        "2026-06-30T19:30:00,000Z",      // comma
        "2026-06-30T19:30:00.-00Z",      // sign in the fraction
        "1782847800000",                 // epoch milliseconds
    };
    for (auto text : texts) {
        BOOST_TEST_CONTEXT("text \"" << text << "\"") {
            BOOST_TEST(!revdesk::parse_utc_timestamp(text).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(format_utc_timestamp_year_out_of_range_throws) {
    using namespace std::chrono;
    BOOST_CHECK_THROW(revdesk::format_utc_timestamp(sys_days{year{10000} / January / 1} + 0ms),
                      std::out_of_range);
    BOOST_CHECK_THROW(revdesk::format_utc_timestamp(sys_days{year{-1} / December / 31} + 0ms),
                      std::out_of_range);
}

// ---- call-end rule -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(call_disposition_every_outcome) {
    constexpr auto none = std::optional<event_type>{};
    struct case_t {
        std::string_view status;
        std::optional<std::string_view> category;
        std::optional<event_type> expected;
    };
    const case_t cases[] = {
        // Answered or otherwise successful calls: no disposition.
        {"COMPLETED", std::nullopt, none},
        {"ANSWERED", std::nullopt, none},
        {"completed", std::nullopt, none},
        // Status alone.
        {"NO_ANSWER", std::nullopt, event_type::call_no_answer},
        {"UNANSWERED", std::nullopt, event_type::call_no_answer},
        {"RING_TIMEOUT", std::nullopt, event_type::call_no_answer},
        {"VOICEMAIL", std::nullopt, event_type::call_voicemail},
        {"ANSWERING_MACHINE", std::nullopt, event_type::call_voicemail},
        {"MACHINE_DETECTED", std::nullopt, event_type::call_voicemail},
        {"BUSY", std::nullopt, event_type::call_busy},
        {"FAILED", std::nullopt, event_type::call_failed},
        {"DECLINED", std::nullopt, event_type::call_failed},
        {"REJECTED", std::nullopt, event_type::call_failed},
        {"UNREACHABLE", std::nullopt, event_type::call_failed},
        {"CARRIER_REJECTED", std::nullopt, event_type::call_failed},
        {"INVALID_NUMBER", std::nullopt, event_type::call_failed},
        {"ERROR", std::nullopt, event_type::call_failed},
        // Case, '-' and ' ' do not matter.
        {"no-answer", std::nullopt, event_type::call_no_answer},
        {"No Answer", std::nullopt, event_type::call_no_answer},
        {"busy", std::nullopt, event_type::call_busy},
        {"Voicemail", std::nullopt, event_type::call_voicemail},
        // The category decides when the status names no disposition.
        {"COMPLETED", "no_answer", event_type::call_no_answer},
        {"COMPLETED", "voicemail", event_type::call_voicemail},
        {"COMPLETED", "busy", event_type::call_busy},
        {"COMPLETED", "failed", event_type::call_failed},
        {"COMPLETED", "declined", event_type::call_failed},
        {"", "unreachable", event_type::call_failed},
        {"SOMETHING_NEW", "busy", event_type::call_busy},
        // Agreeing values.
        {"VOICEMAIL", "voicemail", event_type::call_voicemail},
        {"NO_ANSWER", "no_answer", event_type::call_no_answer},
        // Conflicts: a recognized category wins.
        {"NO_ANSWER", "busy", event_type::call_busy},
        {"BUSY", "voicemail", event_type::call_voicemail},
        {"FAILED", "no_answer", event_type::call_no_answer},
        // An unknown category or one that names no disposition leaves the status to decide.
        {"FAILED", "network_glitch", event_type::call_failed},
        {"BUSY", "", event_type::call_busy},
        {"VOICEMAIL", "answered", event_type::call_voicemail},
        {"BUSY", std::nullopt, event_type::call_busy},
        // Nothing recognized: no disposition.
        {"CANCELED", std::nullopt, none},
        {"IN_PROGRESS", std::nullopt, none},
        {"", std::nullopt, none},
        {"NOANSWER", std::nullopt, none},
        {"NO__ANSWER", std::nullopt, none},
        {"COMPLETED", "network_glitch", none},
        {"BUSY_SIGNAL", "", none},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("status \"" << c.status << "\", failure_category "
                                       << (c.category ? "\"" + std::string(*c.category) + "\""
                                                      : std::string("null"))) {
            auto got = revdesk::call_disposition(c.status, c.category);
            BOOST_TEST(got.has_value() == c.expected.has_value());
            if (got && c.expected) {
                BOOST_TEST(*got == *c.expected);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(call_disposition_reads_payload_members) {
    auto voicemail = parse_object(call_example);
    auto found = revdesk::call_disposition(voicemail);
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(*found == event_type::call_voicemail);

    // Missing, null and non-string members count as unknown.
    auto payload = parse_object(R"({"status":"BUSY","failure_category":7})");
    BOOST_TEST(revdesk::call_disposition(payload) == std::optional{event_type::call_busy});
    payload = parse_object(R"({"status":42,"failure_category":null})");
    BOOST_TEST(!revdesk::call_disposition(payload).has_value());
    BOOST_TEST(!revdesk::call_disposition(boost::json::object{}).has_value());
    payload = parse_object(R"({"failure_category":"failed"})");
    BOOST_TEST(revdesk::call_disposition(payload) == std::optional{event_type::call_failed});
}

BOOST_AUTO_TEST_CASE(call_end_events_completed_first) {
    struct case_t {
        std::string_view payload;
        std::vector<event_type> expected;
    };
    const case_t cases[] = {
        {R"({"status":"COMPLETED","failure_category":null})", {event_type::call_completed}},
        {R"({"status":"NO_ANSWER","failure_category":"no_answer"})",
         {event_type::call_completed, event_type::call_no_answer}},
        {R"({"status":"VOICEMAIL","failure_category":"voicemail"})",
         {event_type::call_completed, event_type::call_voicemail}},
        {R"({"status":"BUSY","failure_category":"busy"})",
         {event_type::call_completed, event_type::call_busy}},
        {R"({"status":"DECLINED","failure_category":"failed"})",
         {event_type::call_completed, event_type::call_failed}},
        {R"({"status":"NO_ANSWER","failure_category":"busy"})",
         {event_type::call_completed, event_type::call_busy}},
        {R"({"status":"MYSTERY","failure_category":"mystery"})", {event_type::call_completed}},
        {R"({})", {event_type::call_completed}},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(c.payload) {
            auto events = revdesk::call_end_events(parse_object(c.payload));
            BOOST_TEST(events == c.expected, boost::test_tools::per_element());
        }
    }
}

// ---- payload checks: accepted ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(check_payload_examples_accepted) {
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            auto problem = revdesk::check_payload(t, parse_object(example_for(t)));
            BOOST_TEST(!problem.has_value());
            if (problem) {
                BOOST_TEST_MESSAGE(problem->field << ": " << problem->message);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_nullable_members_accept_null) {
    for (auto t : revdesk::all_event_types) {
        for (auto const& item : parse_object(example_for(t))) {
            std::string_view member = item.key();
            if (!is_nullable(t, member)) {
                continue;
            }
            BOOST_TEST_CONTEXT(revdesk::to_string(t) << " member " << member) {
                auto problem = revdesk::check_payload(t, example_with(t, member, "null"));
                BOOST_TEST(!problem.has_value());
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_unusual_valid_values_accepted) {
    struct case_t {
        event_type type;
        std::string_view member;
        std::string_view value;
    };
    const case_t cases[] = {
        {event_type::call_completed, "duration_seconds", "9223372036854775807"},
        {event_type::call_completed, "direction", R"("inbound")"},
        {event_type::call_completed, "status", R"("SOMETHING_NEW")"},
        {event_type::call_completed, "failure_category", R"("not_in_the_table")"},
        {event_type::call_completed, "duration_seconds", "-0"},
        {event_type::new_call, "to_number", R"("+442071838750")"},
        {event_type::new_call, "to_number", R"("+123456789012345")"},
        {event_type::contact_replied, "body", R"("")"},
        {event_type::number_purchased, "id", "1"},
        {event_type::number_purchased, "id", "9223372036854775807"},
        {event_type::number_purchased, "area_code", R"("030")"},
        {event_type::new_appointment, "ends_at", R"("2026-07-02T15:00:00.000Z")"},
        {event_type::workflow_contact_completed, "completed_at", R"("2026-06-30T19:30:05.000Z")"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(revdesk::to_string(c.type) << " " << c.member << "=" << c.value) {
            auto payload = example_with(c.type, c.member, c.value);
            auto problem = revdesk::check_payload(c.type, payload);
            BOOST_TEST(!problem.has_value());
            if (problem) {
                BOOST_TEST_MESSAGE(problem->message);
            }
        }
    }
}

// ---- payload checks: rejected ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(check_payload_missing_member_named) {
    for (auto t : revdesk::all_event_types) {
        for (auto const& item : parse_object(example_for(t))) {
            std::string member(item.key());
            BOOST_TEST_CONTEXT(revdesk::to_string(t) << " without " << member) {
                auto payload = parse_object(example_for(t));
                payload.erase(member);
                auto problem = revdesk::check_payload(t, payload);
                BOOST_TEST_REQUIRE(problem.has_value());
                BOOST_TEST(problem->field == member);
                BOOST_TEST(problem->message.starts_with("missing required member \"" + member +
                                                        "\"; add it as "));
                // Nullable members must be present too, because the delivered body is the
                // payload as published and subscribers rely on every member being there.
                BOOST_TEST(contains(problem->message, ", or null") == is_nullable(t, member));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_wrong_json_type_named) {
    for (auto t : revdesk::all_event_types) {
        for (auto const& item : parse_object(example_for(t))) {
            std::string member(item.key());
            bool integer = item.value().is_int64();
            // A value of the wrong JSON type for this member, and the phrase naming its type.
            std::string_view wrong = integer ? R"("4821")" : "true";
            std::string_view wrong_name = integer ? "a string" : "a boolean";
            BOOST_TEST_CONTEXT(revdesk::to_string(t) << " " << member << "=" << wrong) {
                auto problem = revdesk::check_payload(t, example_with(t, member, wrong));
                BOOST_TEST_REQUIRE(problem.has_value());
                BOOST_TEST(problem->field == member);
                BOOST_TEST(problem->message.starts_with("member \"" + member + "\" must be " +
                                                        (integer ? "an integer" : "a string")));
                BOOST_TEST(problem->message.ends_with(", not " + std::string(wrong_name)));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_null_where_not_nullable) {
    for (auto t : revdesk::all_event_types) {
        for (auto const& item : parse_object(example_for(t))) {
            std::string member(item.key());
            if (is_nullable(t, member)) {
                continue;
            }
            BOOST_TEST_CONTEXT(revdesk::to_string(t) << " " << member << "=null") {
                auto problem = revdesk::check_payload(t, example_with(t, member, "null"));
                BOOST_TEST_REQUIRE(problem.has_value());
                BOOST_TEST(problem->field == member);
                BOOST_TEST(problem->message.starts_with("member \"" + member +
                                                        "\" must not be null; set it to "));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_unknown_member_named) {
    for (auto t : revdesk::all_event_types) {
        BOOST_TEST_CONTEXT(revdesk::to_string(t)) {
            auto payload = parse_object(example_for(t));
            payload["createdAt"] = "2026-06-30T19:30:00.000Z";
            auto problem = revdesk::check_payload(t, payload);
            BOOST_TEST_REQUIRE(problem.has_value());
            BOOST_TEST(problem->field == "createdAt");
            BOOST_TEST(problem->message.starts_with("unknown member \"createdAt\" for event type " +
                                                    std::string(revdesk::to_string(t)) +
                                                    "; remove it (allowed members: id, "));
        }
    }

    // The unknown member is reported before a missing one, so a misspelled name is pointed at.
    auto payload = parse_object(call_example);
    payload.erase("created_at");
    payload["created"] = "2026-06-30T19:30:00.000Z";
    auto problem = revdesk::check_payload(event_type::call_completed, payload);
    BOOST_TEST_REQUIRE(problem.has_value());
    BOOST_TEST(problem->field == "created");
    BOOST_TEST(
        problem->message ==
        "unknown member \"created\" for event type call_completed; remove it (allowed members: "
        "id, from_number, to_number, direction, duration_seconds, status, failure_code, "
        "failure_category, disconnection_reason, created_at)");
}

BOOST_AUTO_TEST_CASE(check_payload_bad_values_named) {
    struct case_t {
        event_type type;
        std::string_view member;
        std::string_view value;
        std::string_view message;
    };
    const case_t cases[] = {
        // Integers: checked by JSON kind, never through a double.
        {event_type::number_purchased, "id", "4821.0",
         R"(member "id" must be an integer such as 4821, not a number with a fraction or exponent)"},
        {event_type::number_purchased, "id", "4.821e3",
         R"(member "id" must be an integer such as 4821, not a number with a fraction or exponent)"},
        {event_type::number_purchased, "id", "9223372036854775808",
         R"(member "id" must be an integer from 1 to 9223372036854775807; got 9223372036854775808)"},
        {event_type::number_purchased, "id", "18446744073709551615",
         R"(member "id" must be an integer from 1 to 9223372036854775807; got 18446744073709551615)"},
        {event_type::number_purchased, "id", "99999999999999999999999",
         R"(member "id" must be an integer such as 4821, not a number with a fraction or exponent)"},
        {event_type::number_purchased, "id", "0",
         R"(member "id" must be an integer from 1 to 9223372036854775807; got 0)"},
        {event_type::number_released, "id", "-4821",
         R"(member "id" must be an integer from 1 to 9223372036854775807; got -4821)"},
        {event_type::call_completed, "duration_seconds", "-1",
         R"(member "duration_seconds" must be an integer from 0 to 9223372036854775807; got -1)"},
        {event_type::call_completed, "duration_seconds", "12.5",
         R"(member "duration_seconds" must be an integer such as 42, not a number with a fraction or exponent)"},
        {event_type::call_completed, "duration_seconds", "[]",
         R"(member "duration_seconds" must be an integer such as 42, not an array)"},
        {event_type::call_completed, "id", "{}",
         R"(member "id" must be a string such as "call_abc123", not an object)"},
        {event_type::call_completed, "id", "7",
         R"(member "id" must be a string such as "call_abc123", not an integer)"},
        // Empty identifiers and statuses.
        {event_type::call_completed, "id", R"("")",
         R"(member "id" must not be empty; set it to "call_abc123")"},
        {event_type::sms_delivered, "status", R"("")",
         R"(member "status" must not be empty; set it to "delivered")"},
        {event_type::number_purchased, "organization_id", R"("")",
         R"(member "organization_id" must not be empty; set it to "org_2x9d4f")"},
        // Phone numbers.
        {event_type::call_completed, "from_number", R"("5551234567")",
         R"(member "from_number" must be an E.164 phone number: "+" and 1 to 15 digits, the first not 0, with no spaces or dashes, such as "+15551234567"; got "5551234567")"},
        {event_type::sms_sent, "phone_number", R"("+1 555 765 4321")",
         R"(member "phone_number" must be an E.164 phone number: "+" and 1 to 15 digits, the first not 0, with no spaces or dashes, such as "+15557654321"; got "+1 555 765 4321")"},
        {event_type::new_call, "to_number", R"("+1234567890123456")",
         R"(member "to_number" must be an E.164 phone number: "+" and 1 to 15 digits, the first not 0, with no spaces or dashes, such as "+15557654321"; got "+1234567890123456")"},
        {event_type::contact_created, "phone_number", R"("+0555")",
         R"(member "phone_number" must be an E.164 phone number: "+" and 1 to 15 digits, the first not 0, with no spaces or dashes, such as "+15557654321"; got "+0555")"},
        {event_type::contact_created, "phone_number", R"("+")",
         R"(member "phone_number" must be an E.164 phone number: "+" and 1 to 15 digits, the first not 0, with no spaces or dashes, such as "+15557654321"; got "+")"},
        // Directions.
        {event_type::call_completed, "direction", R"("Outbound")",
         R"(member "direction" must be "inbound" or "outbound"; got "Outbound")"},
        {event_type::contact_replied, "direction", R"("outbound")",
         R"(member "direction" must be "inbound" for event type contact_replied; got "outbound")"},
        {event_type::sms_failed, "direction", R"("inbound")",
         R"(member "direction" must be "outbound" for event type sms_failed; got "inbound")"},
        // Timestamps.
        {event_type::call_completed, "created_at", R"("2026-06-30T19:30:00Z")",
         R"(member "created_at" must be an ISO-8601 UTC time with exactly three fraction digits and "Z", such as "2026-06-30T19:30:00.000Z"; got "2026-06-30T19:30:00Z")"},
        {event_type::new_appointment, "starts_at", R"("2026-07-02T15:00:00.000+02:00")",
         R"(member "starts_at" must be an ISO-8601 UTC time with exactly three fraction digits and "Z", such as "2026-07-02T15:00:00.000Z"; got "2026-07-02T15:00:00.000+02:00")"},
        {event_type::sms_sent, "created_at", "1782847800000",
         R"(member "created_at" must be a string such as "2026-06-30T19:30:00.000Z", not an integer)"},
        // Area codes and e-mail addresses.
        {event_type::number_purchased, "area_code", R"("5a5")",
         R"(member "area_code" must be 1 to 6 digits 0-9, such as "555"; got "5a5")"},
        {event_type::number_purchased, "area_code", R"("")",
         R"(member "area_code" must be 1 to 6 digits 0-9, such as "555"; got "")"},
        {event_type::contact_created, "email", R"("ada.example.com")",
         R"(member "email" must be an e-mail address containing "@", such as "ada@example.com"; got "ada.example.com")"},
        // Relations between members.
        {event_type::new_appointment, "ends_at", R"("2026-07-02T14:59:59.999Z")",
         R"(member "ends_at" must not be before member "starts_at" ("2026-07-02T15:00:00.000Z"); got "2026-07-02T14:59:59.999Z")"},
        {event_type::workflow_contact_completed, "completed_at", R"("2026-06-30T19:30:04.999Z")",
         R"(member "completed_at" must not be before member "created_at" ("2026-06-30T19:30:05.000Z"); got "2026-06-30T19:30:04.999Z")"},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(revdesk::to_string(c.type) << " " << c.member << "=" << c.value) {
            auto payload = example_with(c.type, c.member, c.value);
            auto problem = revdesk::check_payload(c.type, payload);
            BOOST_TEST_REQUIRE(problem.has_value());
            BOOST_TEST(problem->field == c.member);
            BOOST_TEST(problem->message == c.message);
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_disposition_must_match_type) {
    struct case_t {
        event_type type;
        std::string_view status;
        std::string_view category; // JSON text
        std::string_view field;    // empty when the payload is accepted
        std::string_view message;
    };
    const case_t cases[] = {
        {event_type::call_voicemail, "VOICEMAIL", R"("busy")", "failure_category",
         R"(member "failure_category" "busy" gives the disposition call_busy, which contradicts )"
         R"(the event type call_voicemail; publish it as call_busy or correct the member)"},
        {event_type::call_busy, "NO_ANSWER", "null", "status",
         R"(member "status" "NO_ANSWER" gives the disposition call_no_answer, which contradicts )"
         R"(the event type call_busy; publish it as call_no_answer or correct the member)"},
        {event_type::call_failed, "COMPLETED", R"("voicemail")", "failure_category",
         R"(member "failure_category" "voicemail" gives the disposition call_voicemail, which )"
         R"(contradicts the event type call_failed; publish it as call_voicemail or correct the )"
         R"(member)"},
        // Values that name no disposition pass, because producers may know outcomes that the
        // table lacks, and a machine-answered call is often COMPLETED.
        {event_type::call_busy, "MACHINE_END_BEEP", "null", "", ""},
        {event_type::call_voicemail, "COMPLETED", "null", "", ""},
        {event_type::call_no_answer, "COMPLETED", R"("no_answer")", "", ""},
        // call_completed accepts every outcome.
        {event_type::call_completed, "BUSY", R"("failed")", "", ""},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(revdesk::to_string(c.type)
                           << " status " << c.status << " category " << c.category) {
            auto payload = example_with(c.type, "failure_category", c.category);
            payload["status"] = c.status;
            auto problem = revdesk::check_payload(c.type, payload);
            BOOST_TEST(problem.has_value() == !c.field.empty());
            if (problem && !c.field.empty()) {
                BOOST_TEST(problem->field == c.field);
                BOOST_TEST(problem->message == c.message);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(check_payload_long_value_cut_in_message) {
    std::string number = "+" + std::string(1000, '1');
    auto payload = parse_object(call_example);
    payload["from_number"] = number;
    auto problem = revdesk::check_payload(event_type::call_completed, payload);
    BOOST_TEST_REQUIRE(problem.has_value());
    BOOST_TEST(problem->field == "from_number");
    BOOST_TEST(problem->message.ends_with("; got \"+" + std::string(63, '1') +
                                          "\"... (1001 bytes in total)"));
}

BOOST_AUTO_TEST_CASE(check_payload_out_of_range_type_rejected) {
    auto problem = revdesk::check_payload(static_cast<event_type>(99), parse_object(call_example));
    BOOST_TEST_REQUIRE(problem.has_value());
    BOOST_TEST(problem->field.empty());
    BOOST_TEST(problem->message == "unknown event type value 99");
}
