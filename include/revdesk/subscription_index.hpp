// An in-memory index from (workspace, event type, scope) to the subscriptions that match.
#pragma once

#include <revdesk/detail/text_hash.hpp>
#include <revdesk/store/records.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace revdesk {

/// Finds the subscriptions that should receive an event.
///
/// A subscription matches an event of its workspace and event type when each scope it sets
/// (`workflow_id`, `campaign_id`) equals the event's; a scope it leaves unset matches any event.
/// Subscriptions are bucketed by their exact (workspace, type, workflow, campaign) key, so a
/// lookup probes at most four buckets and its cost grows with the number of matches, never with
/// the number of subscriptions.
///
/// Thread safety: none; use from one strand or guard externally.
class subscription_index {
public:
    using pointer = std::shared_ptr<subscription const>;

    /// Adds or replaces the subscription with `s.id`.
    void insert(subscription s) {
        erase(s.id);
        auto stored = std::make_shared<subscription const>(std::move(s));
        auto k = key_of(*stored);
        buckets_[k].push_back(stored);
        by_id_.emplace(stored->id, entry{std::move(k), stored});
        ++version_;
    }

    /// Removes the subscription with `id`; returns it, or null when it is not indexed.
    pointer erase(std::string_view id) {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) {
            return nullptr;
        }
        auto removed = it->second.item;
        auto bucket = buckets_.find(it->second.bucket);
        std::erase(bucket->second, removed);
        if (bucket->second.empty()) {
            buckets_.erase(bucket);
        }
        by_id_.erase(it);
        ++version_;
        return removed;
    }

    /// Returns a number that changes whenever a subscription is added, replaced or removed. While
    /// it stays the same, every pointer that find returned is still the indexed subscription, so
    /// a caller that keeps one can skip the lookup.
    std::uint64_t version() const noexcept { return version_; }

    /// Returns the subscription with `id`, or null.
    pointer find(std::string_view id) const {
        auto it = by_id_.find(id);
        return it == by_id_.end() ? nullptr : it->second.item;
    }

    /// Returns the enabled subscriptions that an event of `type` in `workspace` with the given
    /// scopes should reach. Each subscription appears once.
    std::vector<pointer> match(std::string_view workspace, event_type type,
                               std::optional<scope_id> const& workflow_id,
                               std::optional<scope_id> const& campaign_id) const {
        std::vector<pointer> out;
        auto collect = [&](std::string_view workflow, std::string_view campaign) {
            auto it = buckets_.find(make_key(workspace, type, workflow, campaign));
            if (it == buckets_.end()) {
                return;
            }
            for (auto const& s : it->second) {
                if (s->enabled) {
                    out.push_back(s);
                }
            }
        };

        // An empty scope text stands for "not set"; the API rejects empty identifiers, so a set
        // scope is never empty.
        std::string_view workflow = workflow_id ? std::string_view(workflow_id->text) : "";
        std::string_view campaign = campaign_id ? std::string_view(campaign_id->text) : "";
        collect("", "");
        if (!workflow.empty()) {
            collect(workflow, "");
        }
        if (!campaign.empty()) {
            collect("", campaign);
        }
        if (!workflow.empty() && !campaign.empty()) {
            collect(workflow, campaign);
        }
        return out;
    }

    /// Calls `visit` with every indexed subscription, in no particular order.
    void for_each(std::function<void(pointer const&)> const& visit) const {
        for (auto const& [id, e] : by_id_) {
            visit(e.item);
        }
    }

    std::size_t size() const noexcept { return by_id_.size(); }

private:
    struct entry {
        std::string bucket;
        pointer item;
    };

    // Fields are separated by NUL, which no workspace name, event name or identifier contains.
    static std::string make_key(std::string_view workspace, event_type type,
                                std::string_view workflow, std::string_view campaign) {
        std::string k;
        k.reserve(workspace.size() + workflow.size() + campaign.size() + 32);
        k.append(workspace).push_back('\0');
        k.append(to_string(type)).push_back('\0');
        k.append(workflow).push_back('\0');
        k.append(campaign);
        return k;
    }

    static std::string key_of(subscription const& s) {
        return make_key(s.workspace, s.type, s.workflow_id ? s.workflow_id->text : "",
                        s.campaign_id ? s.campaign_id->text : "");
    }

    std::unordered_map<std::string, std::vector<pointer>> buckets_;
    std::unordered_map<std::string, entry, detail::text_hash, std::equal_to<>> by_id_;
    std::uint64_t version_ = 0;
};

} // namespace revdesk
