// Typed payloads of the RevDesk events, with Boost.JSON conversions.
//
// boost::json::value_from(x) produces the wire shape documented in docs/events.md: every member,
// in the documented order, with empty std::optional members written as null. So
// boost::json::serialize(boost::json::value_from(x)) is the exact body RevDesk delivers.
// boost::json::value_to<T>(v) first runs check_payload on `v` and throws std::invalid_argument,
// with the check's message, when `v` is not a valid payload of the shape. A shape shared by
// several event types is checked as its first one (call_completed, sms_sent, number_purchased),
// and messages name that type.
//
// The types are plain values: safe to use from several threads as long as no thread writes an
// object that another thread reads.
#pragma once

#include <revdesk/catalog.hpp>

#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace revdesk {

/// The direction of a call or message, seen from the workspace: `inbound` when the contact
/// started it, `outbound` when the workspace did. On the wire: `"inbound"` or `"outbound"`.
enum class direction : std::uint8_t { inbound, outbound };

/// The payload of `new_call`: a call that has just started.
struct call_start {
    std::string id;          ///< Call id, such as `call_abc123`.
    std::string from_number; ///< E.164 number of the caller.
    std::string to_number;   ///< E.164 number of the callee.
    revdesk::direction direction{};
    std::string status;                    ///< Carrier state, such as `RINGING` or `INITIATED`.
    std::optional<std::string> contact_id; ///< The contact on the other end, when known.
    utc_timestamp created_at{};            ///< When the call was created.

    friend bool operator==(call_start const&, call_start const&) = default;
};

/// The payload of `call_completed` and of the dispositions `call_no_answer`, `call_voicemail`,
/// `call_busy` and `call_failed`: a call that has ended.
struct call {
    std::string id;          ///< Call id, such as `call_abc123`.
    std::string from_number; ///< E.164 number of the caller.
    std::string to_number;   ///< E.164 number of the callee.
    revdesk::direction direction{};
    std::int64_t duration_seconds = 0;       ///< Talk time in whole seconds; 0 when never answered.
    std::string status;                      ///< Final state, such as `COMPLETED` or `VOICEMAIL`.
    std::optional<std::string> failure_code; ///< Specific cause, such as `voicemail_reached`.
    std::optional<std::string> failure_category;     ///< Normalized outcome, such as `voicemail`.
    std::optional<std::string> disconnection_reason; ///< Who or what ended the call.
    utc_timestamp created_at{};                      ///< When the call was created.

    friend bool operator==(call const&, call const&) = default;
};

/// The payload of `contact_replied`: an inbound SMS.
struct inbound_sms {
    std::string id;           ///< Message id, such as `msg_7d1c9e`.
    std::string phone_number; ///< E.164 number of the contact who sent the message.
    std::string to_number;    ///< E.164 number of the workspace that received it.
    /// Always `inbound` in a valid payload.
    revdesk::direction direction = revdesk::direction::inbound;
    std::string body;                      ///< Message text; may be empty.
    std::optional<std::string> contact_id; ///< The sender's contact, when known.
    std::string channel = "sms";
    utc_timestamp created_at{}; ///< When the message was received.

    friend bool operator==(inbound_sms const&, inbound_sms const&) = default;
};

/// The payload of `sms_sent`, `sms_delivered` and `sms_failed`: an outbound SMS.
struct sms_message {
    std::string id;           ///< Message id, such as `msg_uuid`.
    std::string phone_number; ///< E.164 number of the recipient.
    std::string from_number;  ///< E.164 number of the workspace that sent it.
    /// Always `outbound` in a valid payload.
    revdesk::direction direction = revdesk::direction::outbound;
    std::string status; ///< Carrier state, such as `sent`, `delivered` or `undelivered`.
    std::optional<std::string> provider_id;   ///< The carrier's message id, once assigned.
    std::optional<std::string> error_message; ///< The carrier's error text, for failures.
    std::string channel = "sms";
    utc_timestamp created_at{}; ///< When the message was created.

    friend bool operator==(sms_message const&, sms_message const&) = default;
};

/// The payload of `contact_created`.
struct contact {
    std::string id;                          ///< Contact id, such as `ct_8f2k1m`.
    std::optional<std::string> phone_number; ///< E.164 number.
    std::optional<std::string> first_name;
    std::optional<std::string> last_name;
    std::optional<std::string> email;
    utc_timestamp created_at{};

    friend bool operator==(contact const&, contact const&) = default;
};

/// The payload of `number_purchased` and `number_released`.
struct phone_number_event {
    std::int64_t id = 0;                  ///< Positive; a JSON integer on the wire.
    std::string phone_number;             ///< E.164 number.
    std::optional<std::string> area_code; ///< Digits only, such as `555`.
    std::string status;                   ///< Such as `ACTIVE` or `RELEASED`.
    std::string organization_id;

    friend bool operator==(phone_number_event const&, phone_number_event const&) = default;
};

/// The payload of `new_appointment`: a booking.
struct appointment {
    std::string id;                          ///< Appointment id, such as `apt_5q2w8e`.
    std::optional<std::string> contact_id;   ///< The contact who booked, when known.
    std::optional<std::string> phone_number; ///< E.164 number of that contact.
    std::optional<std::string> title;
    utc_timestamp starts_at{};
    utc_timestamp ends_at{}; ///< Not before `starts_at` in a valid payload.
    /// IANA time zone the booking was made in, such as `America/New_York`, for display. The
    /// times above are UTC regardless.
    std::optional<std::string> timezone;
    utc_timestamp created_at{}; ///< When the booking was made.

    friend bool operator==(appointment const&, appointment const&) = default;
};

/// The payload of `workflow_contact_completed`: one contact's run through a workflow.
struct workflow_completion {
    std::string id;          ///< Run id, such as `wfr_3n6b1x`.
    std::string workflow_id; ///< Such as `wf_follow_up`.
    std::optional<std::string> workflow_name;
    std::string contact_id;                  ///< Such as `ct_8f2k1m`.
    std::optional<std::string> phone_number; ///< E.164 number of the contact.
    utc_timestamp completed_at{};            ///< Not before `created_at` in a valid payload.
    utc_timestamp created_at{};              ///< When the contact entered the workflow.

    friend bool operator==(workflow_completion const&, workflow_completion const&) = default;
};

/// Returns the disposition that the end of `c` emits, by the rule of
/// `call_disposition(std::string_view, std::optional<std::string_view>)`.
std::optional<event_type> call_disposition(call const& c) noexcept;

/// Returns the events that the end of `c` emits: `call_completed`, then its disposition if any.
std::vector<event_type> call_end_events(call const& c);

// Boost.JSON conversions, found by argument-dependent lookup. Call them through
// boost::json::value_from and boost::json::value_to. Throws: value_from throws
// std::out_of_range for a timestamp outside the years 0000 to 9999; value_to throws
// std::invalid_argument for a value that is not a valid payload.

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, call_start const& p);
call_start tag_invoke(boost::json::value_to_tag<call_start>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, call const& p);
call tag_invoke(boost::json::value_to_tag<call>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, inbound_sms const& p);
inbound_sms tag_invoke(boost::json::value_to_tag<inbound_sms>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, sms_message const& p);
sms_message tag_invoke(boost::json::value_to_tag<sms_message>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, contact const& p);
contact tag_invoke(boost::json::value_to_tag<contact>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, phone_number_event const& p);
phone_number_event tag_invoke(boost::json::value_to_tag<phone_number_event>,
                              boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, appointment const& p);
appointment tag_invoke(boost::json::value_to_tag<appointment>, boost::json::value const& v);

void tag_invoke(boost::json::value_from_tag, boost::json::value& v, workflow_completion const& p);
workflow_completion tag_invoke(boost::json::value_to_tag<workflow_completion>,
                               boost::json::value const& v);

} // namespace revdesk

#include <revdesk/impl/payloads.ipp>
