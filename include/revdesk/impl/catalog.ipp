// Inline bodies of <revdesk/catalog.hpp>. Include that header, not this file.
#pragma once

#include <revdesk/catalog.hpp>

#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <limits>
#include <span>
#include <stdexcept>

namespace revdesk {
namespace detail::catalog {

struct event_entry {
    std::string_view name;
    std::string_view description;
};

// Indexed by the enumerator value, so the order must follow the declaration of event_type.
inline constexpr std::array<event_entry, 15> event_entries{{
    {"new_call", "A call starts."},
    {"call_completed", "A call ends, whatever the outcome."},
    {"call_no_answer", "A call ended unanswered because it rang out."},
    {"call_voicemail", "A call reached voicemail or an answering machine."},
    {"call_busy", "The destination of a call was busy."},
    {"call_failed", "A call failed: it was declined, unreachable or rejected by the carrier."},
    {"contact_replied", "An inbound SMS was received."},
    {"sms_sent", "An outbound SMS was accepted by the carrier."},
    {"sms_delivered", "An outbound SMS was delivered to the handset."},
    {"sms_failed", "An outbound SMS failed or was undelivered."},
    {"contact_created", "A new contact was created."},
    {"number_purchased", "A phone number finished provisioning and went active."},
    {"number_released", "A phone number was released from the workspace."},
    {"new_appointment", "A booking was created."},
    {"workflow_contact_completed", "A contact finished a workflow."},
}};

inline event_entry const* find_entry(event_type t) noexcept {
    auto index = static_cast<std::size_t>(t);
    return index < event_entries.size() ? &event_entries[index] : nullptr;
}

inline char ascii_lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline bool ascii_iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

// Longest prefix of a caller's value that an error message repeats.
inline constexpr std::size_t max_quoted_bytes = 64;

// Quotes `text` for an error message: JSON-style escapes for quotes, backslashes and control
// bytes, cut to max_quoted_bytes on a UTF-8 character boundary so the message stays valid UTF-8.
inline std::string quote(std::string_view text) {
    std::size_t kept = text.size();
    if (kept > max_quoted_bytes) {
        kept = max_quoted_bytes;
        while (kept > 0 && (static_cast<unsigned char>(text[kept]) & 0xC0) == 0x80) {
            --kept;
        }
    }

    std::string out = "\"";
    for (char c : text.substr(0, kept)) {
        auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte == 0x7F) {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\u00";
            out += hex[byte >> 4];
            out += hex[byte & 0xF];
        } else {
            out += c;
        }
    }
    out += '"';

    if (kept < text.size()) {
        out += "... (";
        out += std::to_string(text.size());
        out += " bytes in total)";
    }
    return out;
}

// ---- timestamps --------------------------------------------------------------------------------

// Reads `count` decimal digits at `text[at]`, or returns -1 when any of them is not a digit.
inline int read_digits(std::string_view text, std::size_t at, std::size_t count) noexcept {
    int value = 0;
    for (std::size_t i = at; i < at + count; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

inline void append_digits(std::string& out, int value, int width) {
    char buffer[8];
    for (int i = width - 1; i >= 0; --i) {
        buffer[i] = static_cast<char>('0' + value % 10);
        value /= 10;
    }
    out.append(buffer, static_cast<std::size_t>(width));
}

// ---- payload shapes ----------------------------------------------------------------------------

// What a member must contain, beyond its JSON type.
enum class member_kind : std::uint8_t {
    any_string,         // any string, the empty one included
    non_empty_string,   // identifiers, statuses, channels
    phone_number,       // E.164
    direction,          // "inbound" or "outbound"
    inbound_direction,  // exactly "inbound"
    outbound_direction, // exactly "outbound"
    digits,             // area codes
    email,              // contains '@'
    timestamp,          // YYYY-MM-DDTHH:MM:SS.mmmZ
    count,              // JSON integer, 0 or more
    record_id,          // JSON integer, 1 or more
};

struct member_spec {
    std::string_view name;
    member_kind kind;
    bool nullable;
    std::string_view example; // JSON text shown in messages
};

inline constexpr member_spec call_start_members[] = {
    {"id", member_kind::non_empty_string, false, R"("call_abc123")"},
    {"from_number", member_kind::phone_number, false, R"("+15551234567")"},
    {"to_number", member_kind::phone_number, false, R"("+15557654321")"},
    {"direction", member_kind::direction, false, R"("outbound")"},
    {"status", member_kind::non_empty_string, false, R"("RINGING")"},
    {"contact_id", member_kind::non_empty_string, true, R"("ct_8f2k1m")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec call_members[] = {
    {"id", member_kind::non_empty_string, false, R"("call_abc123")"},
    {"from_number", member_kind::phone_number, false, R"("+15551234567")"},
    {"to_number", member_kind::phone_number, false, R"("+15557654321")"},
    {"direction", member_kind::direction, false, R"("outbound")"},
    {"duration_seconds", member_kind::count, false, "42"},
    {"status", member_kind::non_empty_string, false, R"("COMPLETED")"},
    {"failure_code", member_kind::non_empty_string, true, R"("voicemail_reached")"},
    {"failure_category", member_kind::non_empty_string, true, R"("voicemail")"},
    {"disconnection_reason", member_kind::non_empty_string, true, R"("callee_hung_up")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec inbound_sms_members[] = {
    {"id", member_kind::non_empty_string, false, R"("msg_7d1c9e")"},
    {"phone_number", member_kind::phone_number, false, R"("+15557654321")"},
    {"to_number", member_kind::phone_number, false, R"("+15551234567")"},
    {"direction", member_kind::inbound_direction, false, R"("inbound")"},
    {"body", member_kind::any_string, false, R"("Yes, 3pm works.")"},
    {"contact_id", member_kind::non_empty_string, true, R"("ct_8f2k1m")"},
    {"channel", member_kind::non_empty_string, false, R"("sms")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec outbound_sms_members[] = {
    {"id", member_kind::non_empty_string, false, R"("msg_uuid")"},
    {"phone_number", member_kind::phone_number, false, R"("+15557654321")"},
    {"from_number", member_kind::phone_number, false, R"("+15551234567")"},
    {"direction", member_kind::outbound_direction, false, R"("outbound")"},
    {"status", member_kind::non_empty_string, false, R"("delivered")"},
    {"provider_id", member_kind::non_empty_string, true, R"("SM9a8b7c")"},
    {"error_message", member_kind::any_string, true, R"("Unknown destination handset")"},
    {"channel", member_kind::non_empty_string, false, R"("sms")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec contact_members[] = {
    {"id", member_kind::non_empty_string, false, R"("ct_8f2k1m")"},
    {"phone_number", member_kind::phone_number, true, R"("+15557654321")"},
    {"first_name", member_kind::any_string, true, R"("Ada")"},
    {"last_name", member_kind::any_string, true, R"("Lovelace")"},
    {"email", member_kind::email, true, R"("ada@example.com")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec phone_number_members[] = {
    {"id", member_kind::record_id, false, "4821"},
    {"phone_number", member_kind::phone_number, false, R"("+15551234567")"},
    {"area_code", member_kind::digits, true, R"("555")"},
    {"status", member_kind::non_empty_string, false, R"("ACTIVE")"},
    {"organization_id", member_kind::non_empty_string, false, R"("org_2x9d4f")"},
};

inline constexpr member_spec appointment_members[] = {
    {"id", member_kind::non_empty_string, false, R"("apt_5q2w8e")"},
    {"contact_id", member_kind::non_empty_string, true, R"("ct_8f2k1m")"},
    {"phone_number", member_kind::phone_number, true, R"("+15557654321")"},
    {"title", member_kind::any_string, true, R"("Product demo")"},
    {"starts_at", member_kind::timestamp, false, R"("2026-07-02T15:00:00.000Z")"},
    {"ends_at", member_kind::timestamp, false, R"("2026-07-02T15:30:00.000Z")"},
    {"timezone", member_kind::non_empty_string, true, R"("America/New_York")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline constexpr member_spec workflow_completion_members[] = {
    {"id", member_kind::non_empty_string, false, R"("wfr_3n6b1x")"},
    {"workflow_id", member_kind::non_empty_string, false, R"("wf_follow_up")"},
    {"workflow_name", member_kind::any_string, true, R"("Missed-call follow-up")"},
    {"contact_id", member_kind::non_empty_string, false, R"("ct_8f2k1m")"},
    {"phone_number", member_kind::phone_number, true, R"("+15557654321")"},
    {"completed_at", member_kind::timestamp, false, R"("2026-07-01T09:00:00.000Z")"},
    {"created_at", member_kind::timestamp, false, R"("2026-06-30T19:30:00.000Z")"},
};

inline std::span<member_spec const> members_of(event_type t) noexcept {
    switch (t) {
    case event_type::new_call:
        return call_start_members;
    case event_type::call_completed:
    case event_type::call_no_answer:
    case event_type::call_voicemail:
    case event_type::call_busy:
    case event_type::call_failed:
        return call_members;
    case event_type::contact_replied:
        return inbound_sms_members;
    case event_type::sms_sent:
    case event_type::sms_delivered:
    case event_type::sms_failed:
        return outbound_sms_members;
    case event_type::contact_created:
        return contact_members;
    case event_type::number_purchased:
    case event_type::number_released:
        return phone_number_members;
    case event_type::new_appointment:
        return appointment_members;
    case event_type::workflow_contact_completed:
        return workflow_completion_members;
    }
    return {};
}

// The JSON type a member of this kind has, as a noun phrase with its article.
inline std::string_view expected_type(member_kind kind) noexcept {
    return kind == member_kind::count || kind == member_kind::record_id ? "an integer" : "a string";
}

// The JSON type of `v`, as a noun phrase with its article.
inline std::string_view describe_kind(boost::json::value const& v) noexcept {
    switch (v.kind()) {
    case boost::json::kind::null:
        return "null";
    case boost::json::kind::bool_:
        return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
        return "an integer";
    case boost::json::kind::double_:
        return "a number with a fraction or exponent";
    case boost::json::kind::string:
        return "a string";
    case boost::json::kind::array:
        return "an array";
    case boost::json::kind::object:
        return "an object";
    }
    return "an unknown JSON value";
}

inline bool is_phone_number(std::string_view text) noexcept {
    // E.164 (ITU-T): a country code and subscriber number of at most 15 digits in all, and no
    // country code starts with 0.
    // NOTE: a syntax check only. No table of country codes or number lengths is consulted, so
    // "+1" passes.
    if (text.size() < 2 || text.size() > 16 || text[0] != '+' || text[1] == '0') {
        return false;
    }
    for (char c : text.substr(1)) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

// Longest area code accepted. Area codes around the world have 1 to 5 digits (Germany uses 5).
inline constexpr std::size_t max_area_code_digits = 6;

inline bool is_digits(std::string_view text) noexcept {
    if (text.empty() || text.size() > max_area_code_digits) {
        return false;
    }
    for (char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

inline std::string member_text(std::string_view name) {
    std::string out = "member \"";
    out += name;
    out += '"';
    return out;
}

inline payload_problem make_problem(std::string_view field, std::string message) {
    return payload_problem{std::string(field), std::move(message)};
}

// Checks a string member's value against its kind.
inline std::optional<payload_problem> check_string(event_type t, member_spec const& spec,
                                                   std::string_view text) {
    auto got = [&] { return "; got " + quote(text); };

    switch (spec.kind) {
    case member_kind::any_string:
        return std::nullopt;
    case member_kind::non_empty_string:
        if (text.empty()) {
            return make_problem(spec.name, member_text(spec.name) +
                                               " must not be empty; set it to " +
                                               std::string(spec.example));
        }
        return std::nullopt;
    case member_kind::phone_number:
        if (!is_phone_number(text)) {
            return make_problem(spec.name,
                                member_text(spec.name) +
                                    " must be an E.164 phone number: \"+\" and 1 to 15 digits, the "
                                    "first not 0, with no spaces or dashes, such as " +
                                    std::string(spec.example) + got());
        }
        return std::nullopt;
    case member_kind::direction:
        if (text != "inbound" && text != "outbound") {
            return make_problem(spec.name, member_text(spec.name) +
                                               " must be \"inbound\" or \"outbound\"" + got());
        }
        return std::nullopt;
    case member_kind::inbound_direction:
    case member_kind::outbound_direction: {
        std::string_view expected =
            spec.kind == member_kind::inbound_direction ? "inbound" : "outbound";
        if (text != expected) {
            return make_problem(spec.name, member_text(spec.name) + " must be \"" +
                                               std::string(expected) + "\" for event type " +
                                               std::string(to_string(t)) + got());
        }
        return std::nullopt;
    }
    case member_kind::digits:
        if (!is_digits(text)) {
            return make_problem(spec.name, member_text(spec.name) + " must be 1 to " +
                                               std::to_string(max_area_code_digits) +
                                               " digits 0-9, such as " + std::string(spec.example) +
                                               got());
        }
        return std::nullopt;
    case member_kind::email:
        if (text.find('@') == std::string_view::npos) {
            return make_problem(spec.name, member_text(spec.name) +
                                               " must be an e-mail address containing \"@\", "
                                               "such as " +
                                               std::string(spec.example) + got());
        }
        return std::nullopt;
    case member_kind::timestamp:
        if (!parse_utc_timestamp(text)) {
            return make_problem(spec.name, member_text(spec.name) +
                                               " must be an ISO-8601 UTC time with exactly three "
                                               "fraction digits and \"Z\", such as " +
                                               std::string(spec.example) + got());
        }
        return std::nullopt;
    case member_kind::count:
    case member_kind::record_id:
        break; // not string kinds
    }
    return std::nullopt;
}

// Checks an integer member. Reads the Boost.JSON kind, so no value passes through a double.
inline std::optional<payload_problem> check_integer(member_spec const& spec,
                                                    boost::json::value const& v) {
    constexpr auto max_value = std::numeric_limits<std::int64_t>::max();
    std::string range = spec.kind == member_kind::record_id ? "1 to " : "0 to ";
    range += std::to_string(max_value);

    if (v.is_uint64()) {
        return make_problem(spec.name, member_text(spec.name) + " must be an integer from " +
                                           range + "; got " + std::to_string(v.get_uint64()));
    }
    std::int64_t number = v.get_int64();
    std::int64_t min_value = spec.kind == member_kind::record_id ? 1 : 0;
    if (number < min_value) {
        return make_problem(spec.name, member_text(spec.name) + " must be an integer from " +
                                           range + "; got " + std::to_string(number));
    }
    return std::nullopt;
}

inline std::optional<payload_problem> check_member(event_type t, member_spec const& spec,
                                                   boost::json::value const* v) {
    std::string expected = std::string(expected_type(spec.kind)) + " such as " +
                           std::string(spec.example) + (spec.nullable ? ", or null" : "");

    if (v == nullptr) {
        return make_problem(spec.name, "missing required " + member_text(spec.name) +
                                           "; add it as " + expected);
    }
    if (v->is_null()) {
        if (spec.nullable) {
            return std::nullopt;
        }
        return make_problem(spec.name,
                            member_text(spec.name) + " must not be null; set it to " + expected);
    }

    bool integer_kind = spec.kind == member_kind::count || spec.kind == member_kind::record_id;
    if (integer_kind) {
        if (!v->is_int64() && !v->is_uint64()) {
            return make_problem(spec.name, member_text(spec.name) + " must be " + expected +
                                               ", not " + std::string(describe_kind(*v)));
        }
        return check_integer(spec, *v);
    }

    if (!v->is_string()) {
        return make_problem(spec.name, member_text(spec.name) + " must be " + expected + ", not " +
                                           std::string(describe_kind(*v)));
    }
    return check_string(t, spec, v->get_string());
}

inline std::string allowed_members(std::span<member_spec const> members) {
    std::string out;
    for (auto const& spec : members) {
        if (!out.empty()) {
            out += ", ";
        }
        out += spec.name;
    }
    return out;
}

// Requires `later` not to be before `earlier`. Both members are already valid timestamps, and
// the fixed-width format sorts as text in time order, so comparing the text suffices.
inline std::optional<payload_problem>
check_order(boost::json::object const& payload, std::string_view earlier, std::string_view later) {
    std::string_view earlier_text = payload.at(earlier).get_string();
    std::string_view later_text = payload.at(later).get_string();
    if (later_text < earlier_text) {
        return make_problem(later, member_text(later) + " must not be before " +
                                       member_text(earlier) + " (" + quote(earlier_text) +
                                       "); got " + quote(later_text));
    }
    return std::nullopt;
}

// Which member decides the disposition of a call payload, for messages.
inline std::string_view deciding_member(boost::json::object const& payload) noexcept;

// The value of a string member, or nothing when it is missing, null or of another type.
inline std::optional<std::string_view> string_member(boost::json::object const& payload,
                                                     std::string_view name) noexcept {
    auto const* v = payload.if_contains(name);
    if (v == nullptr || !v->is_string()) {
        return std::nullopt;
    }
    return std::string_view(v->get_string());
}

inline std::optional<payload_problem> check_relations(event_type t,
                                                      boost::json::object const& payload) {
    if (t == event_type::new_appointment) {
        return check_order(payload, "starts_at", "ends_at");
    }
    if (t == event_type::workflow_contact_completed) {
        return check_order(payload, "created_at", "completed_at");
    }
    if (is_call_disposition(t)) {
        // A payload whose values name another disposition contradicts the event type. Values that
        // name none (COMPLETED, unknown ones) pass, because a producer may know outcomes that
        // the table in call_disposition lacks.
        auto found = call_disposition(payload);
        if (found && *found != t) {
            std::string_view member = deciding_member(payload);
            return make_problem(member,
                                member_text(member) + " " + quote(*string_member(payload, member)) +
                                    " gives the disposition " + std::string(to_string(*found)) +
                                    ", which contradicts the event type " +
                                    std::string(to_string(t)) + "; publish it as " +
                                    std::string(to_string(*found)) + " or correct the member");
        }
    }
    return std::nullopt;
}

// ---- call-end rule -----------------------------------------------------------------------------

struct outcome_entry {
    std::string_view value; // upper case, words joined by '_'
    event_type disposition;
};

// NOTE: only the VOICEMAIL/voicemail pair appears in a published RevDesk example. The other
// spellings are common carrier values chosen for this table, so check them against real traffic.
inline constexpr outcome_entry outcome_entries[] = {
    {"NO_ANSWER", event_type::call_no_answer},
    {"UNANSWERED", event_type::call_no_answer},
    {"RING_TIMEOUT", event_type::call_no_answer},
    {"VOICEMAIL", event_type::call_voicemail},
    {"ANSWERING_MACHINE", event_type::call_voicemail},
    {"MACHINE_DETECTED", event_type::call_voicemail},
    {"BUSY", event_type::call_busy},
    {"FAILED", event_type::call_failed},
    {"DECLINED", event_type::call_failed},
    {"REJECTED", event_type::call_failed},
    {"UNREACHABLE", event_type::call_failed},
    {"CARRIER_REJECTED", event_type::call_failed},
    {"INVALID_NUMBER", event_type::call_failed},
    {"ERROR", event_type::call_failed},
};

// Matches `value` against the outcome table ignoring ASCII case, with '-' and ' ' read as '_'
// so that spellings such as "no-answer" match too.
inline std::optional<event_type> classify_outcome(std::string_view value) noexcept {
    auto normalize = [](char c) {
        c = ascii_lower(c);
        return c == '-' || c == ' ' ? '_' : c;
    };
    for (auto const& entry : outcome_entries) {
        if (entry.value.size() != value.size()) {
            continue;
        }
        bool same = true;
        for (std::size_t i = 0; i < value.size() && same; ++i) {
            same = normalize(value[i]) == ascii_lower(entry.value[i]);
        }
        if (same) {
            return entry.disposition;
        }
    }
    return std::nullopt;
}

inline std::string_view deciding_member(boost::json::object const& payload) noexcept {
    auto category = string_member(payload, "failure_category");
    return category && classify_outcome(*category) ? "failure_category" : "status";
}

} // namespace detail::catalog

inline std::string_view to_string(event_type t) noexcept {
    auto const* entry = detail::catalog::find_entry(t);
    return entry != nullptr ? entry->name : std::string_view{};
}

inline std::string_view describe(event_type t) noexcept {
    auto const* entry = detail::catalog::find_entry(t);
    return entry != nullptr ? entry->description : std::string_view{};
}

inline std::optional<event_type> find_event_type(std::string_view name) noexcept {
    for (auto t : all_event_types) {
        if (to_string(t) == name) {
            return t;
        }
    }
    return std::nullopt;
}

inline event_type parse_event_type(std::string_view name) {
    if (auto found = find_event_type(name)) {
        return *found;
    }

    std::string message =
        "unknown event type " + detail::catalog::quote(name) + "; expected one of: ";
    for (auto t : all_event_types) {
        if (t != all_event_types.front()) {
            message += ", ";
        }
        message += to_string(t);
    }
    for (auto t : all_event_types) {
        if (detail::catalog::ascii_iequals(to_string(t), name)) {
            message += " (event type names are case-sensitive: did you mean \"";
            message += to_string(t);
            message += "\"?)";
            break;
        }
    }
    throw std::invalid_argument(message);
}

inline bool is_call_disposition(event_type t) noexcept {
    return t == event_type::call_no_answer || t == event_type::call_voicemail ||
           t == event_type::call_busy || t == event_type::call_failed;
}

inline std::optional<utc_timestamp> parse_utc_timestamp(std::string_view text) noexcept {
    using detail::catalog::read_digits;

    // Positions in "YYYY-MM-DDTHH:MM:SS.mmmZ".
    if (text.size() != 24 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
        text[13] != ':' || text[16] != ':' || text[19] != '.' || text[23] != 'Z') {
        return std::nullopt;
    }
    int year = read_digits(text, 0, 4);
    int month = read_digits(text, 5, 2);
    int day = read_digits(text, 8, 2);
    int hour = read_digits(text, 11, 2);
    int minute = read_digits(text, 14, 2);
    int second = read_digits(text, 17, 2);
    int millisecond = read_digits(text, 20, 3);
    if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0 ||
        millisecond < 0) {
        return std::nullopt;
    }

    std::chrono::year_month_day date{std::chrono::year{year},
                                     std::chrono::month{static_cast<unsigned>(month)},
                                     std::chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok() || hour > 23 || minute > 59 || second > 59) {
        return std::nullopt;
    }

    return std::chrono::sys_days{date} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
           std::chrono::seconds{second} + std::chrono::milliseconds{millisecond};
}

inline std::string format_utc_timestamp(utc_timestamp t) {
    using detail::catalog::append_digits;

    auto days = std::chrono::floor<std::chrono::days>(t);
    std::chrono::year_month_day date{days};
    int year = static_cast<int>(date.year());
    if (year < 0 || year > 9999) {
        throw std::out_of_range("cannot format a timestamp in year " + std::to_string(year) +
                                " as ISO-8601 with a four-digit year");
    }
    std::chrono::hh_mm_ss time{t - days};

    std::string out;
    out.reserve(24);
    append_digits(out, year, 4);
    out += '-';
    append_digits(out, static_cast<int>(static_cast<unsigned>(date.month())), 2);
    out += '-';
    append_digits(out, static_cast<int>(static_cast<unsigned>(date.day())), 2);
    out += 'T';
    append_digits(out, static_cast<int>(time.hours().count()), 2);
    out += ':';
    append_digits(out, static_cast<int>(time.minutes().count()), 2);
    out += ':';
    append_digits(out, static_cast<int>(time.seconds().count()), 2);
    out += '.';
    append_digits(out, static_cast<int>(time.subseconds().count()), 3);
    out += 'Z';
    return out;
}

inline std::optional<payload_problem> check_payload(event_type t,
                                                    boost::json::object const& payload) {
    namespace catalog = detail::catalog;

    auto members = catalog::members_of(t);
    if (members.empty()) {
        return catalog::make_problem("", "unknown event type value " +
                                             std::to_string(static_cast<unsigned>(t)));
    }

    for (auto const& item : payload) {
        std::string_view key = item.key();
        bool known = false;
        for (auto const& spec : members) {
            known = known || spec.name == key;
        }
        if (!known) {
            return catalog::make_problem(key, "unknown member " + catalog::quote(key) +
                                                  " for event type " + std::string(to_string(t)) +
                                                  "; remove it (allowed members: " +
                                                  catalog::allowed_members(members) + ")");
        }
    }

    for (auto const& spec : members) {
        if (auto problem = catalog::check_member(t, spec, payload.if_contains(spec.name))) {
            return problem;
        }
    }

    return catalog::check_relations(t, payload);
}

inline std::optional<event_type>
call_disposition(std::string_view status,
                 std::optional<std::string_view> failure_category) noexcept {
    using detail::catalog::classify_outcome;

    if (failure_category) {
        if (auto found = classify_outcome(*failure_category)) {
            return found;
        }
    }
    return classify_outcome(status);
}

inline std::optional<event_type>
call_disposition(boost::json::object const& call_payload) noexcept {
    using detail::catalog::string_member;

    auto status = string_member(call_payload, "status");
    return call_disposition(status.value_or(std::string_view{}),
                            string_member(call_payload, "failure_category"));
}

inline std::vector<event_type> call_end_events(boost::json::object const& call_payload) {
    std::vector<event_type> events{event_type::call_completed};
    if (auto disposition = call_disposition(call_payload)) {
        events.push_back(*disposition);
    }
    return events;
}

} // namespace revdesk
