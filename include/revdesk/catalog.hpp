// The event catalog: the fifteen RevDesk event types, payload validation and the call-end rule.
//
// Everything here is a pure function of its arguments, so every function may be called from any
// thread at the same time. The wire format of each payload is documented in docs/events.md.
#pragma once

#include <boost/json/object.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk {

/// A RevDesk event type. The enumerators carry the exact wire names, and `to_string` returns them.
enum class event_type : std::uint8_t {
    new_call,
    call_completed,
    call_no_answer,
    call_voicemail,
    call_busy,
    call_failed,
    contact_replied,
    sms_sent,
    sms_delivered,
    sms_failed,
    contact_created,
    number_purchased,
    number_released,
    new_appointment,
    workflow_contact_completed,
};

/// Every event type, in declaration order.
inline constexpr std::array<event_type, 15> all_event_types{
    event_type::new_call,
    event_type::call_completed,
    event_type::call_no_answer,
    event_type::call_voicemail,
    event_type::call_busy,
    event_type::call_failed,
    event_type::contact_replied,
    event_type::sms_sent,
    event_type::sms_delivered,
    event_type::sms_failed,
    event_type::contact_created,
    event_type::number_purchased,
    event_type::number_released,
    event_type::new_appointment,
    event_type::workflow_contact_completed,
};

/// Returns the wire name of `t`, such as `call_completed`, or an empty view when `t` is not one of
/// the enumerators. The view refers to static storage.
std::string_view to_string(event_type t) noexcept;

/// Returns one sentence stating when `t` fires, such as "A call starts.", or an empty view when
/// `t` is not one of the enumerators. The view refers to static storage.
std::string_view describe(event_type t) noexcept;

/// Returns the event type whose wire name is exactly `name` (case-sensitive), or nothing.
std::optional<event_type> find_event_type(std::string_view name) noexcept;

/// Returns the event type whose wire name is exactly `name` (case-sensitive).
///
/// Throws std::invalid_argument when no type has that name. Its message quotes `name` (escaped and
/// cut to 64 bytes) and lists every valid name, for example
/// `unknown event type "Call_Completed"; expected one of: new_call, call_completed, ...`, and ends
/// with a hint when `name` differs from a valid name only in letter case.
event_type parse_event_type(std::string_view name);

/// Returns true for the four events that a call end emits beside `call_completed`:
/// `call_no_answer`, `call_voicemail`, `call_busy` and `call_failed`.
bool is_call_disposition(event_type t) noexcept;

/// A time in a payload: UTC, millisecond resolution. On the wire it is ISO-8601 text with exactly
/// three fraction digits and `Z`, such as `2026-06-30T19:30:00.000Z`.
using utc_timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ` (exactly 24 characters, years 0000 to 9999). Returns nothing
/// for any other form, including other offsets, a missing or longer fraction, lower-case `t` or
/// `z`, impossible dates such as February 30, and the leap second `:60`.
std::optional<utc_timestamp> parse_utc_timestamp(std::string_view text) noexcept;

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form `parse_utc_timestamp` accepts.
///
/// Throws std::out_of_range when the year of `t` lies outside 0000 to 9999, because four digits
/// cannot hold it.
std::string format_utc_timestamp(utc_timestamp t);

/// The first thing wrong with a payload.
struct payload_problem {
    std::string field;   ///< The payload member at fault, or empty when the whole payload is.
    std::string message; ///< A sentence naming the member, what is wrong and how to fix it.

    friend bool operator==(payload_problem const&, payload_problem const&) = default;
};

/// Checks that `payload` is a valid payload of an event of type `t`, as documented in
/// docs/events.md. Returns nothing when it is; otherwise the first problem found, checked in this
/// order: a member the shape does not define, then each defined member in shape order (missing,
/// null where not nullable, wrong JSON type, bad format or value), then rules that relate two
/// members, such as `ends_at` not before `starts_at`.
///
/// Integer members (the number `id`, `duration_seconds`) must arrive as JSON integers: their
/// Boost.JSON kind is checked, so `4821.0`, `4.821e3` and integers beyond the int64 range are
/// rejected and never pass through a double. Unrecognized call `status` or `failure_category`
/// values are accepted, because `call_disposition` gives them a defined meaning.
///
/// Throws only std::bad_alloc.
std::optional<payload_problem> check_payload(event_type t, boost::json::object const& payload);

/// Returns the disposition event that a call end with these values emits, or nothing when it emits
/// only `call_completed`. Values are matched ignoring ASCII case, with `-` and space read as `_`,
/// so `no-answer` and `No Answer` match NO_ANSWER:
///
/// | value (`status` or `failure_category`)                        | disposition      |
/// | ------------------------------------------------------------- | ---------------- |
/// | NO_ANSWER, UNANSWERED, RING_TIMEOUT                            | `call_no_answer` |
/// | VOICEMAIL, ANSWERING_MACHINE, MACHINE_DETECTED                | `call_voicemail` |
/// | BUSY                                                          | `call_busy`      |
/// | FAILED, DECLINED, REJECTED, UNREACHABLE, CARRIER_REJECTED,    | `call_failed`    |
/// | INVALID_NUMBER, ERROR                                         |                  |
/// | anything else (COMPLETED, ANSWERED, CANCELED, unknown, empty) | none             |
///
/// `failure_category` wins when it maps to a disposition, because it is the normalized outcome
/// while `status` is the carrier's coarse state (a machine-answered call is often `COMPLETED`).
/// Otherwise `status` decides. Unknown values never produce a disposition on their own.
std::optional<event_type>
call_disposition(std::string_view status,
                 std::optional<std::string_view> failure_category) noexcept;

/// Applies the rule above to a call payload's `status` and `failure_category` members. A member
/// that is missing, null or not a string counts as unknown, so this never throws. Callers should
/// still run `check_payload` first.
std::optional<event_type> call_disposition(boost::json::object const& call_payload) noexcept;

/// Returns the events that the end of this call emits, in order: `call_completed`, then the
/// disposition from `call_disposition` when there is one.
std::vector<event_type> call_end_events(boost::json::object const& call_payload);

} // namespace revdesk

#include <revdesk/impl/catalog.ipp>
