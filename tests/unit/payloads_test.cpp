#include <revdesk/payloads.hpp>

#define BOOST_TEST_MODULE payloads
#include <boost/test/unit_test.hpp>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk {
// Lets BOOST_TEST print event types in failure messages.
inline std::ostream& boost_test_print_type(std::ostream& os, event_type t) {
    return os << to_string(t);
}
} // namespace revdesk

namespace {

using revdesk::event_type;

revdesk::utc_timestamp at(std::string_view text) {
    auto parsed = revdesk::parse_utc_timestamp(text);
    BOOST_TEST_REQUIRE(parsed.has_value());
    return *parsed;
}

template <class T>
std::string to_json_text(T const& payload) {
    return boost::json::serialize(boost::json::value_from(payload));
}

// ---- the three shapes RevDesk publishes, byte for byte ----------------------------------------

constexpr std::string_view call_text =
    R"({"id":"call_abc123","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","duration_seconds":0,"status":"VOICEMAIL",)"
    R"("failure_code":"voicemail_reached","failure_category":"voicemail",)"
    R"("disconnection_reason":null,"created_at":"2026-06-30T19:30:00.000Z"})";

revdesk::call call_value() {
    revdesk::call c;
    c.id = "call_abc123";
    c.from_number = "+15551234567";
    c.to_number = "+15557654321";
    c.direction = revdesk::direction::outbound;
    c.duration_seconds = 0;
    c.status = "VOICEMAIL";
    c.failure_code = "voicemail_reached";
    c.failure_category = "voicemail";
    c.disconnection_reason = std::nullopt;
    c.created_at = at("2026-06-30T19:30:00.000Z");
    return c;
}

constexpr std::string_view sms_text =
    R"({"id":"msg_uuid","phone_number":"+15557654321","from_number":"+15551234567",)"
    R"("direction":"outbound","status":"delivered","provider_id":"…","error_message":null,)"
    R"("channel":"sms","created_at":"2026-06-30T19:30:00.000Z"})";

revdesk::sms_message sms_value() {
    revdesk::sms_message m;
    m.id = "msg_uuid";
    m.phone_number = "+15557654321";
    m.from_number = "+15551234567";
    m.direction = revdesk::direction::outbound;
    m.status = "delivered";
    m.provider_id = "…";
    m.error_message = std::nullopt;
    m.channel = "sms";
    m.created_at = at("2026-06-30T19:30:00.000Z");
    return m;
}

constexpr std::string_view number_text =
    R"({"id":4821,"phone_number":"+15551234567","area_code":"555","status":"ACTIVE",)"
    R"("organization_id":"…"})";

revdesk::phone_number_event number_value() {
    revdesk::phone_number_event n;
    n.id = 4821;
    n.phone_number = "+15551234567";
    n.area_code = "555";
    n.status = "ACTIVE";
    n.organization_id = "…";
    return n;
}

// ---- the five shapes designed in docs/events.md ------------------------------------------------

constexpr std::string_view call_start_text =
    R"({"id":"call_abc123","from_number":"+15551234567","to_number":"+15557654321",)"
    R"("direction":"outbound","status":"RINGING","contact_id":"ct_8f2k1m",)"
    R"("created_at":"2026-06-30T19:30:00.000Z"})";

revdesk::call_start call_start_value() {
    revdesk::call_start c;
    c.id = "call_abc123";
    c.from_number = "+15551234567";
    c.to_number = "+15557654321";
    c.direction = revdesk::direction::outbound;
    c.status = "RINGING";
    c.contact_id = "ct_8f2k1m";
    c.created_at = at("2026-06-30T19:30:00.000Z");
    return c;
}

constexpr std::string_view inbound_sms_text =
    R"({"id":"msg_7d1c9e","phone_number":"+15557654321","to_number":"+15551234567",)"
    R"("direction":"inbound","body":"Yes, 3pm works.","contact_id":"ct_8f2k1m",)"
    R"("channel":"sms","created_at":"2026-06-30T19:31:12.000Z"})";

revdesk::inbound_sms inbound_sms_value() {
    revdesk::inbound_sms m;
    m.id = "msg_7d1c9e";
    m.phone_number = "+15557654321";
    m.to_number = "+15551234567";
    m.direction = revdesk::direction::inbound;
    m.body = "Yes, 3pm works.";
    m.contact_id = "ct_8f2k1m";
    m.channel = "sms";
    m.created_at = at("2026-06-30T19:31:12.000Z");
    return m;
}

constexpr std::string_view contact_text =
    R"({"id":"ct_8f2k1m","phone_number":"+15557654321","first_name":"Ada",)"
    R"("last_name":"Lovelace","email":null,"created_at":"2026-06-30T19:25:03.000Z"})";

revdesk::contact contact_value() {
    revdesk::contact c;
    c.id = "ct_8f2k1m";
    c.phone_number = "+15557654321";
    c.first_name = "Ada";
    c.last_name = "Lovelace";
    c.email = std::nullopt;
    c.created_at = at("2026-06-30T19:25:03.000Z");
    return c;
}

constexpr std::string_view appointment_text =
    R"({"id":"apt_5q2w8e","contact_id":"ct_8f2k1m","phone_number":"+15557654321",)"
    R"("title":"Product demo","starts_at":"2026-07-02T15:00:00.000Z",)"
    R"("ends_at":"2026-07-02T15:30:00.000Z","timezone":"America/New_York",)"
    R"("created_at":"2026-06-30T19:32:45.120Z"})";

revdesk::appointment appointment_value() {
    revdesk::appointment a;
    a.id = "apt_5q2w8e";
    a.contact_id = "ct_8f2k1m";
    a.phone_number = "+15557654321";
    a.title = "Product demo";
    a.starts_at = at("2026-07-02T15:00:00.000Z");
    a.ends_at = at("2026-07-02T15:30:00.000Z");
    a.timezone = "America/New_York";
    a.created_at = at("2026-06-30T19:32:45.120Z");
    return a;
}

constexpr std::string_view workflow_text =
    R"({"id":"wfr_3n6b1x","workflow_id":"wf_follow_up","workflow_name":"Missed-call follow-up",)"
    R"("contact_id":"ct_8f2k1m","phone_number":"+15557654321",)"
    R"("completed_at":"2026-07-01T09:00:00.000Z","created_at":"2026-06-30T19:30:05.000Z"})";

revdesk::workflow_completion workflow_value() {
    revdesk::workflow_completion w;
    w.id = "wfr_3n6b1x";
    w.workflow_id = "wf_follow_up";
    w.workflow_name = "Missed-call follow-up";
    w.contact_id = "ct_8f2k1m";
    w.phone_number = "+15557654321";
    w.completed_at = at("2026-07-01T09:00:00.000Z");
    w.created_at = at("2026-06-30T19:30:05.000Z");
    return w;
}

// Checks one shape: serialization byte for byte, parsing back, and both round trips.
template <class T>
void check_shape(T const& value, std::string_view text) {
    BOOST_TEST(to_json_text(value) == text);

    auto parsed = boost::json::value_to<T>(boost::json::parse(text));
    BOOST_TEST((parsed == value));

    BOOST_TEST(to_json_text(parsed) == text);
    BOOST_TEST((boost::json::value_to<T>(boost::json::value_from(value)) == value));
}

// Returns the what() of the std::invalid_argument that value_to<T> throws for `text`.
template <class T>
std::string value_to_error(std::string_view text) {
    try {
        boost::json::value_to<T>(boost::json::parse(text));
    } catch (std::invalid_argument const& e) {
        return e.what();
    }
    return "no exception";
}

} // namespace

// ---- exact shapes ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(value_from_call_matches_published_shape) {
    check_shape(call_value(), call_text);
}

BOOST_AUTO_TEST_CASE(value_from_sms_message_matches_published_shape) {
    check_shape(sms_value(), sms_text);
}

BOOST_AUTO_TEST_CASE(value_from_phone_number_event_matches_published_shape) {
    check_shape(number_value(), number_text);
    // The id is a JSON integer, not a string and not a double.
    auto v = boost::json::value_from(number_value());
    BOOST_TEST(v.as_object().at("id").is_int64());
}

BOOST_AUTO_TEST_CASE(value_from_call_start_matches_documented_shape) {
    check_shape(call_start_value(), call_start_text);
}

BOOST_AUTO_TEST_CASE(value_from_inbound_sms_matches_documented_shape) {
    check_shape(inbound_sms_value(), inbound_sms_text);
}

BOOST_AUTO_TEST_CASE(value_from_contact_matches_documented_shape) {
    check_shape(contact_value(), contact_text);
}

BOOST_AUTO_TEST_CASE(value_from_appointment_matches_documented_shape) {
    check_shape(appointment_value(), appointment_text);
}

BOOST_AUTO_TEST_CASE(value_from_workflow_completion_matches_documented_shape) {
    check_shape(workflow_value(), workflow_text);
}

BOOST_AUTO_TEST_CASE(value_from_shapes_pass_check_payload) {
    struct case_t {
        event_type type;
        boost::json::value value;
    };
    const case_t cases[] = {
        {event_type::new_call, boost::json::value_from(call_start_value())},
        {event_type::call_completed, boost::json::value_from(call_value())},
        {event_type::call_voicemail, boost::json::value_from(call_value())},
        {event_type::contact_replied, boost::json::value_from(inbound_sms_value())},
        {event_type::sms_sent, boost::json::value_from(sms_value())},
        {event_type::sms_delivered, boost::json::value_from(sms_value())},
        {event_type::sms_failed, boost::json::value_from(sms_value())},
        {event_type::contact_created, boost::json::value_from(contact_value())},
        {event_type::number_purchased, boost::json::value_from(number_value())},
        {event_type::number_released, boost::json::value_from(number_value())},
        {event_type::new_appointment, boost::json::value_from(appointment_value())},
        {event_type::workflow_contact_completed, boost::json::value_from(workflow_value())},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT(revdesk::to_string(c.type)) {
            auto problem = revdesk::check_payload(c.type, c.value.as_object());
            BOOST_TEST(!problem.has_value());
            if (problem) {
                BOOST_TEST_MESSAGE(problem->message);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(value_from_empty_optionals_written_as_null) {
    revdesk::contact c;
    c.id = "ct_1";
    c.created_at = at("2026-01-02T03:04:05.006Z");
    BOOST_TEST(to_json_text(c) == R"({"id":"ct_1","phone_number":null,"first_name":null,)"
                                  R"("last_name":null,"email":null,)"
                                  R"("created_at":"2026-01-02T03:04:05.006Z"})");

    revdesk::appointment a;
    a.id = "apt_1";
    a.starts_at = at("2026-07-02T15:00:00.000Z");
    a.ends_at = a.starts_at;
    a.created_at = a.starts_at;
    BOOST_TEST(to_json_text(a) ==
               R"({"id":"apt_1","contact_id":null,"phone_number":null,"title":null,)"
               R"("starts_at":"2026-07-02T15:00:00.000Z","ends_at":"2026-07-02T15:00:00.000Z",)"
               R"("timezone":null,"created_at":"2026-07-02T15:00:00.000Z"})");

    auto back = boost::json::value_to<revdesk::appointment>(boost::json::value_from(a));
    BOOST_TEST(!back.contact_id.has_value());
    BOOST_TEST(!back.timezone.has_value());
}

BOOST_AUTO_TEST_CASE(value_from_escapes_strings) {
    auto m = inbound_sms_value();
    m.body = "Line one\n\"quoted\" \\ tab\t";
    auto text = to_json_text(m);
    BOOST_TEST(text.find(R"("body":"Line one\n\"quoted\" \\ tab\t")") != std::string::npos);
    BOOST_TEST((boost::json::value_to<revdesk::inbound_sms>(boost::json::parse(text)) == m));
}

BOOST_AUTO_TEST_CASE(value_from_uses_target_storage) {
    boost::json::monotonic_resource resource;
    boost::json::value v(&resource);
    boost::json::value_from(call_value(), v);
    BOOST_TEST(v.as_object().storage().get() == &resource);
    BOOST_TEST(boost::json::serialize(v) == call_text);
}

BOOST_AUTO_TEST_CASE(value_from_year_out_of_range_throws) {
    auto c = call_value();
    c.created_at = revdesk::utc_timestamp{} + std::chrono::years{9000};
    BOOST_CHECK_THROW(boost::json::value_from(c), std::out_of_range);
}

BOOST_AUTO_TEST_CASE(value_to_large_number_id_keeps_every_digit) {
    auto n = boost::json::value_to<revdesk::phone_number_event>(boost::json::parse(
        R"({"id":9007199254740993,"phone_number":"+15551234567","area_code":null,)"
        R"("status":"RELEASED","organization_id":"org_1"})"));
    // 2^53 + 1 has no exact double, so this fails if the id passes through a double.
    BOOST_TEST(n.id == 9007199254740993);
    BOOST_TEST(!n.area_code.has_value());
    BOOST_TEST(to_json_text(n) == R"({"id":9007199254740993,"phone_number":"+15551234567",)"
                                  R"("area_code":null,"status":"RELEASED",)"
                                  R"("organization_id":"org_1"})");
}

// ---- value_to rejects invalid payloads ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(value_to_invalid_payload_throws_with_member) {
    BOOST_TEST(value_to_error<revdesk::call>(R"({"id":"call_1"})") ==
               R"(invalid call payload: missing required member "from_number"; add it as a )"
               R"(string such as "+15551234567")");

    BOOST_TEST(value_to_error<revdesk::phone_number_event>(
                   R"({"id":4821.0,"phone_number":"+15551234567","area_code":"555",)"
                   R"("status":"ACTIVE","organization_id":"org_1"})") ==
               R"(invalid number lifecycle payload: member "id" must be an integer such as 4821, )"
               R"(not a number with a fraction or exponent)");

    BOOST_TEST(value_to_error<revdesk::sms_message>(R"([1,2])") ==
               "invalid outbound SMS payload: expected a JSON object");

    std::string inbound(sms_text);
    inbound.replace(inbound.find("\"outbound\""), 10, "\"inbound\"");
    BOOST_TEST(value_to_error<revdesk::sms_message>(inbound) ==
               R"(invalid outbound SMS payload: member "direction" must be "outbound" for )"
               R"(event type sms_sent; got "inbound")");

    BOOST_TEST(value_to_error<revdesk::appointment>(
                   R"({"id":"apt_1","contact_id":null,"phone_number":null,"title":null,)"
                   R"("starts_at":"2026-07-02T15:00:00.000Z","ends_at":"2026-07-02T14:00:00.000Z",)"
                   R"("timezone":null,"created_at":"2026-06-30T19:32:45.120Z"})") ==
               R"(invalid new_appointment payload: member "ends_at" must not be before member )"
               R"("starts_at" ("2026-07-02T15:00:00.000Z"); got "2026-07-02T14:00:00.000Z")");
}

BOOST_AUTO_TEST_CASE(value_to_extra_member_throws) {
    std::string text(call_start_text);
    text.insert(text.size() - 1, R"(,"duration_seconds":0)");
    auto message = value_to_error<revdesk::call_start>(text);
    BOOST_TEST(message.starts_with(
        R"(invalid new_call payload: unknown member "duration_seconds" for event type new_call)"));
}

// ---- call-end rule on typed calls --------------------------------------------------------------

BOOST_AUTO_TEST_CASE(call_end_events_typed_call_every_outcome) {
    struct case_t {
        std::string_view status;
        std::optional<std::string> category;
        std::vector<event_type> expected;
    };
    const case_t cases[] = {
        {"COMPLETED", std::nullopt, {event_type::call_completed}},
        {"NO_ANSWER", "no_answer", {event_type::call_completed, event_type::call_no_answer}},
        {"VOICEMAIL", "voicemail", {event_type::call_completed, event_type::call_voicemail}},
        {"BUSY", "busy", {event_type::call_completed, event_type::call_busy}},
        {"DECLINED", "failed", {event_type::call_completed, event_type::call_failed}},
        {"COMPLETED", "voicemail", {event_type::call_completed, event_type::call_voicemail}},
        {"NO_ANSWER", "busy", {event_type::call_completed, event_type::call_busy}},
        {"FAILED", "unknown_category", {event_type::call_completed, event_type::call_failed}},
        {"CANCELED", std::nullopt, {event_type::call_completed}},
    };
    for (auto const& c : cases) {
        BOOST_TEST_CONTEXT("status " << c.status << ", failure_category "
                                     << c.category.value_or("null")) {
            auto typed = call_value();
            typed.status = c.status;
            typed.failure_category = c.category;
            auto events = revdesk::call_end_events(typed);
            BOOST_TEST(events == c.expected, boost::test_tools::per_element());

            // The typed and the JSON forms agree.
            auto json = boost::json::value_from(typed);
            auto from_json = revdesk::call_end_events(json.as_object());
            BOOST_TEST(from_json == c.expected, boost::test_tools::per_element());
        }
    }
}
