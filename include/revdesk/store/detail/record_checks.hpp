// Checks and text forms that every store applies to records before writing them.
#pragma once

#include <revdesk/catalog.hpp>
#include <revdesk/store/detail/attempt_cursor.hpp>
#include <revdesk/store/records.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace revdesk::detail {

/// Returns the wire name of `t`. Throws std::runtime_error when `t` is outside the enumeration,
/// so a store never writes an empty type name.
inline std::string_view checked_type_name(event_type t) {
    auto name = revdesk::to_string(t);
    if (name.empty()) {
        throw std::runtime_error("invalid event_type value " +
                                 std::to_string(static_cast<unsigned>(t)));
    }
    return name;
}

/// Returns the event type named `name`. Throws std::runtime_error naming the record when a stored
/// name is unknown, for example in a database written by a newer build.
inline event_type parse_stored_type(std::string_view name, std::string_view table,
                                    std::string_view id) {
    if (auto t = find_event_type(name)) {
        return *t;
    }
    throw std::runtime_error("unknown event type '" + std::string(name) + "' in " +
                             std::string(table) + " row '" + std::string(id) + "'");
}

/// Returns the stored name of a delivery state.
inline std::string_view state_name(delivery_state s) {
    switch (s) {
    case delivery_state::pending:
        return "pending";
    case delivery_state::delivered:
        return "delivered";
    case delivery_state::failed:
        return "failed";
    case delivery_state::cancelled:
        return "cancelled";
    }
    throw std::runtime_error("invalid delivery_state value " +
                             std::to_string(static_cast<unsigned>(s)));
}

/// Checks the records that `store::insert_event` receives: valid types, and every delivery names
/// the inserted event. Throws std::runtime_error on the first violation.
inline void check_event_deliveries(event const& e, std::vector<delivery> const& deliveries) {
    checked_type_name(e.type);
    for (auto const& d : deliveries) {
        checked_type_name(d.type);
        state_name(d.state);
        if (d.event_id != e.id) {
            throw std::runtime_error("delivery '" + d.id + "' names event '" + d.event_id +
                                     "' but was inserted with event '" + e.id + "'");
        }
    }
}

/// Checks the records that `store::insert_deliveries` receives: valid types and states. Throws
/// std::runtime_error on the first violation.
inline void check_deliveries(std::vector<delivery> const& deliveries) {
    for (auto const& d : deliveries) {
        checked_type_name(d.type);
        state_name(d.state);
    }
}

/// Checks the records that `store::record_attempt` receives: the attempt belongs to the updated
/// delivery, and its id is empty or not of the generated form. Throws std::runtime_error otherwise.
inline void check_attempt(attempt const& a, delivery const& updated) {
    state_name(updated.state);
    if (a.delivery_id != updated.id) {
        throw std::runtime_error("attempt of delivery '" + a.delivery_id +
                                 "' was recorded with delivery '" + updated.id + "'");
    }
    if (is_generated_attempt_id(a.id)) {
        throw std::runtime_error("attempt id '" + a.id +
                                 "' has the form of a generated id; leave the id empty to get one");
    }
}

/// Returns the message of a failed `record_attempt` whose delivery does not exist.
inline std::string delivery_not_found(std::string_view id) {
    return "delivery '" + std::string(id) + "' not found";
}

/// Returns the message of a failed `insert_deliveries` whose event does not exist.
inline std::string event_not_found(std::string_view id) {
    return "event '" + std::string(id) + "' not found";
}

/// Checks that the `subscription_id` and `event_id` of an attempt are empty or equal to those of
/// its stored delivery. Throws std::runtime_error otherwise.
inline void check_attempt_owner(attempt const& a, std::string_view subscription_id,
                                std::string_view event_id) {
    if (!a.subscription_id.empty() && a.subscription_id != subscription_id) {
        throw std::runtime_error(
            "attempt of delivery '" + a.delivery_id + "' names subscription '" + a.subscription_id +
            "' but the delivery belongs to '" + std::string(subscription_id) + "'");
    }
    if (!a.event_id.empty() && a.event_id != event_id) {
        throw std::runtime_error("attempt of delivery '" + a.delivery_id + "' names event '" +
                                 a.event_id + "' but the delivery belongs to '" +
                                 std::string(event_id) + "'");
    }
}

/// Returns the message of an insert whose idempotency key another event of the workspace carries.
inline std::string duplicate_key_message(event const& e, std::string_view existing_event_id) {
    return "idempotency key '" + e.idempotency_key.value_or("") + "' of workspace '" + e.workspace +
           "' is held by event '" + std::string(existing_event_id) + "'";
}

} // namespace revdesk::detail
