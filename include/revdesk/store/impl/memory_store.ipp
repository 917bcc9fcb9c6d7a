// Inline definitions of memory_store, included at the end of memory_store.hpp.
#pragma once

#include <revdesk/store/detail/attempt_cursor.hpp>
#include <revdesk/store/detail/record_checks.hpp>

#include <algorithm>
#include <iterator>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace revdesk::detail {

/// Returns the key of `idempotency_keys_`: the workspace's length before it keeps every pair of
/// workspace and key distinct.
inline std::string idempotency_index_key(std::string_view workspace, std::string_view key) {
    std::string result = std::to_string(workspace.size());
    result += ':';
    result += workspace;
    result += key;
    return result;
}

} // namespace revdesk::detail

namespace revdesk {

inline asio::awaitable<void> memory_store::insert_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    {
        std::lock_guard lock(mutex_);
        if (subscriptions_.contains(s.id)) {
            throw std::runtime_error("subscription '" + s.id + "' exists already");
        }
        subscriptions_.emplace(s.id, s);
    }
    co_return;
}

inline asio::awaitable<bool> memory_store::update_subscription(subscription const& s) {
    detail::checked_type_name(s.type);
    bool found = false;
    {
        std::lock_guard lock(mutex_);
        auto it = subscriptions_.find(s.id);
        if (it != subscriptions_.end() && it->second.workspace == s.workspace) {
            it->second = s;
            if (!s.enabled) {
                cancel_pending(s.id);
            }
            found = true;
        }
    }
    co_return found;
}

inline asio::awaitable<bool> memory_store::erase_subscription(std::string_view workspace,
                                                              std::string_view id) {
    bool found = false;
    {
        std::lock_guard lock(mutex_);
        auto it = subscriptions_.find(id);
        if (it != subscriptions_.end() && it->second.workspace == workspace) {
            subscriptions_.erase(it);
            cancel_pending(id);
            found = true;
        }
    }
    co_return found;
}

inline asio::awaitable<std::vector<subscription>> memory_store::load_subscriptions() {
    std::vector<subscription> result;
    {
        std::lock_guard lock(mutex_);
        result.reserve(subscriptions_.size());
        for (auto const& [id, s] : subscriptions_) {
            result.push_back(s);
        }
    }
    std::stable_sort(result.begin(), result.end(),
                     [](auto const& a, auto const& b) { return a.created_at < b.created_at; });
    co_return result;
}

inline void memory_store::emplace_new_deliveries(std::vector<delivery> const& deliveries) {
    // An id that is taken, or repeated in the batch, takes out the deliveries inserted before it,
    // which are all new, so a rejected batch leaves nothing behind.
    std::vector<stored_delivery*> placed;
    placed.reserve(deliveries.size());
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
        auto const& d = deliveries[i];
        auto sequence = next_sequence_ + static_cast<std::int64_t>(i);
        auto [it, added] = deliveries_.try_emplace(d.id, stored_delivery{d, sequence});
        if (!added) {
            for (std::size_t j = 0; j < i; ++j) {
                deliveries_.erase(deliveries[j].id);
            }
            throw std::runtime_error("delivery '" + d.id + "' exists already");
        }
        placed.push_back(&it->second);
    }

    // A batch usually belongs to one event: look its list up once per run of the same event.
    // A failed allocation takes the batch out of the lists and the map again.
    std::size_t listed = 0;
    try {
        std::vector<stored_delivery*>* list = nullptr;
        for (auto* stored : placed) {
            if (list == nullptr || list->front()->message.event_id != stored->message.event_id) {
                list = &event_deliveries_[stored->message.event_id];
            }
            list->push_back(stored);
            ++listed;
        }
    } catch (...) {
        // Each list ends with the entries this batch pushed, last pushed last.
        for (std::size_t i = listed; i-- > 0;) {
            event_deliveries_.find(placed[i]->message.event_id)->second.pop_back();
        }
        for (auto const* stored : placed) {
            auto found = event_deliveries_.find(stored->message.event_id);
            if (found != event_deliveries_.end() && found->second.empty()) {
                event_deliveries_.erase(found);
            }
        }
        for (auto const& d : deliveries) {
            deliveries_.erase(d.id);
        }
        throw;
    }
    next_sequence_ += static_cast<std::int64_t>(deliveries.size());
}

inline asio::awaitable<void> memory_store::insert_event(event const& e,
                                                        std::vector<delivery> const& deliveries) {
    detail::check_event_deliveries(e, deliveries);
    {
        std::lock_guard lock(mutex_);

        // Every check runs before the first change, so a rejected event leaves nothing behind.
        if (events_.contains(e.id)) {
            throw std::runtime_error("event '" + e.id + "' exists already");
        }
        std::string index_key;
        if (e.idempotency_key) {
            index_key = detail::idempotency_index_key(e.workspace, *e.idempotency_key);
            auto held = idempotency_keys_.find(index_key);
            if (held != idempotency_keys_.end()) {
                throw duplicate_key_error(detail::duplicate_key_message(e, held->second),
                                          held->second);
            }
        }
        // The delivery ids are checked as they go in, the first change, which a taken id undoes.
        emplace_new_deliveries(deliveries);
        events_.emplace(e.id, e);
        if (e.idempotency_key) {
            idempotency_keys_.emplace(std::move(index_key), e.id);
        }
    }
    co_return;
}

inline asio::awaitable<std::optional<event>> memory_store::find_event(std::string_view workspace,
                                                                      std::string_view id) {
    std::optional<event> result;
    {
        std::lock_guard lock(mutex_);
        auto it = events_.find(id);
        if (it != events_.end() && it->second.workspace == workspace) {
            result = it->second;
        }
    }
    co_return result;
}

inline asio::awaitable<std::optional<event>>
memory_store::find_event_by_idempotency_key(std::string_view workspace, std::string_view key,
                                            unix_ms not_before) {
    std::optional<event> result;
    {
        std::lock_guard lock(mutex_);
        auto held = idempotency_keys_.find(detail::idempotency_index_key(workspace, key));
        if (held != idempotency_keys_.end()) {
            event const& e = events_.at(held->second);
            if (e.created_at >= not_before) {
                result = e;
            }
        }
    }
    co_return result;
}

inline asio::awaitable<std::size_t> memory_store::release_idempotency_keys(unix_ms created_before) {
    std::size_t released = 0;
    {
        std::lock_guard lock(mutex_);
        for (auto& [id, e] : events_) {
            if (e.idempotency_key && e.created_at < created_before) {
                idempotency_keys_.erase(
                    detail::idempotency_index_key(e.workspace, *e.idempotency_key));
                e.idempotency_key.reset();
                e.response.clear();
                ++released;
            }
        }
    }
    co_return released;
}

inline asio::awaitable<std::vector<delivery>>
memory_store::list_deliveries(std::string_view event_id) {
    std::vector<delivery> result;
    {
        std::lock_guard lock(mutex_);
        auto it = event_deliveries_.find(event_id);
        if (it != event_deliveries_.end()) {
            for (auto const* stored : it->second) {
                result.push_back(stored->message);
            }
        }
    }
    co_return result;
}

inline asio::awaitable<void>
memory_store::insert_deliveries(std::vector<delivery> const& deliveries) {
    detail::check_deliveries(deliveries);
    {
        std::lock_guard lock(mutex_);

        for (auto const& d : deliveries) {
            if (!events_.contains(d.event_id)) {
                throw std::runtime_error(detail::event_not_found(d.event_id));
            }
        }
        emplace_new_deliveries(deliveries);
    }
    co_return;
}

inline asio::awaitable<void> memory_store::record_attempt(attempt const& a,
                                                          delivery const& updated) {
    detail::check_attempt(a, updated);
    {
        std::lock_guard lock(mutex_);
        auto it = deliveries_.find(updated.id);
        if (it == deliveries_.end()) {
            throw std::runtime_error(detail::delivery_not_found(updated.id));
        }
        delivery& stored = it->second.message;
        detail::check_attempt_owner(a, stored.subscription_id, stored.event_id);

        auto sequence = next_sequence_;
        attempt record = a;
        record.subscription_id = stored.subscription_id;
        record.event_id = stored.event_id;
        // A generated id is unique without a lookup: sequences never repeat, and check_attempt
        // rejects a caller's id of the generated form.
        bool generated = record.id.empty();
        if (generated) {
            record.id = detail::generated_attempt_id(sequence);
        } else if (caller_attempt_ids_.contains(record.id)) {
            throw std::runtime_error("attempt '" + record.id + "' exists already");
        }

        ++next_sequence_;
        stored.state = updated.state;
        stored.attempts = updated.attempts;
        stored.next_attempt_at = updated.next_attempt_at;
        if (!generated) {
            caller_attempt_ids_.insert(record.id);
        }
        attempts_[stored.subscription_id].push_back(stored_attempt{std::move(record), sequence});
    }
    co_return;
}

inline asio::awaitable<std::vector<pending_delivery>> memory_store::load_pending() {
    std::vector<std::pair<std::int64_t, pending_delivery>> found;
    {
        std::lock_guard lock(mutex_);
        for (auto const& [id, stored] : deliveries_) {
            if (stored.message.state == delivery_state::pending) {
                found.emplace_back(
                    stored.sequence,
                    pending_delivery{stored.message, events_.at(stored.message.event_id)});
            }
        }
    }
    std::sort(found.begin(), found.end(), [](auto const& a, auto const& b) {
        return std::tie(a.second.message.next_attempt_at, a.first) <
               std::tie(b.second.message.next_attempt_at, b.first);
    });

    std::vector<pending_delivery> result;
    result.reserve(found.size());
    for (auto& entry : found) {
        result.push_back(std::move(entry.second));
    }
    co_return result;
}

inline asio::awaitable<std::vector<attempt>>
memory_store::list_attempts(std::string_view subscription_id, std::size_t limit) {
    auto found = sorted_attempts(subscription_id);

    std::vector<attempt> result;
    result.reserve(std::min(limit, found.size()));
    for (auto& entry : found) {
        if (result.size() == limit) {
            break;
        }
        result.push_back(std::move(entry.record));
    }
    co_return result;
}

inline asio::awaitable<attempt_page>
memory_store::list_attempts_page(std::string_view subscription_id, std::size_t limit,
                                 std::optional<std::string> const& cursor) {
    if (limit == 0) {
        throw std::invalid_argument("attempt page limit must be at least 1");
    }
    std::optional<detail::attempt_position> after;
    if (cursor) {
        after = detail::decode_attempt_cursor(*cursor);
    }

    auto found = sorted_attempts(subscription_id);

    attempt_page page;
    detail::attempt_position last;
    for (auto& entry : found) {
        if (after && std::tie(entry.record.started_at, entry.sequence) >=
                         std::tie(after->started_at, after->sequence)) {
            continue;
        }
        if (page.items.size() == limit) {
            // One more attempt exists, so the page ends with a cursor.
            page.next_cursor = detail::encode_attempt_cursor(last);
            break;
        }
        last = {entry.record.started_at, entry.sequence};
        page.items.push_back(std::move(entry.record));
    }
    co_return page;
}

inline asio::awaitable<void> memory_store::insert_key(api_key const& key) {
    {
        std::lock_guard lock(mutex_);
        if (keys_.contains(key.id)) {
            throw std::runtime_error("API key '" + key.id + "' exists already");
        }
        if (key_digests_.contains(key.digest)) {
            throw std::runtime_error("an API key with the digest of key '" + key.id +
                                     "' exists already");
        }
        keys_.emplace(key.id, key);
        key_digests_.insert(key.digest);
    }
    co_return;
}

inline asio::awaitable<std::vector<api_key>> memory_store::load_keys() {
    std::vector<api_key> result;
    {
        std::lock_guard lock(mutex_);
        result.reserve(keys_.size());
        for (auto const& [id, key] : keys_) {
            result.push_back(key);
        }
    }
    // keys_ is ordered by id, so a stable sort orders ties by id.
    std::stable_sort(result.begin(), result.end(),
                     [](auto const& a, auto const& b) { return a.created_at < b.created_at; });
    co_return result;
}

inline asio::awaitable<bool> memory_store::revoke_key(std::string_view id) {
    bool found = false;
    {
        std::lock_guard lock(mutex_);
        auto it = keys_.find(id);
        if (it != keys_.end()) {
            it->second.revoked = true;
            found = true;
        }
    }
    co_return found;
}

inline asio::awaitable<std::size_t> memory_store::purge_before(unix_ms cutoff) {
    std::size_t purged = 0;
    {
        std::lock_guard lock(mutex_);
        for (auto it = events_.begin(); it != events_.end();) {
            auto next = std::next(it);
            if (it->second.created_at < cutoff && !has_pending(it->first)) {
                erase_event(it);
                ++purged;
            }
            it = next;
        }
    }
    co_return purged;
}

inline asio::awaitable<bool> memory_store::ping() {
    co_return true;
}

inline bool memory_store::has_pending(std::string const& event_id) const {
    auto it = event_deliveries_.find(event_id);
    if (it == event_deliveries_.end()) {
        return false;
    }
    return std::any_of(it->second.begin(), it->second.end(), [](stored_delivery const* stored) {
        return stored->message.state == delivery_state::pending;
    });
}

inline void memory_store::erase_event(std::map<std::string, event, std::less<>>::iterator it) {
    event const& e = it->second;
    if (e.idempotency_key) {
        idempotency_keys_.erase(detail::idempotency_index_key(e.workspace, *e.idempotency_key));
    }

    // Delivery ids grouped by subscription, because attempts_ is keyed by subscription.
    std::map<std::string, std::set<std::string>> erased;
    if (auto found = event_deliveries_.find(e.id); found != event_deliveries_.end()) {
        for (auto const* stored : found->second) {
            auto d = deliveries_.find(stored->message.id);
            erased[d->second.message.subscription_id].insert(d->first);
            deliveries_.erase(d);
        }
        event_deliveries_.erase(found);
    }
    for (auto const& [subscription_id, delivery_ids] : erased) {
        auto attempts = attempts_.find(subscription_id);
        if (attempts == attempts_.end()) {
            continue;
        }
        std::erase_if(attempts->second, [&](stored_attempt const& stored) {
            if (!delivery_ids.contains(stored.record.delivery_id)) {
                return false;
            }
            caller_attempt_ids_.erase(stored.record.id);
            return true;
        });
        if (attempts->second.empty()) {
            attempts_.erase(attempts);
        }
    }
    events_.erase(it);
}

inline std::vector<memory_store::stored_attempt>
memory_store::sorted_attempts(std::string_view subscription_id) {
    std::vector<stored_attempt> found;
    {
        std::lock_guard lock(mutex_);
        auto it = attempts_.find(subscription_id);
        if (it != attempts_.end()) {
            found.assign(it->second.begin(), it->second.end());
        }
    }
    std::sort(found.begin(), found.end(), [](auto const& a, auto const& b) {
        return std::tie(a.record.started_at, a.sequence) >
               std::tie(b.record.started_at, b.sequence);
    });
    return found;
}

inline void memory_store::cancel_pending(std::string_view subscription_id) {
    for (auto& [id, stored] : deliveries_) {
        if (stored.message.subscription_id == subscription_id &&
            stored.message.state == delivery_state::pending) {
            stored.message.state = delivery_state::cancelled;
        }
    }
}

} // namespace revdesk
