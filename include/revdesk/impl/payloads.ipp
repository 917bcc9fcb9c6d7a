// Inline bodies of <revdesk/payloads.hpp>. Include that header, not this file.
#pragma once

#include <revdesk/payloads.hpp>

#include <boost/json/object.hpp>
#include <boost/json/string.hpp>

#include <stdexcept>
#include <string_view>

namespace revdesk {
namespace detail::payloads {

// Appends members to an object in call order, which is the order they are serialized in.
class object_writer {
public:
    explicit object_writer(boost::json::value& v, std::size_t member_count)
        : object_(v.emplace_object()) {
        object_.reserve(member_count);
    }

    void text(std::string_view key, std::string const& value) {
        object_.emplace(key, std::string_view(value));
    }

    void nullable_text(std::string_view key, std::optional<std::string> const& value) {
        if (value) {
            text(key, *value);
        } else {
            object_.emplace(key, nullptr);
        }
    }

    void integer(std::string_view key, std::int64_t value) { object_.emplace(key, value); }

    void time(std::string_view key, utc_timestamp value) {
        object_.emplace(key, std::string_view(format_utc_timestamp(value)));
    }

    void direction(std::string_view key, revdesk::direction value) {
        object_.emplace(key, value == revdesk::direction::inbound ? "inbound" : "outbound");
    }

private:
    boost::json::object& object_;
};

// Returns `v` as an object after check_payload accepted it for `type`, so that the readers
// below may assume every member is present and well-formed.
inline boost::json::object const& checked_object(boost::json::value const& v, event_type type,
                                                 std::string_view shape) {
    auto const* object = v.if_object();
    if (object == nullptr) {
        throw std::invalid_argument("invalid " + std::string(shape) +
                                    " payload: expected a JSON object");
    }
    if (auto problem = check_payload(type, *object)) {
        throw std::invalid_argument("invalid " + std::string(shape) +
                                    " payload: " + problem->message);
    }
    return *object;
}

inline std::string read_text(boost::json::object const& o, std::string_view key) {
    auto const& s = o.at(key).get_string();
    return std::string(s.data(), s.size());
}

inline std::optional<std::string> read_nullable_text(boost::json::object const& o,
                                                     std::string_view key) {
    if (o.at(key).is_null()) {
        return std::nullopt;
    }
    return read_text(o, key);
}

inline utc_timestamp read_time(boost::json::object const& o, std::string_view key) {
    auto const& s = o.at(key).get_string();
    // Cannot be empty: check_payload has parsed the same text.
    return *parse_utc_timestamp(std::string_view(s.data(), s.size()));
}

inline std::int64_t read_integer(boost::json::object const& o, std::string_view key) {
    return o.at(key).get_int64();
}

inline revdesk::direction read_direction(boost::json::object const& o, std::string_view key) {
    auto const& s = o.at(key).get_string();
    return std::string_view(s.data(), s.size()) == "inbound" ? revdesk::direction::inbound
                                                             : revdesk::direction::outbound;
}

} // namespace detail::payloads

inline std::optional<event_type> call_disposition(call const& c) noexcept {
    std::optional<std::string_view> category;
    if (c.failure_category) {
        category = *c.failure_category;
    }
    return call_disposition(c.status, category);
}

inline std::vector<event_type> call_end_events(call const& c) {
    std::vector<event_type> events{event_type::call_completed};
    if (auto disposition = call_disposition(c)) {
        events.push_back(*disposition);
    }
    return events;
}

// ---- new_call ----------------------------------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, call_start const& p) {
    detail::payloads::object_writer out(v, 7);
    out.text("id", p.id);
    out.text("from_number", p.from_number);
    out.text("to_number", p.to_number);
    out.direction("direction", p.direction);
    out.text("status", p.status);
    out.nullable_text("contact_id", p.contact_id);
    out.time("created_at", p.created_at);
}

inline call_start tag_invoke(boost::json::value_to_tag<call_start>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    auto const& o = payloads::checked_object(v, event_type::new_call, "new_call");
    call_start p;
    p.id = payloads::read_text(o, "id");
    p.from_number = payloads::read_text(o, "from_number");
    p.to_number = payloads::read_text(o, "to_number");
    p.direction = payloads::read_direction(o, "direction");
    p.status = payloads::read_text(o, "status");
    p.contact_id = payloads::read_nullable_text(o, "contact_id");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- call_completed and the dispositions -------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, call const& p) {
    detail::payloads::object_writer out(v, 10);
    out.text("id", p.id);
    out.text("from_number", p.from_number);
    out.text("to_number", p.to_number);
    out.direction("direction", p.direction);
    out.integer("duration_seconds", p.duration_seconds);
    out.text("status", p.status);
    out.nullable_text("failure_code", p.failure_code);
    out.nullable_text("failure_category", p.failure_category);
    out.nullable_text("disconnection_reason", p.disconnection_reason);
    out.time("created_at", p.created_at);
}

inline call tag_invoke(boost::json::value_to_tag<call>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    // The disposition events share this shape; call_completed checks it without requiring a
    // particular outcome.
    auto const& o = payloads::checked_object(v, event_type::call_completed, "call");
    call p;
    p.id = payloads::read_text(o, "id");
    p.from_number = payloads::read_text(o, "from_number");
    p.to_number = payloads::read_text(o, "to_number");
    p.direction = payloads::read_direction(o, "direction");
    p.duration_seconds = payloads::read_integer(o, "duration_seconds");
    p.status = payloads::read_text(o, "status");
    p.failure_code = payloads::read_nullable_text(o, "failure_code");
    p.failure_category = payloads::read_nullable_text(o, "failure_category");
    p.disconnection_reason = payloads::read_nullable_text(o, "disconnection_reason");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- contact_replied ---------------------------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, inbound_sms const& p) {
    detail::payloads::object_writer out(v, 8);
    out.text("id", p.id);
    out.text("phone_number", p.phone_number);
    out.text("to_number", p.to_number);
    out.direction("direction", p.direction);
    out.text("body", p.body);
    out.nullable_text("contact_id", p.contact_id);
    out.text("channel", p.channel);
    out.time("created_at", p.created_at);
}

inline inbound_sms tag_invoke(boost::json::value_to_tag<inbound_sms>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    auto const& o = payloads::checked_object(v, event_type::contact_replied, "contact_replied");
    inbound_sms p;
    p.id = payloads::read_text(o, "id");
    p.phone_number = payloads::read_text(o, "phone_number");
    p.to_number = payloads::read_text(o, "to_number");
    p.direction = payloads::read_direction(o, "direction");
    p.body = payloads::read_text(o, "body");
    p.contact_id = payloads::read_nullable_text(o, "contact_id");
    p.channel = payloads::read_text(o, "channel");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- sms_sent, sms_delivered, sms_failed -------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, sms_message const& p) {
    detail::payloads::object_writer out(v, 9);
    out.text("id", p.id);
    out.text("phone_number", p.phone_number);
    out.text("from_number", p.from_number);
    out.direction("direction", p.direction);
    out.text("status", p.status);
    out.nullable_text("provider_id", p.provider_id);
    out.nullable_text("error_message", p.error_message);
    out.text("channel", p.channel);
    out.time("created_at", p.created_at);
}

inline sms_message tag_invoke(boost::json::value_to_tag<sms_message>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    // The three outbound SMS events check the same rules, so sms_sent stands for all of them.
    auto const& o = payloads::checked_object(v, event_type::sms_sent, "outbound SMS");
    sms_message p;
    p.id = payloads::read_text(o, "id");
    p.phone_number = payloads::read_text(o, "phone_number");
    p.from_number = payloads::read_text(o, "from_number");
    p.direction = payloads::read_direction(o, "direction");
    p.status = payloads::read_text(o, "status");
    p.provider_id = payloads::read_nullable_text(o, "provider_id");
    p.error_message = payloads::read_nullable_text(o, "error_message");
    p.channel = payloads::read_text(o, "channel");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- contact_created ---------------------------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, contact const& p) {
    detail::payloads::object_writer out(v, 6);
    out.text("id", p.id);
    out.nullable_text("phone_number", p.phone_number);
    out.nullable_text("first_name", p.first_name);
    out.nullable_text("last_name", p.last_name);
    out.nullable_text("email", p.email);
    out.time("created_at", p.created_at);
}

inline contact tag_invoke(boost::json::value_to_tag<contact>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    auto const& o = payloads::checked_object(v, event_type::contact_created, "contact_created");
    contact p;
    p.id = payloads::read_text(o, "id");
    p.phone_number = payloads::read_nullable_text(o, "phone_number");
    p.first_name = payloads::read_nullable_text(o, "first_name");
    p.last_name = payloads::read_nullable_text(o, "last_name");
    p.email = payloads::read_nullable_text(o, "email");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- number_purchased, number_released ---------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v,
                       phone_number_event const& p) {
    detail::payloads::object_writer out(v, 5);
    out.integer("id", p.id);
    out.text("phone_number", p.phone_number);
    out.nullable_text("area_code", p.area_code);
    out.text("status", p.status);
    out.text("organization_id", p.organization_id);
}

inline phone_number_event tag_invoke(boost::json::value_to_tag<phone_number_event>,
                                     boost::json::value const& v) {
    namespace payloads = detail::payloads;
    // Both number events check the same rules.
    auto const& o = payloads::checked_object(v, event_type::number_purchased, "number lifecycle");
    phone_number_event p;
    p.id = payloads::read_integer(o, "id");
    p.phone_number = payloads::read_text(o, "phone_number");
    p.area_code = payloads::read_nullable_text(o, "area_code");
    p.status = payloads::read_text(o, "status");
    p.organization_id = payloads::read_text(o, "organization_id");
    return p;
}

// ---- new_appointment ---------------------------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v, appointment const& p) {
    detail::payloads::object_writer out(v, 8);
    out.text("id", p.id);
    out.nullable_text("contact_id", p.contact_id);
    out.nullable_text("phone_number", p.phone_number);
    out.nullable_text("title", p.title);
    out.time("starts_at", p.starts_at);
    out.time("ends_at", p.ends_at);
    out.nullable_text("timezone", p.timezone);
    out.time("created_at", p.created_at);
}

inline appointment tag_invoke(boost::json::value_to_tag<appointment>, boost::json::value const& v) {
    namespace payloads = detail::payloads;
    auto const& o = payloads::checked_object(v, event_type::new_appointment, "new_appointment");
    appointment p;
    p.id = payloads::read_text(o, "id");
    p.contact_id = payloads::read_nullable_text(o, "contact_id");
    p.phone_number = payloads::read_nullable_text(o, "phone_number");
    p.title = payloads::read_nullable_text(o, "title");
    p.starts_at = payloads::read_time(o, "starts_at");
    p.ends_at = payloads::read_time(o, "ends_at");
    p.timezone = payloads::read_nullable_text(o, "timezone");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

// ---- workflow_contact_completed ----------------------------------------------------------------

inline void tag_invoke(boost::json::value_from_tag, boost::json::value& v,
                       workflow_completion const& p) {
    detail::payloads::object_writer out(v, 7);
    out.text("id", p.id);
    out.text("workflow_id", p.workflow_id);
    out.nullable_text("workflow_name", p.workflow_name);
    out.text("contact_id", p.contact_id);
    out.nullable_text("phone_number", p.phone_number);
    out.time("completed_at", p.completed_at);
    out.time("created_at", p.created_at);
}

inline workflow_completion tag_invoke(boost::json::value_to_tag<workflow_completion>,
                                      boost::json::value const& v) {
    namespace payloads = detail::payloads;
    auto const& o = payloads::checked_object(v, event_type::workflow_contact_completed,
                                             "workflow_contact_completed");
    workflow_completion p;
    p.id = payloads::read_text(o, "id");
    p.workflow_id = payloads::read_text(o, "workflow_id");
    p.workflow_name = payloads::read_nullable_text(o, "workflow_name");
    p.contact_id = payloads::read_text(o, "contact_id");
    p.phone_number = payloads::read_nullable_text(o, "phone_number");
    p.completed_at = payloads::read_time(o, "completed_at");
    p.created_at = payloads::read_time(o, "created_at");
    return p;
}

} // namespace revdesk
