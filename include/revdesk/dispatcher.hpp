// The dispatcher: publishes events to every matching subscription and drives their deliveries.
#pragma once

#include <revdesk/destination.hpp>
#include <revdesk/detail/text_hash.hpp>
#include <revdesk/http/client.hpp>
#include <revdesk/http/detail/parser_chars.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/retry.hpp>
#include <revdesk/signing.hpp>
#include <revdesk/store/store.hpp>
#include <revdesk/subscription_index.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace revdesk {

/// Returns the current time in the unit of every record.
inline unix_ms now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// A wall clock: milliseconds since the Unix epoch, UTC.
using clock_function = std::function<unix_ms()>;

/// Checks a webhook URL the way a new subscription needs it: parse_webhook_url first, then, for
/// a host name, resolves the name with `resolve` and checks every address with `policy`. One
/// rejected address rejects the URL, as at delivery time, so that a name pointing inside is
/// refused when the subscription is created instead of failing at every attempt.
///
/// This check does not replace the one at delivery: DNS answers change, so http::client
/// resolves and checks again before every connection, and connects only to the addresses it has
/// just checked.
///
/// Returns the target, or a url_problem when the URL is invalid, the name does not resolve
/// within `timeout`, resolves to no address, or resolves to a rejected address. The message for
/// a rejected address names the special-purpose range but not the address, so that the API does
/// not reveal the server's internal DNS answers. An empty `resolve` uses the system resolver on
/// the calling coroutine's executor.
///
/// The lookup runs as its own coroutine, so the timeout applies even to a resolver that ignores
/// cancellation (getaddrinfo cannot be interrupted). After a timeout that lookup goes on until
/// the resolver returns: `resolve` is copied for it, but what the copy refers to must stay valid
/// until then. `policy` must stay valid until the awaitable completes. The calling coroutine's
/// executor must run one handler at a time (one thread or a strand), as for the dispatcher.
///
/// NOTE: asio 1.22 runs system lookups one at a time on one background thread per io_context,
/// so a slow DNS server delays this check behind the delivery lookups queued before it.
inline asio::awaitable<std::variant<webhook_target, url_problem>>
check_webhook_destination(std::string url, bool allow_http, address_policy const& policy,
                          http::resolve_function const& resolve,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto parsed = parse_webhook_url(url, allow_http, policy);
    auto* target = std::get_if<webhook_target>(&parsed);
    if (!target || target->host_is_ip) {
        co_return parsed;
    }

    // Shared with the lookup coroutine, which may outlive this one after a timeout.
    struct lookup_state {
        explicit lookup_state(asio::any_io_executor executor)
            : finished(std::move(executor)) {}
        std::vector<asio::ip::address> addresses;
        std::error_code error;
        bool done = false;
        asio::steady_timer finished; // expires at the deadline; cancelled when the lookup ends
    };
    auto executor = co_await asio::this_coro::executor;
    auto state = std::make_shared<lookup_state>(executor);
    state->finished.expires_after(timeout);
    auto lookup = resolve ? resolve : http::system_resolver();
    asio::co_spawn(
        executor,
        [state, lookup, host = target->host]() -> asio::awaitable<void> {
            state->addresses = co_await lookup(host, state->error);
        },
        [state](std::exception_ptr failure) {
            if (failure) {
                state->addresses.clear();
                state->error = std::make_error_code(std::errc::io_error);
            }
            state->done = true;
            state->finished.cancel();
        });
    if (!state->done) {
        co_await state->finished.async_wait(http::use_nothrow);
    }
    if (!state->done) {
        co_return url_problem{"resolving the host " + target->host + " timed out after " +
                              std::to_string(timeout.count()) +
                              " ms; check the name and try again"};
    }

    auto const& addresses = state->addresses;
    auto const& ec = state->error;
    if (ec || addresses.empty()) {
        co_return url_problem{"could not resolve the host " + target->host + " (" +
                              (ec ? ec.message() : std::string("no addresses")) +
                              "); use a name with a public DNS record (A or AAAA)"};
    }
    for (auto const& address : addresses) {
        if (policy.allows(address)) {
            continue;
        }
        auto range = special_purpose_range(address);
        co_return url_problem{
            "the host " + target->host + " resolves to an address in " +
            std::string(range ? *range : std::string_view("a special-purpose range")) +
            ", where webhooks may not be delivered; use a host whose addresses are all public, "
            "or allow that range with --allow-target"};
    }
    co_return parsed;
}

/// Returns the names of the response header fields that a dispatcher reads. A client that only
/// dispatchers use may keep just these (`http::client_options::kept_response_fields`).
inline std::vector<std::string> dispatcher_response_fields() {
    return {"Retry-After"};
}

/// Limits and hooks of a dispatcher.
struct dispatcher_options {
    /// Attempts in flight at once, over all receivers.
    std::size_t max_in_flight = 512;

    /// Attempts in flight at once to one origin (scheme, host and port). A slow receiver ties
    /// up only its own slots.
    std::size_t max_per_origin = 16;

    /// Attempts whose exchange has ended and that wait for the store to record them. Such an
    /// attempt has given its slot to the next one, so that a store that commits in groups (the
    /// SQLite store syncs once per commit) gets groups large enough to keep up. Past this many,
    /// attempts keep their slots until recorded, which slows sending down to the store's pace.
    /// Like an attempt in flight, an unrecorded one is sent again after a crash.
    std::size_t max_unrecorded = 4096;

    /// One deadline for a whole attempt: resolve, connect, TLS, write and response.
    std::chrono::milliseconds attempt_timeout{15'000};

    retry_policy retries;

    /// Whether `http` receivers are allowed besides `https`.
    bool allow_http = false;

    /// The `User-Agent` of every delivery. The constructor throws std::invalid_argument when it
    /// contains a control character other than HTAB.
    std::string user_agent = "revdesk-webhooks/0.1.0";

    /// Called after each attempt has been recorded, for logs and metrics.
    std::function<void(attempt const&, delivery const&, subscription const&)> on_attempt;

    /// Called with a sentence when something fails that the dispatcher handles itself.
    std::function<void(std::string_view)> on_error;

    /// The wall clock behind every timestamp the dispatcher writes: attempt start times,
    /// `next_attempt_at`, the `webhook-timestamp` field, and the `now` against which a
    /// `Retry-After` date is read. A test can inject a clock that it moves by hand, and must then
    /// call dispatcher::notify_clock_changed after each move. Attempt durations and the attempt
    /// deadline use std::chrono::steady_clock whatever this clock returns.
    clock_function clock = now_ms;

    /// On a shared store (store::shared()): how long a claimed message stays leased to this
    /// process. The dispatcher renews its leases every third of this time, so a lease expires
    /// only when its process died or lost the database. Another process then claims the message
    /// after at most this long. Must be longer than `attempt_timeout`.
    std::chrono::milliseconds lease{60'000};

    /// On a shared store: how often the dispatcher claims due messages without a notification.
    /// Notifications wake it at once for new events; polling finds retries that have become due
    /// and covers a lost notification.
    std::chrono::milliseconds poll_interval{1'000};
};

/// The messages a publish queued.
struct publish_result {
    std::string event_id;
    std::vector<event_type> types; ///< The event types emitted, in order.
    std::size_t deliveries = 0;    ///< Messages queued, one per matching subscription and type.
};

/// Fans events out to their subscriptions and delivers them at least once.
///
/// `publish` stores the event with one delivery per matching subscription, and returns once the
/// store has committed them; receivers never delay the producer. Deliveries then run
/// concurrently, at most `max_per_origin` per receiver origin and `max_in_flight` in all. Within
/// one origin, subscriptions take turns, so one busy subscription does not starve the others.
/// Each attempt is signed (Standard Webhooks), recorded, and retried on transient failures
/// according to the retry policy; `410 Gone` disables the subscription.
///
/// On a store that several processes share (store::shared() is not null), the dispatcher keeps
/// no queue of its own, and `publish` only stores. Every process claims due messages from the
/// store with a lease, attempts them, and gives the lease up when it records the attempt. A
/// retry goes back to the store, and whichever process claims it next attempts it. Changes to
/// subscriptions made by any process reach the index through the store's notifications.
///
/// Thread safety: none. Every member function must be called from the executor passed to the
/// constructor, which must run on one thread (or be a strand).
class dispatcher {
public:
    /// The store, the client and the policy must outlive the dispatcher.
    dispatcher(asio::any_io_executor executor, store& s, http::client& client,
               address_policy const& policy, dispatcher_options options = {})
        : executor_(std::move(executor))
        , store_(s)
        , client_(client)
        , policy_(policy)
        , options_(std::move(options))
        , wake_(executor_)
        , idle_(executor_)
        , shared_(s.shared())
        , claim_wake_(executor_)
        , renew_wake_(executor_)
        , random_(std::random_device{}()) {
        if (!options_.clock) {
            options_.clock = now_ms;
        }
        auto const& agent = options_.user_agent;
        if (http::detail::span_of(agent, http::detail::cc_field_value) != agent.size()) {
            throw std::invalid_argument(
                "the user agent contains a control character, which cannot go in an HTTP field; "
                "use printable text such as \"revdesk-webhooks/0.1.0\"");
        }
        if (shared_ && options_.lease <= options_.attempt_timeout) {
            throw std::invalid_argument(
                "the lease (" + std::to_string(options_.lease.count()) +
                " ms) must be longer than the attempt timeout (" +
                std::to_string(options_.attempt_timeout.count()) +
                " ms), or another process could claim a message during its attempt");
        }
    }

    dispatcher(dispatcher const&) = delete;
    dispatcher& operator=(dispatcher const&) = delete;

    /// Loads the subscriptions and resumes every pending delivery, including those that were in
    /// flight when a previous process stopped. On a shared store it starts claiming instead.
    /// Call once, before anything else.
    asio::awaitable<void> start() {
        for (auto& s : co_await store_.load_subscriptions()) {
            index_.insert(std::move(s));
        }
        if (shared_) {
            start_shared();
            co_return;
        }

        std::unordered_map<std::string, std::shared_ptr<event const>> events;
        for (auto& p : co_await store_.load_pending()) {
            auto& shared = events[p.source.id];
            if (!shared) {
                shared = std::make_shared<event const>(std::move(p.source));
            }
            schedule(job{std::move(p.message), shared});
        }
        asio::co_spawn(executor_, run_timer(), [this](std::exception_ptr failure) {
            if (failure) {
                report_exception("the retry timer", failure);
            }
        });
    }

    /// Stores and indexes a new subscription.
    asio::awaitable<void> subscribe(subscription s) {
        co_await store_.insert_subscription(s);
        index_.insert(std::move(s));
    }

    /// Deletes a subscription of `workspace`. Its queued messages are cancelled; attempts
    /// already in flight finish. Returns false when the id is unknown in that workspace.
    asio::awaitable<bool> unsubscribe(std::string workspace, std::string id) {
        auto existing = index_.find(id);
        if (!existing || existing->workspace != workspace) {
            co_return false;
        }
        // Leave the index first, so no attempt starts while the store is being updated.
        index_.erase(id);
        routes_.erase(id);
        if (!co_await store_.erase_subscription(workspace, id)) {
            co_return false;
        }
        co_return true;
    }

    /// Stores new fields of an existing subscription of `s.workspace` (matched by `s.id`) and
    /// indexes them, so that the next attempt uses the new URL, secrets and `enabled` flag.
    /// Returns false, changing nothing, when the id is unknown in that workspace. Messages that a
    /// disabled subscription had pending were cancelled and are not queued again.
    asio::awaitable<bool> update_subscription(subscription s) {
        auto existing = index_.find(s.id);
        if (!existing || existing->workspace != s.workspace) {
            co_return false;
        }
        if (!s.enabled) {
            // As in disable(): the index changes first, so that no attempt finishing during the
            // store write records its message as pending again.
            index_.insert(s);
            bool updated = false;
            std::exception_ptr failure;
            try {
                updated = co_await store_.update_subscription(s);
            } catch (...) {
                failure = std::current_exception();
            }
            if (failure) {
                // The store kept the subscription as it was, so the index does too.
                index_.insert(*existing);
                std::rethrow_exception(failure);
            }
            if (!updated) {
                index_.erase(s.id);
                co_return false;
            }
            co_return true;
        }
        if (!co_await store_.update_subscription(s)) {
            co_return false;
        }
        index_.insert(std::move(s));
        co_return true;
    }

    /// Returns the subscriptions known to the dispatcher.
    subscription_index const& subscriptions() const noexcept { return index_; }

    /// Stores the event and one delivery for each subscription matching each of `types`, then
    /// queues the deliveries. Returns once the store has committed them.
    ///
    /// When `describe` is given, it is called with the result before the store write, and what
    /// it returns is stored as `e.response` (the answer sent again for a repeated idempotency
    /// key). The store's duplicate_key_error propagates, and then nothing is queued.
    asio::awaitable<publish_result>
    publish(event e, std::span<event_type const> types,
            std::function<std::string(publish_result const&)> const& describe = {}) {
        publish_result result;
        result.event_id = e.id;
        result.types.assign(types.begin(), types.end());

        auto now = options_.clock();
        std::vector<delivery> deliveries;
        // The subscription of each delivery, whose route its job starts with unless the index
        // changes while the store works.
        std::vector<subscription_index::pointer> matched;
        auto version = index_.version();
        for (auto type : types) {
            auto found = index_.match(e.workspace, type, e.workflow_id, e.campaign_id);
            deliveries.reserve(deliveries.size() + found.size());
            matched.reserve(matched.size() + found.size());
            for (auto& s : found) {
                deliveries.push_back(
                    delivery{new_message_id(), e.id, s->id, type, delivery_state::pending, 0, now});
                matched.push_back(std::move(s));
            }
        }
        result.deliveries = deliveries.size();
        if (describe) {
            e.response = describe(result);
        }
        co_await store_.insert_event(e, deliveries);
        if (shared_) {
            request_claim();
            co_return result;
        }

        // After a change to the index, a matched version may be stale, and caching its route
        // would replace the current one.
        bool unchanged = index_.version() == version;
        auto source = std::make_shared<event const>(std::move(e));
        for (std::size_t i = 0; i < deliveries.size(); ++i) {
            auto path = unchanged ? route_of(std::move(matched[i])) : nullptr;
            schedule(job{std::move(deliveries[i]), source, 0, std::move(path), version});
        }
        co_return result;
    }

    /// Queues the stored event `e` again: one new message, with a new id and so a new
    /// `webhook-id`, for each (subscription id, delivery type) pair in `targets`, starting from
    /// attempt 1. Returns the new messages once the store has committed them. The caller picks
    /// the targets; ids unknown to the index or disabled are skipped.
    asio::awaitable<std::vector<delivery>>
    redeliver(event e, std::vector<std::pair<std::string, event_type>> const& targets) {
        auto now = options_.clock();
        std::vector<delivery> deliveries;
        for (auto const& [subscription_id, type] : targets) {
            auto s = index_.find(subscription_id);
            if (!s || !s->enabled || s->workspace != e.workspace) {
                continue;
            }
            deliveries.push_back(delivery{new_message_id(), e.id, subscription_id, type,
                                          delivery_state::pending, 0, now});
        }
        if (deliveries.empty()) {
            co_return deliveries;
        }
        co_await store_.insert_deliveries(deliveries);
        if (shared_) {
            request_claim();
            co_return deliveries;
        }
        auto source = std::make_shared<event const>(std::move(e));
        for (auto const& d : deliveries) {
            schedule(job{d, source});
        }
        co_return deliveries;
    }

    /// Stops starting attempts and waits until those in flight have finished, or until
    /// `deadline`. Returns the number still in flight at the deadline; their deliveries stay
    /// pending in the store and resume on the next start.
    asio::awaitable<std::size_t> drain(std::chrono::milliseconds deadline) {
        stopping_ = true;
        wake_.cancel();
        claim_wake_.cancel();
        renew_wake_.cancel();
        if (shared_) {
            co_await release_unstarted();
        }
        auto until = std::chrono::steady_clock::now() + deadline;
        // A claim that was under way when the drain began releases what it got when it returns.
        while ((in_flight_ > 0 || claiming_) && std::chrono::steady_clock::now() < until) {
            idle_.expires_at(until);
            co_await idle_.async_wait(http::use_nothrow);
        }
        co_return in_flight_;
    }

    /// Returns the number of attempts in flight, counting those whose exchange has ended until
    /// the store has recorded them.
    std::size_t in_flight() const noexcept { return in_flight_; }

    /// Returns the number of messages waiting: due and ready, or scheduled for later.
    std::size_t queued() const noexcept { return ready_count_ + due_.size(); }

    /// Wakes the retry timer so that it reads the clock again and starts every message whose
    /// `next_attempt_at` has passed. Call it after moving an injected clock; with the system
    /// clock it is never needed.
    void notify_clock_changed() { wake_.cancel(); }

private:
    using clock = std::chrono::steady_clock;

    // The maximum time the timer sleeps before it reads the wall clock again, so that a step of
    // the system clock (NTP) delays a due message by at most this much.
    static constexpr std::chrono::milliseconds max_sleep{60'000};

    // The parts of one indexed version of a subscription that its attempts use, prepared once:
    // the parsed URL, the origin that queues its messages, the signing key of its secret and the
    // start of its requests.
    struct route {
        subscription_index::pointer sub;
        std::variant<webhook_target, url_problem> target;
        std::string origin; // `invalid:` and the URL when the URL is invalid
        // Prepared at the first attempt. A malformed secret fails that attempt (see run_attempt).
        std::optional<signing_key> key;
        // The key of the previous secret during a rotation's grace period, prepared likewise.
        std::optional<signing_key> previous_key;
        // The request line and fixed fields, written at the first attempt.
        std::optional<http::request_prefix> prefix;
    };

    struct job {
        delivery message;
        std::shared_ptr<event const> source;
        std::uint64_t claim = 0; // on a shared store, the claim that leased the message
        // The route found for the message, valid while the index stays at `index_version`.
        std::shared_ptr<route> path;
        std::uint64_t index_version = 0;
    };

    // A message leased from a shared store.
    struct lease_entry {
        std::uint64_t claim = 0; // matches job::claim of the one job that may attempt it
        bool started = false;
    };

    // The ready messages of one origin, a queue per subscription, served in turn.
    struct endpoint {
        using queues = std::unordered_map<std::string, std::deque<job>, detail::text_hash,
                                          std::equal_to<>>;
        std::string origin;
        queues by_subscription;
        // The queues that hold messages, in turn order. Nodes of an unordered_map stay put, and
        // a queue is erased only while it is empty and so out of turn.
        std::deque<queues::value_type*> turns;
        std::size_t in_flight = 0;
        bool waiting_for_slot = false;
    };

    // Empty per-subscription queues are kept for reuse up to this many per origin, so that a
    // subscription with one message at a time does not allocate a queue for each.
    static constexpr std::size_t kept_empty_queues = 1024;

    // Routes kept at most, one per subscription. The cache starts over when it is full.
    static constexpr std::size_t max_cached_routes = 65536;

    struct due_entry {
        unix_ms at;
        std::uint64_t order;
        std::shared_ptr<job> item;
        bool operator>(due_entry const& other) const {
            return at != other.at ? at > other.at : order > other.order;
        }
    };

    // Queues a message for its next attempt time.
    void schedule(job j) {
        if (j.message.next_attempt_at <= options_.clock()) {
            make_ready(std::move(j));
            return;
        }
        auto at = j.message.next_attempt_at;
        bool earliest = due_.empty() || at < due_.top().at;
        due_.push({at, next_order_++, std::make_shared<job>(std::move(j))});
        if (earliest) {
            wake_.cancel();
        }
    }

    // Moves messages whose time has come into their origin's queue, and sleeps until the next.
    asio::awaitable<void> run_timer() {
        while (!stopping_) {
            auto now = options_.clock();
            while (!due_.empty() && due_.top().at <= now) {
                auto item = due_.top().item;
                due_.pop();
                make_ready(std::move(*item));
            }
            if (due_.empty()) {
                wake_.expires_at(clock::time_point::max());
            } else {
                wake_.expires_after(
                    std::min(std::chrono::milliseconds(due_.top().at - now), max_sleep));
            }
            co_await wake_.async_wait(http::use_nothrow);
        }
    }

    // Returns the route of `j`'s subscription as the index contains it now, or null when the
    // subscription is deleted or disabled. While the index has not changed since the job's last
    // lookup, no lookup is needed.
    route* current_route(job& j) {
        if (!j.path || j.index_version != index_.version()) {
            auto sub = index_.find(j.message.subscription_id);
            j.path = sub ? route_of(std::move(sub)) : nullptr;
            j.index_version = index_.version();
        }
        return j.path && j.path->sub->enabled ? j.path.get() : nullptr;
    }

    // Returns the route of `sub`, preparing it the first time this version of the subscription
    // is seen. The policy and `allow_http` never change, so neither does a parsed URL.
    std::shared_ptr<route> route_of(subscription_index::pointer sub) {
        auto found = routes_.find(sub->id);
        if (found != routes_.end() && found->second->sub == sub) {
            return found->second;
        }
        if (routes_.size() >= max_cached_routes) {
            routes_.clear();
        }
        auto created = std::make_shared<route>();
        created->target = parse_webhook_url(sub->webhook_url, options_.allow_http, policy_);
        auto const* valid = std::get_if<webhook_target>(&created->target);
        created->origin = valid ? valid->origin() : "invalid:" + sub->webhook_url;
        created->sub = std::move(sub);
        routes_.insert_or_assign(created->sub->id, created);
        return created;
    }

    void make_ready(job j) {
        auto* path = current_route(j);
        if (!path) {
            // Deleted or disabled: the store has cancelled its pending messages.
            if (shared_) {
                held_.erase(j.message.id);
            }
            return;
        }
        auto [it, added] = endpoints_.try_emplace(path->origin);
        auto& e = it->second;
        if (added) {
            e.origin = path->origin;
        }
        auto& entry = *e.by_subscription.try_emplace(j.message.subscription_id).first;
        if (entry.second.empty()) {
            e.turns.push_back(&entry);
        }
        entry.second.push_back(std::move(j));
        ++ready_count_;
        pump(e);
    }

    // Starts as many attempts of one origin as its slots and the global slots allow.
    void pump(endpoint& e) {
        struct depth_guard {
            std::size_t& depth;
            explicit depth_guard(std::size_t& d)
                : depth(++d) {}
            ~depth_guard() { --depth; }
        } guard(pump_depth_);
        while (!stopping_ && !e.turns.empty() && e.in_flight < options_.max_per_origin) {
            if (sending_ >= options_.max_in_flight) {
                if (!e.waiting_for_slot) {
                    e.waiting_for_slot = true;
                    starved_.push_back(e.origin);
                }
                return;
            }
            auto* entry = e.turns.front();
            e.turns.pop_front();
            auto next = std::move(entry->second.front());
            entry->second.pop_front();
            if (!entry->second.empty()) {
                e.turns.push_back(entry);
            } else if (e.by_subscription.size() > kept_empty_queues) {
                e.by_subscription.erase(e.by_subscription.find(entry->first));
            }
            --ready_count_;

            ++e.in_flight;
            ++sending_;
            ++in_flight_;
            // The endpoint stays in endpoints_ while it has attempts holding its slots, and nodes
            // of an unordered_map do not move, so the attempt may use it until it gives its slot
            // back.
            asio::co_spawn(executor_, attempt_once(std::move(next), e),
                           [this](std::exception_ptr failure) {
                               if (failure) {
                                   report_exception("a delivery attempt", failure);
                               }
                               attempt_ended();
                           });
        }
    }

    // Gives back the slots of an attempt whose exchange has ended, and starts the next ones.
    void release_slot(endpoint& e) {
        --sending_;
        --e.in_flight;
        pump(e);
        if (e.in_flight == 0 && e.turns.empty()) {
            endpoints_.erase(e.origin);
        }
        while (!starved_.empty() && sending_ < options_.max_in_flight) {
            auto next = std::move(starved_.front());
            starved_.pop_front();
            auto waiting = endpoints_.find(next);
            if (waiting != endpoints_.end()) {
                waiting->second.waiting_for_slot = false;
                pump(waiting->second);
            }
        }
        if (shared_) {
            request_claim();
        }
    }

    void attempt_ended() {
        --in_flight_;
        if (in_flight_ == 0) {
            idle_.cancel();
        }
    }

    // Gives back the slots of `slots`, the endpoint whose slots an attempt still has, and sets
    // it to null so that the slots are given back once.
    void release_slot(endpoint*& slots) {
        auto* e = std::exchange(slots, nullptr);
        if (e == nullptr) {
            return;
        }
        if (pump_depth_ > 0) {
            // co_spawn starts an attempt inside pump, and one that ends before it suspends (an
            // invalid URL, a deleted subscription) gets here before pump returns. Releasing now
            // would start the next attempt inside this one, and so on down the queue, and could
            // erase the endpoint that pump is still working on.
            asio::post(executor_, [this, e] { release_slot(*e); });
            return;
        }
        release_slot(*e);
    }

    // Runs one attempt and then gives back what it still holds. That happens here rather than
    // in a destructor, because the frames of unfinished attempts are destroyed with the
    // executor, which may outlive the dispatcher.
    asio::awaitable<void> attempt_once(job j, endpoint& origin) {
        endpoint* slots = &origin;
        std::exception_ptr failure;
        try {
            co_await run_attempt(std::move(j), slots);
        } catch (...) {
            failure = std::current_exception();
        }
        release_slot(slots);
        if (failure) {
            std::rethrow_exception(failure);
        }
    }

    asio::awaitable<void> run_attempt(job j, endpoint*& slots) {
        auto& d = j.message;
        if (shared_) {
            // A lease that renewal found lost belongs to another process now, and a message
            // claimed again after that is attempted by the job of the newer claim.
            auto held = held_.find(d.id);
            if (held == held_.end() || held->second.claim != j.claim) {
                co_return;
            }
            held->second.started = true;
        }
        if (!current_route(j)) {
            if (shared_) {
                held_.erase(d.id);
            }
            co_return;
        }
        // Held for the whole attempt, which the job's own route may not be after a change.
        auto path = j.path;
        auto const& sub = path->sub;

        attempt a;
        a.delivery_id = d.id;
        a.number = d.attempts + 1;
        a.started_at = options_.clock();
        auto started = clock::now();

        http::exchange_result result;
        if (auto const* problem = std::get_if<url_problem>(&path->target)) {
            result.error = http::failure::blocked;
            result.detail = problem->message;
        } else {
            auto const& target = std::get<webhook_target>(path->target);
            // A request that cannot be built, such as one with a malformed secret, fails this
            // attempt like a blocked destination. It is recorded and not retried, because a retry
            // would fail the same way.
            std::optional<std::string> request;
            try {
                request = make_request(*path, d, *j.source, target);
            } catch (std::exception const& e) {
                result.error = http::failure::blocked;
                result.detail = std::string("the request could not be built: ") + e.what();
            }
            if (request) {
                result = co_await client_.send_serialized(target, std::move(*request),
                                                          started + options_.attempt_timeout);
            }
        }

        a.duration_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started).count();
        a.status = result.error == http::failure::none ? result.response.status : 0;
        a.error = result.error == http::failure::none ? std::string()
                                                      : std::string(to_string(result.error));
        if (result.error == http::failure::none) {
            a.response_body = std::move(result.response.body);
        } else {
            a.response_body = result.detail;
        }

        std::uniform_real_distribution<double> unit(0.0, 1.0);
        auto now = options_.clock();
        auto decision = options_.retries.decide(
            result.error, a.status, a.number, result.response.headers.find("Retry-After"),
            std::chrono::system_clock::time_point(std::chrono::milliseconds(now)), unit(random_));
        d.attempts = a.number;
        switch (decision.verdict) {
        case verdict::delivered:
            d.state = delivery_state::delivered;
            break;
        case verdict::retry:
            d.state = delivery_state::pending;
            d.next_attempt_at = now + decision.delay.count();
            break;
        case verdict::failed:
        case verdict::gone:
            d.state = delivery_state::failed;
            break;
        }

        // The exchange is over, so the next attempt may use the slot while the store records this
        // one, unless too many attempts wait for the store already. Releasing may start other
        // attempts, so it comes before the check below.
        bool const give_slot_back = recording_ < options_.max_unrecorded;
        ++recording_;
        std::exception_ptr record_failure;
        try {
            if (give_slot_back) {
                release_slot(slots);
            }

            // The subscription may have been deleted or disabled while this attempt was in
            // flight, and the store has then cancelled the message. Recording it as pending would
            // undo that, so a retry becomes a cancellation. Nothing suspends between this check
            // and the store call, and the store applies writes in call order.
            if (d.state == delivery_state::pending && current_route(j) == nullptr) {
                d.state = delivery_state::cancelled;
            }

            // Recording gives the lease up, whether or not it succeeds: after a failed write the
            // lease expires and another claim attempts the message again. Until the record is
            // written, renewals keep the lease, so that a slow store does not let another
            // process send the message again.
            co_await store_.record_attempt(a, d);
        } catch (...) {
            record_failure = std::current_exception();
        }
        --recording_;
        if (shared_) {
            forget_lease(d.id, j.claim);
        }
        if (record_failure) {
            std::rethrow_exception(record_failure);
        }
        if (decision.verdict == verdict::gone) {
            co_await disable(*sub);
        }
        if (options_.on_attempt) {
            options_.on_attempt(a, d, *sub);
        }
        // On a shared store a retry waits in the store until a claim finds it due.
        if (d.state == delivery_state::pending && !stopping_ && !shared_) {
            schedule(std::move(j));
        }
    }

    // ---- Claiming from a shared store -------------------------------------------------------

    // The maximum number of messages that one claim requests.
    static constexpr std::size_t claim_batch = 256;

    void start_shared() {
        shared_->watch([this](store_change const& change) { on_store_change(change); });
        spawn_loop("claiming deliveries", claim_loop());
        spawn_loop("renewing leases", renew_loop());
    }

    void spawn_loop(std::string_view name, asio::awaitable<void> loop) {
        asio::co_spawn(executor_, std::move(loop), [this, name](std::exception_ptr failure) {
            if (failure) {
                report_exception(name, failure);
            }
        });
    }

    // Makes the claim loop claim again as soon as it can.
    void request_claim() {
        claim_requested_ = true;
        claim_wake_.cancel();
    }

    // The messages this process may hold at once: enough to keep every slot busy while the
    // next claim runs, few enough that a lease is rarely held by a message that waits for a slot.
    std::size_t claim_room() const noexcept {
        auto limit = 2 * options_.max_in_flight;
        return held_.size() >= limit ? 0 : limit - held_.size();
    }

    asio::awaitable<void> claim_loop() {
        auto backoff = std::chrono::milliseconds(100);
        while (!stopping_) {
            claim_requested_ = false;
            auto room = std::min(claim_room(), claim_batch);
            bool full_batch = false;
            if (room > 0) {
                std::optional<std::string> failure;
                claiming_ = true;
                try {
                    auto now = options_.clock();
                    auto claimed =
                        co_await shared_->claim_due(now, room, now + options_.lease.count());
                    backoff = std::chrono::milliseconds(100);
                    full_batch = claimed.size() == room;
                    accept_claimed(std::move(claimed));
                } catch (std::exception const& e) {
                    failure = e.what();
                }
                if (stopping_) {
                    // drain() released the leases it knew of before this claim returned.
                    co_await release_unstarted();
                }
                claiming_ = false;
                idle_.cancel();
                if (failure) {
                    report_error("claiming due deliveries failed: " + *failure +
                                 "; trying again in " + std::to_string(backoff.count()) + " ms");
                    claim_wake_.expires_after(backoff);
                    backoff = std::min(backoff * 2, std::chrono::milliseconds(5'000));
                    co_await claim_wake_.async_wait(http::use_nothrow);
                    continue;
                }
            }
            if (stopping_) {
                break;
            }
            if ((full_batch && claim_room() > 0) || claim_requested_) {
                continue;
            }
            claim_wake_.expires_after(options_.poll_interval);
            co_await claim_wake_.async_wait(http::use_nothrow);
        }
    }

    void accept_claimed(std::vector<pending_delivery> claimed) {
        std::unordered_map<std::string, std::shared_ptr<event const>> events;
        for (auto& p : claimed) {
            auto& source = events[p.source.id];
            if (!source) {
                source = std::make_shared<event const>(std::move(p.source));
            }
            auto claim = ++claims_;
            held_[p.message.id] = lease_entry{claim, false};
            if (stopping_) {
                continue; // released by claim_loop()
            }
            make_ready(job{std::move(p.message), source, claim});
        }
    }

    asio::awaitable<void> renew_loop() {
        while (!stopping_) {
            renew_wake_.expires_after(options_.lease / 3);
            co_await renew_wake_.async_wait(http::use_nothrow);
            if (stopping_ || held_.empty()) {
                continue;
            }
            std::vector<std::string> ids;
            ids.reserve(held_.size());
            for (auto const& entry : held_) {
                ids.push_back(entry.first);
            }
            try {
                auto until = options_.clock() + options_.lease.count();
                for (auto const& lost : co_await shared_->renew_leases(ids, until)) {
                    held_.erase(lost);
                }
            } catch (std::exception const& e) {
                report_error(std::string("renewing leases failed: ") + e.what() +
                             "; another process may claim them when they expire");
            }
        }
    }

    // Stops renewing the lease of claim `claim` of message `id`, which makes room for the next
    // claim. A newer claim of the same message, made after the store recorded this attempt,
    // keeps its own lease.
    void forget_lease(std::string const& id, std::uint64_t claim) {
        auto held = held_.find(id);
        if (held != held_.end() && held->second.claim == claim) {
            held_.erase(held);
            request_claim();
        }
    }

    // Gives up the leases of messages whose attempt has not started, so that another process
    // claims them without waiting for the lease to expire.
    asio::awaitable<void> release_unstarted() {
        std::vector<std::string> ids;
        for (auto const& [id, lease] : held_) {
            if (!lease.started) {
                ids.push_back(id);
            }
        }
        for (auto const& id : ids) {
            held_.erase(id);
        }
        if (ids.empty()) {
            co_return;
        }
        try {
            co_await shared_->release_leases(ids);
        } catch (std::exception const& e) {
            report_error(std::string("releasing leases failed: ") + e.what() +
                         "; their messages wait until the leases expire");
        }
    }

    void on_store_change(store_change const& change) {
        switch (change.what) {
        case store_change::kind::work:
            request_claim();
            break;
        case store_change::kind::subscription:
            spawn_loop("reloading a subscription", reload_subscription(change.subscription_id));
            break;
        case store_change::kind::resync:
            spawn_loop("reloading the subscriptions", reload_subscriptions());
            request_claim();
            break;
        }
    }

    // Reads one subscription again after another process changed it. Reads of the same id may
    // finish out of order; only the read started last is applied.
    asio::awaitable<void> reload_subscription(std::string id) {
        auto generation = ++reload_generation_[id];
        auto current = co_await shared_->find_subscription(id);
        auto latest = reload_generation_.find(id);
        if (latest == reload_generation_.end() || latest->second != generation) {
            co_return;
        }
        reload_generation_.erase(latest);
        if (current) {
            index_.insert(std::move(*current));
        } else {
            index_.erase(id);
        }
    }

    asio::awaitable<void> reload_subscriptions() {
        auto generation = ++resync_generation_;
        auto all = co_await store_.load_subscriptions();
        if (generation != resync_generation_) {
            co_return;
        }
        std::unordered_set<std::string> present;
        for (auto& s : all) {
            present.insert(s.id);
            index_.insert(std::move(s));
        }
        std::vector<std::string> gone;
        index_.for_each([&](subscription_index::pointer const& s) {
            if (!present.contains(s->id)) {
                gone.push_back(s->id);
            }
        });
        for (auto const& id : gone) {
            index_.erase(id);
        }
    }

    // Marks a subscription disabled after its receiver responded 410 Gone.
    asio::awaitable<void> disable(subscription const& s) {
        auto current = index_.find(s.id);
        if (!current || !current->enabled) {
            co_return;
        }
        auto changed = *current;
        changed.enabled = false;
        // The index changes first, so that no attempt that finishes while the store is being
        // updated records its message as pending again (see run_attempt).
        index_.insert(changed);
        co_await store_.update_subscription(changed);
    }

    // Returns the wire form of an attempt of `d`. The request line and the fields that stay the
    // same for every attempt of the subscription are written once per route.
    std::string make_request(route& r, delivery const& d, event const& e,
                             webhook_target const& target) {
        auto const& s = *r.sub;
        if (!r.prefix) {
            http::fields fixed;
            fixed.reserve(3);
            fixed.add("Host", http::host_field(target));
            fixed.add("Content-Type", "application/json");
            fixed.add("User-Agent", options_.user_agent);
            r.prefix.emplace("POST", target.target, fixed);
        }
        if (!r.key) {
            r.key.emplace(s.secret);
        }

        // Whole seconds, rounded down, as Standard Webhooks writes the timestamp.
        auto timestamp = options_.clock() / 1000;
        // During a rotation's grace period each attempt carries a signature with the new and one
        // with the previous secret, so receivers verify with either.
        bool with_previous =
            !s.previous_secret.empty() && s.previous_secret_expires_at > options_.clock();
        if (with_previous && !r.previous_key) {
            r.previous_key.emplace(s.previous_secret);
        }
        signing_key const* keys[] = {&*r.key, with_previous ? &*r.previous_key : nullptr};
        std::span<signing_key const* const> used(keys, with_previous ? 2 : 1);
        auto signature = signature_header(used, d.id, timestamp, e.payload);
        auto timestamp_text = std::to_string(timestamp);
        http::field_view const varying[] = {
            {"RevDesk-Event-Type", to_string(d.type)},
            {"webhook-id", d.id},
            {"webhook-timestamp", timestamp_text},
            {"webhook-signature", signature},
        };
        return r.prefix->finish(varying, e.payload);
    }

    void report_error(std::string_view message) const {
        if (options_.on_error) {
            options_.on_error(message);
        }
    }

    void report_exception(std::string_view where, std::exception_ptr failure) const {
        if (!options_.on_error) {
            return;
        }
        try {
            std::rethrow_exception(failure);
        } catch (std::exception const& e) {
            options_.on_error(std::string(where) + " failed: " + e.what());
        } catch (...) {
            options_.on_error(std::string(where) + " failed with an unknown exception");
        }
    }

    asio::any_io_executor executor_;
    store& store_;
    http::client& client_;
    address_policy const& policy_;
    dispatcher_options options_;

    subscription_index index_;
    std::priority_queue<due_entry, std::vector<due_entry>, std::greater<>> due_;
    std::uint64_t next_order_ = 0;
    std::unordered_map<std::string, endpoint> endpoints_;
    // By subscription id.
    std::unordered_map<std::string, std::shared_ptr<route>, detail::text_hash, std::equal_to<>>
        routes_;
    std::deque<std::string> starved_; // origins waiting for a global slot
    std::size_t ready_count_ = 0;
    std::size_t in_flight_ = 0;  // attempts started and not ended, recording included
    std::size_t sending_ = 0;    // attempts holding a slot
    std::size_t recording_ = 0;  // attempts waiting for the store to record them
    std::size_t pump_depth_ = 0; // calls of pump() under way on this thread
    bool stopping_ = false;
    asio::steady_timer wake_; // wakes run_timer when an earlier message is scheduled
    asio::steady_timer idle_; // cancelled when the last attempt finishes, for drain()

    // Claiming from a shared store.
    shared_queue* shared_ = nullptr;
    std::unordered_map<std::string, lease_entry> held_; // by message id
    std::uint64_t claims_ = 0;
    bool claim_requested_ = false;
    bool claiming_ = false; // a claim_due call is under way
    asio::steady_timer claim_wake_;
    asio::steady_timer renew_wake_;
    std::unordered_map<std::string, std::uint64_t> reload_generation_;
    std::uint64_t resync_generation_ = 0;
    std::mt19937_64 random_;
};

} // namespace revdesk
