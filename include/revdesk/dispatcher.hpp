// The dispatcher: publishes events to every matching subscription and drives their deliveries.
#pragma once

#include <revdesk/destination.hpp>
#include <revdesk/http/client.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/retry.hpp>
#include <revdesk/signing.hpp>
#include <revdesk/store/store.hpp>
#include <revdesk/subscription_index.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
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
    auto lookup = resolve ? resolve : http::system_resolver(executor);
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

/// Limits and hooks of a dispatcher.
struct dispatcher_options {
    /// Attempts in flight at once, over all receivers.
    std::size_t max_in_flight = 512;

    /// Attempts in flight at once to one origin (scheme, host and port). A slow receiver ties
    /// up only its own slots.
    std::size_t max_per_origin = 16;

    /// One deadline for a whole attempt: resolve, connect, TLS, write and response.
    std::chrono::milliseconds attempt_timeout{15'000};

    retry_policy retries;

    /// Whether `http` receivers are allowed besides `https`.
    bool allow_http = false;

    /// The `User-Agent` of every delivery.
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
        , random_(std::random_device{}()) {
        if (!options_.clock) {
            options_.clock = now_ms;
        }
    }

    dispatcher(dispatcher const&) = delete;
    dispatcher& operator=(dispatcher const&) = delete;

    /// Loads the subscriptions and resumes every pending delivery, including those that were in
    /// flight when a previous process stopped. Call once, before anything else.
    asio::awaitable<void> start() {
        for (auto& s : co_await store_.load_subscriptions()) {
            index_.insert(std::move(s));
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
            if (!co_await store_.update_subscription(s)) {
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
        for (auto type : types) {
            for (auto const& s : index_.match(e.workspace, type, e.workflow_id, e.campaign_id)) {
                deliveries.push_back(
                    delivery{new_message_id(), e.id, s->id, type, delivery_state::pending, 0, now});
            }
        }
        result.deliveries = deliveries.size();
        if (describe) {
            e.response = describe(result);
        }
        co_await store_.insert_event(e, deliveries);

        auto shared = std::make_shared<event const>(std::move(e));
        for (auto& d : deliveries) {
            schedule(job{std::move(d), shared});
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
        auto shared = std::make_shared<event const>(std::move(e));
        for (auto const& d : deliveries) {
            schedule(job{d, shared});
        }
        co_return deliveries;
    }

    /// Stops starting attempts and waits until those in flight have finished, or until
    /// `deadline`. Returns the number still in flight at the deadline; their deliveries stay
    /// pending in the store and resume on the next start.
    asio::awaitable<std::size_t> drain(std::chrono::milliseconds deadline) {
        stopping_ = true;
        wake_.cancel();
        auto until = std::chrono::steady_clock::now() + deadline;
        while (in_flight_ > 0 && std::chrono::steady_clock::now() < until) {
            idle_.expires_at(until);
            co_await idle_.async_wait(http::use_nothrow);
        }
        co_return in_flight_;
    }

    /// Returns the number of attempts in flight.
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

    struct job {
        delivery message;
        std::shared_ptr<event const> source;
    };

    // The ready messages of one origin, a queue per subscription, served in turn.
    struct endpoint {
        std::unordered_map<std::string, std::deque<job>> by_subscription;
        std::deque<std::string> turns;
        std::size_t in_flight = 0;
        bool waiting_for_slot = false;
    };

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

    void make_ready(job j) {
        auto sub = index_.find(j.message.subscription_id);
        if (!sub || !sub->enabled) {
            // Deleted or disabled: the store has cancelled its pending messages.
            return;
        }
        auto target = parse_webhook_url(sub->webhook_url, options_.allow_http, policy_);
        auto origin = std::holds_alternative<webhook_target>(target)
                          ? std::get<webhook_target>(target).origin()
                          : std::string("invalid:") + sub->id;

        auto& e = endpoints_[origin];
        auto& queue = e.by_subscription[j.message.subscription_id];
        if (queue.empty()) {
            e.turns.push_back(j.message.subscription_id);
        }
        queue.push_back(std::move(j));
        ++ready_count_;
        pump(origin);
    }

    // Starts as many attempts of `origin` as its slots and the global slots allow.
    void pump(std::string const& origin) {
        auto it = endpoints_.find(origin);
        if (it == endpoints_.end()) {
            return;
        }
        auto& e = it->second;
        while (!stopping_ && !e.turns.empty() && e.in_flight < options_.max_per_origin) {
            if (in_flight_ >= options_.max_in_flight) {
                if (!e.waiting_for_slot) {
                    e.waiting_for_slot = true;
                    starved_.push_back(origin);
                }
                return;
            }
            auto subscription_id = std::move(e.turns.front());
            e.turns.pop_front();
            auto& queue = e.by_subscription[subscription_id];
            auto next = std::move(queue.front());
            queue.pop_front();
            if (queue.empty()) {
                e.by_subscription.erase(subscription_id);
            } else {
                e.turns.push_back(subscription_id);
            }
            --ready_count_;

            ++e.in_flight;
            ++in_flight_;
            asio::co_spawn(executor_, attempt_once(std::move(next)),
                           [this, origin](std::exception_ptr failure) {
                               if (failure) {
                                   report_exception("a delivery attempt", failure);
                               }
                               finish(origin);
                           });
        }
    }

    void finish(std::string const& origin) {
        --in_flight_;
        auto it = endpoints_.find(origin);
        if (it != endpoints_.end()) {
            --it->second.in_flight;
            pump(origin);
            if (it->second.in_flight == 0 && it->second.turns.empty()) {
                endpoints_.erase(it);
            }
        }
        while (!starved_.empty() && in_flight_ < options_.max_in_flight) {
            auto next = std::move(starved_.front());
            starved_.pop_front();
            auto e = endpoints_.find(next);
            if (e != endpoints_.end()) {
                e->second.waiting_for_slot = false;
                pump(next);
            }
        }
        if (in_flight_ == 0) {
            idle_.cancel();
        }
    }

    asio::awaitable<void> attempt_once(job j) {
        auto sub = index_.find(j.message.subscription_id);
        if (!sub || !sub->enabled) {
            co_return;
        }

        auto& d = j.message;
        attempt a;
        a.delivery_id = d.id;
        a.number = d.attempts + 1;
        a.started_at = options_.clock();
        auto started = clock::now();

        auto parsed = parse_webhook_url(sub->webhook_url, options_.allow_http, policy_);
        http::exchange_result result;
        if (auto* problem = std::get_if<url_problem>(&parsed)) {
            result.error = http::failure::blocked;
            result.detail = problem->message;
        } else {
            auto const& target = std::get<webhook_target>(parsed);
            result = co_await client_.send(target, make_request(*sub, d, *j.source, target),
                                           started + options_.attempt_timeout);
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

        // The subscription may have been deleted or disabled while this attempt was in flight,
        // and the store has then cancelled the message. Recording it as pending would undo
        // that, so a retry becomes a cancellation. Nothing suspends between this check and the
        // store call, and the store applies writes in call order.
        auto current = index_.find(d.subscription_id);
        bool still_subscribed = current && current->enabled;
        if (d.state == delivery_state::pending && !still_subscribed) {
            d.state = delivery_state::cancelled;
        }

        co_await store_.record_attempt(a, d);
        if (decision.verdict == verdict::gone) {
            co_await disable(*sub);
        }
        if (options_.on_attempt) {
            options_.on_attempt(a, d, *sub);
        }
        if (d.state == delivery_state::pending && !stopping_) {
            schedule(std::move(j));
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
        // updated records its message as pending again (see attempt_once).
        index_.insert(changed);
        co_await store_.update_subscription(changed);
    }

    http::request make_request(subscription const& s, delivery const& d, event const& e,
                               webhook_target const& target) const {
        http::request req;
        req.method = "POST";
        req.target = target.target;
        req.headers.add("Content-Type", "application/json");
        req.headers.add("User-Agent", options_.user_agent);
        req.headers.add("RevDesk-Event-Type", std::string(to_string(d.type)));

        // Whole seconds, rounded down, as Standard Webhooks writes the timestamp.
        auto timestamp = options_.clock() / 1000;
        req.headers.add("webhook-id", d.id);
        req.headers.add("webhook-timestamp", std::to_string(timestamp));
        // During a rotation's grace period each attempt carries a signature with the new and one
        // with the previous secret, so receivers verify with either.
        std::vector<std::string> secrets{s.secret};
        if (!s.previous_secret.empty() && s.previous_secret_expires_at > options_.clock()) {
            secrets.push_back(s.previous_secret);
        }
        req.headers.add("webhook-signature", signature_header(secrets, d.id, timestamp, e.payload));
        req.body = e.payload;
        return req;
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
    std::map<std::string, endpoint> endpoints_;
    std::deque<std::string> starved_; // origins waiting for a global slot
    std::size_t ready_count_ = 0;
    std::size_t in_flight_ = 0;
    bool stopping_ = false;
    asio::steady_timer wake_; // wakes run_timer when an earlier message is scheduled
    asio::steady_timer idle_; // cancelled when the last attempt finishes, for drain()
    std::mt19937_64 random_;
};

} // namespace revdesk
