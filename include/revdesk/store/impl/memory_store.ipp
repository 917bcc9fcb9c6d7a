// Inline definitions of memory_store, included at the end of memory_store.hpp.
#pragma once

#include <revdesk/store/detail/record_checks.hpp>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

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

inline asio::awaitable<void> memory_store::insert_event(event const& e,
                                                        std::vector<delivery> const& deliveries) {
    detail::check_event_deliveries(e, deliveries);
    {
        std::lock_guard lock(mutex_);

        // Every check runs before the first change, so a rejected event leaves nothing behind.
        if (events_.contains(e.id)) {
            throw std::runtime_error("event '" + e.id + "' exists already");
        }
        std::set<std::string_view> new_ids;
        for (auto const& d : deliveries) {
            if (deliveries_.contains(d.id) || !new_ids.insert(d.id).second) {
                throw std::runtime_error("delivery '" + d.id + "' exists already");
            }
        }

        events_.emplace(e.id, e);
        for (auto const& d : deliveries) {
            deliveries_.emplace(d.id, stored_delivery{d, next_sequence_++});
        }
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
        stored.state = updated.state;
        stored.attempts = updated.attempts;
        stored.next_attempt_at = updated.next_attempt_at;
        attempts_[stored.subscription_id].push_back(stored_attempt{a, next_sequence_++});
    }
    co_return;
}

inline asio::awaitable<std::vector<pending_delivery>> memory_store::load_pending() {
    std::vector<std::pair<std::uint64_t, pending_delivery>> found;
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
    std::vector<stored_attempt> found;
    {
        std::lock_guard lock(mutex_);
        auto it = attempts_.find(subscription_id);
        if (it != attempts_.end()) {
            found = it->second;
        }
    }
    std::sort(found.begin(), found.end(), [](auto const& a, auto const& b) {
        return std::tie(a.record.started_at, a.sequence) >
               std::tie(b.record.started_at, b.sequence);
    });

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

inline void memory_store::cancel_pending(std::string_view subscription_id) {
    for (auto& [id, stored] : deliveries_) {
        if (stored.message.subscription_id == subscription_id &&
            stored.message.state == delivery_state::pending) {
            stored.message.state = delivery_state::cancelled;
        }
    }
}

} // namespace revdesk
