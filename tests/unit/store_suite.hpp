// One body of tests that every store implementation runs, so that all of them behave alike.
//
// Usage, in a Boost.Test file: include the store's header, BOOST_TEST_MODULE and Boost.Test, then
// define a default-constructible `store_fixture` with a member `revdesk::store& db()` returning a
// new, empty store, and then include this file. It registers the suite `store_contract`, whose
// fixture derives from revdesk::test::coroutine_runner and from `store_fixture`, in that order, so
// the io_context outlives the store and a store can still post completions while it closes.
#pragma once

#include <revdesk/store/store.hpp>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace revdesk::test {

/// How long one `run` may take before the test fails instead of hanging.
inline constexpr std::chrono::seconds default_time_limit{60};

/// Drives coroutines to completion on its own io_context, within a time limit.
class coroutine_runner {
public:
    /// Runs `op` until it finishes and returns its result, or rethrows its exception. Fails the
    /// test when `op` has not finished after `limit`.
    template <typename T>
    T run(asio::awaitable<T> op, std::chrono::steady_clock::duration limit = default_time_limit) {
        using stored = std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>;
        stored result{};
        std::exception_ptr error;
        bool done = false;

        context_.restart();
        if constexpr (std::is_void_v<T>) {
            asio::co_spawn(context_, std::move(op), [&](std::exception_ptr e) {
                error = e;
                done = true;
            });
        } else {
            asio::co_spawn(context_, std::move(op), [&](std::exception_ptr e, T value) {
                error = e;
                if (!e) {
                    result.emplace(std::move(value));
                }
                done = true;
            });
        }
        context_.run_for(limit);

        if (!done) {
            BOOST_FAIL("the coroutine did not finish within the time limit");
        }
        if (error) {
            std::rethrow_exception(error);
        }
        if constexpr (!std::is_void_v<T>) {
            return std::move(*result);
        }
    }

    /// Runs every coroutine of `ops` at the same time and returns the exception of each (null
    /// for those that succeeded), in the order of `ops`. Fails the test when any has not finished
    /// after `limit`.
    std::vector<std::exception_ptr>
    run_concurrently(std::vector<asio::awaitable<void>> ops,
                     std::chrono::steady_clock::duration limit = default_time_limit) {
        std::vector<std::exception_ptr> errors(ops.size());
        std::size_t finished = 0;

        context_.restart();
        for (std::size_t i = 0; i < ops.size(); ++i) {
            asio::co_spawn(context_, std::move(ops[i]),
                           [&errors, &finished, i](std::exception_ptr e) {
                               errors[i] = e;
                               ++finished;
                           });
        }
        context_.run_for(limit);

        if (finished != ops.size()) {
            BOOST_FAIL("only " << finished << " of " << ops.size()
                               << " coroutines finished within the time limit");
        }
        return errors;
    }

    asio::io_context& context() noexcept { return context_; }

private:
    asio::io_context context_;
};

/// Returns the message of the exception that `error` contains, or an empty string.
inline std::string message_of(std::exception_ptr const& error) {
    if (!error) {
        return {};
    }
    try {
        std::rethrow_exception(error);
    } catch (std::exception const& e) {
        return e.what();
    } catch (...) {
        return "an exception not derived from std::exception";
    }
}

inline void check_same_scope(std::optional<scope_id> const& expected,
                             std::optional<scope_id> const& actual) {
    BOOST_TEST(expected.has_value() == actual.has_value());
    if (expected && actual) {
        BOOST_TEST(expected->text == actual->text);
        BOOST_TEST(expected->is_number == actual->is_number);
    }
}

inline void check_same(subscription const& expected, subscription const& actual) {
    BOOST_TEST_CONTEXT("subscription " << expected.id) {
        BOOST_TEST(expected.id == actual.id);
        BOOST_TEST(expected.workspace == actual.workspace);
        BOOST_TEST(expected.webhook_url == actual.webhook_url);
        BOOST_TEST(to_string(expected.type) == to_string(actual.type));
        check_same_scope(expected.workflow_id, actual.workflow_id);
        check_same_scope(expected.campaign_id, actual.campaign_id);
        BOOST_TEST(expected.secret == actual.secret);
        BOOST_TEST(expected.enabled == actual.enabled);
        BOOST_TEST(expected.created_at == actual.created_at);
        BOOST_TEST(expected.previous_secret == actual.previous_secret);
        BOOST_TEST(expected.previous_secret_expires_at == actual.previous_secret_expires_at);
        BOOST_TEST(expected.updated_at == actual.updated_at);
    }
}

inline void check_same(event const& expected, event const& actual) {
    BOOST_TEST_CONTEXT("event " << expected.id) {
        BOOST_TEST(expected.id == actual.id);
        BOOST_TEST(expected.workspace == actual.workspace);
        BOOST_TEST(to_string(expected.type) == to_string(actual.type));
        BOOST_TEST(expected.payload.size() == actual.payload.size());
        // Parenthesized so that a mismatch does not print two large payloads.
        BOOST_TEST((expected.payload == actual.payload));
        check_same_scope(expected.workflow_id, actual.workflow_id);
        check_same_scope(expected.campaign_id, actual.campaign_id);
        BOOST_TEST(expected.created_at == actual.created_at);
        BOOST_TEST(expected.idempotency_key.has_value() == actual.idempotency_key.has_value());
        if (expected.idempotency_key && actual.idempotency_key) {
            BOOST_TEST(*expected.idempotency_key == *actual.idempotency_key);
        }
        BOOST_TEST(expected.response == actual.response);
    }
}

inline void check_same(delivery const& expected, delivery const& actual) {
    BOOST_TEST_CONTEXT("delivery " << expected.id) {
        BOOST_TEST(expected.id == actual.id);
        BOOST_TEST(expected.event_id == actual.event_id);
        BOOST_TEST(expected.subscription_id == actual.subscription_id);
        BOOST_TEST(to_string(expected.type) == to_string(actual.type));
        BOOST_TEST((expected.state == actual.state));
        BOOST_TEST(expected.attempts == actual.attempts);
        BOOST_TEST(expected.next_attempt_at == actual.next_attempt_at);
    }
}

/// Checks every field. An empty `expected.id` stands for an id that the store generated, which
/// must have the form `att_` followed by 16 lowercase hex digits.
inline void check_same(attempt const& expected, attempt const& actual) {
    BOOST_TEST_CONTEXT("attempt " << expected.number << " of " << expected.delivery_id) {
        if (expected.id.empty()) {
            BOOST_TEST(actual.id.size() == 20u, actual.id);
            BOOST_TEST(actual.id.starts_with("att_"), actual.id);
            BOOST_TEST(actual.id.find_first_not_of("0123456789abcdef", 4) == std::string::npos,
                       actual.id);
        } else {
            BOOST_TEST(expected.id == actual.id);
        }
        BOOST_TEST(expected.subscription_id == actual.subscription_id);
        BOOST_TEST(expected.event_id == actual.event_id);
        BOOST_TEST(expected.delivery_id == actual.delivery_id);
        BOOST_TEST(expected.number == actual.number);
        BOOST_TEST(expected.started_at == actual.started_at);
        BOOST_TEST(expected.duration_ms == actual.duration_ms);
        BOOST_TEST(expected.status == actual.status);
        BOOST_TEST(expected.error == actual.error);
        BOOST_TEST(expected.response_body == actual.response_body);
    }
}

/// Returns a subscription of workspace `ws_a` receiving `call_completed`, without scopes.
inline subscription make_subscription(std::string id, std::string workspace = "ws_a") {
    return subscription{
        .id = std::move(id),
        .workspace = std::move(workspace),
        .webhook_url = "https://receiver.example/hooks/revdesk",
        .type = event_type::call_completed,
        .workflow_id = std::nullopt,
        .campaign_id = std::nullopt,
        .secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        .enabled = true,
        .created_at = 1'760'000'000'000,
        .previous_secret = "",
        .previous_secret_expires_at = 0,
        .updated_at = 0,
    };
}

/// Returns an event of workspace `ws_a` with a small JSON payload.
inline event make_event(std::string id, std::string payload = R"({"id":"call_abc123"})") {
    return event{
        .id = std::move(id),
        .workspace = "ws_a",
        .type = event_type::call_completed,
        .payload = std::move(payload),
        .workflow_id = std::nullopt,
        .campaign_id = std::nullopt,
        .created_at = 1'760'000'000'500,
        .idempotency_key = std::nullopt,
        .response = "",
    };
}

/// Returns a pending delivery of `event_id` to `subscription_id`, not attempted yet.
inline delivery make_delivery(std::string id, std::string event_id, std::string subscription_id,
                              unix_ms next_attempt_at = 1'760'000'001'000) {
    return delivery{
        .id = std::move(id),
        .event_id = std::move(event_id),
        .subscription_id = std::move(subscription_id),
        .type = event_type::call_completed,
        .state = delivery_state::pending,
        .attempts = 0,
        .next_attempt_at = next_attempt_at,
    };
}

/// Returns attempt `number` of `delivery_id` that got `status`, with the other fields zero or
/// empty.
inline attempt make_attempt(std::string delivery_id, std::uint32_t number, int status = 0,
                            unix_ms started_at = 0) {
    return attempt{.delivery_id = std::move(delivery_id),
                   .number = number,
                   .started_at = started_at,
                   .duration_ms = 0,
                   .status = status,
                   .error = "",
                   .response_body = "",
                   .id = "",
                   .subscription_id = "",
                   .event_id = ""};
}

/// Inserts `e` with `deliveries`. Store operations take references that must stay valid until
/// they start, so this awaitable owns copies and may start later, as in run_concurrently.
inline asio::awaitable<void> insert_event_copy(store& db, event e,
                                               std::vector<delivery> deliveries) {
    co_await db.insert_event(e, deliveries);
}

/// Returns the ids of `pending`, in order.
inline std::vector<std::string> delivery_ids(std::vector<pending_delivery> const& pending) {
    std::vector<std::string> ids;
    for (auto const& p : pending) {
        ids.push_back(p.message.id);
    }
    return ids;
}

/// Returns an API key of workspace `ws_a` whose digest is derived from `id`, so that distinct ids
/// have distinct digests. Stores do not check the digest's form.
inline api_key make_key(std::string id, unix_ms created_at = 1'760'000'000'000) {
    auto digest = "sha256_of_" + id;
    return api_key{.id = std::move(id),
                   .workspace = "ws_a",
                   .digest = std::move(digest),
                   .hint = "rdk_live",
                   .created_at = created_at,
                   .revoked = false};
}

/// Records attempt `number` of the stored delivery `d` with `started_at`, and marks the delivery
/// as pending with `number` attempts. Returns the attempt as the store should list it, with an
/// empty id standing for a generated one (see check_same).
inline asio::awaitable<attempt> record_simple_attempt(store& db, delivery d, std::uint32_t number,
                                                      unix_ms started_at) {
    auto a = make_attempt(d.id, number, 503, started_at);
    d.attempts = number;
    co_await db.record_attempt(a, d);
    a.subscription_id = d.subscription_id;
    a.event_id = d.event_id;
    co_return a;
}

/// Returns the ids of `attempts`, in order.
inline std::vector<std::string> attempt_ids(std::vector<attempt> const& attempts) {
    std::vector<std::string> ids;
    for (auto const& a : attempts) {
        ids.push_back(a.id);
    }
    return ids;
}

/// Returns the ids of `deliveries`, in order.
inline std::vector<std::string> delivery_ids(std::vector<delivery> const& deliveries) {
    std::vector<std::string> ids;
    for (auto const& d : deliveries) {
        ids.push_back(d.id);
    }
    return ids;
}

/// Returns "delivery_id#number" for each attempt, in order.
inline std::vector<std::string> attempt_keys(std::vector<attempt> const& attempts) {
    std::vector<std::string> keys;
    for (auto const& a : attempts) {
        keys.push_back(a.delivery_id + "#" + std::to_string(a.number));
    }
    return keys;
}

} // namespace revdesk::test

struct store_contract_fixture : revdesk::test::coroutine_runner, store_fixture {};

BOOST_FIXTURE_TEST_SUITE(store_contract, store_contract_fixture)

namespace rt = revdesk::test;

BOOST_AUTO_TEST_CASE(insert_subscription_round_trips_all_fields) {
    std::vector<revdesk::subscription> inserted;
    auto plain = rt::make_subscription("whk_plain");
    inserted.push_back(plain);

    auto numbered = rt::make_subscription("whk_numbered");
    numbered.type = revdesk::event_type::call_voicemail;
    numbered.workflow_id = revdesk::scope_id{"9007199254740993", true};
    numbered.created_at += 1;
    inserted.push_back(numbered);

    auto named = rt::make_subscription("whk_named", "ws_b");
    named.type = revdesk::event_type::workflow_contact_completed;
    named.campaign_id = revdesk::scope_id{"camp_spring", false};
    named.created_at += 2;
    inserted.push_back(named);

    auto both = rt::make_subscription("whk_both");
    both.workflow_id = revdesk::scope_id{"42", false};
    both.campaign_id = revdesk::scope_id{"7", true};
    both.webhook_url = "https://receiver.example:8443/a/b?c=d%20e";
    both.created_at += 3;
    inserted.push_back(both);

    auto disabled = rt::make_subscription("whk_disabled");
    disabled.enabled = false;
    disabled.created_at += 4;
    inserted.push_back(disabled);

    for (auto const& s : inserted) {
        run(db().insert_subscription(s));
    }
    auto loaded = run(db().load_subscriptions());

    BOOST_TEST_REQUIRE(loaded.size() == inserted.size());
    for (std::size_t i = 0; i < inserted.size(); ++i) {
        rt::check_same(inserted[i], loaded[i]);
    }
}

BOOST_AUTO_TEST_CASE(load_subscriptions_orders_by_created_at_then_id) {
    auto late = rt::make_subscription("whk_a_late");
    late.created_at = 3000;
    auto early_b = rt::make_subscription("whk_b_early");
    early_b.created_at = 1000;
    auto early_a = rt::make_subscription("whk_a_early");
    early_a.created_at = 1000;
    run(db().insert_subscription(late));
    run(db().insert_subscription(early_b));
    run(db().insert_subscription(early_a));

    std::vector<std::string> ids;
    for (auto const& s : run(db().load_subscriptions())) {
        ids.push_back(s.id);
    }

    std::vector<std::string> expected{"whk_a_early", "whk_b_early", "whk_a_late"};
    BOOST_TEST(ids == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(load_subscriptions_empty_store_returns_nothing) {
    BOOST_TEST(run(db().load_subscriptions()).empty());
}

BOOST_AUTO_TEST_CASE(insert_subscription_duplicate_id_throws) {
    auto first = rt::make_subscription("whk_same");
    run(db().insert_subscription(first));

    auto second = rt::make_subscription("whk_same");
    second.webhook_url = "https://other.example/";
    BOOST_CHECK_THROW(run(db().insert_subscription(second)), std::runtime_error);

    auto loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    BOOST_TEST(loaded[0].webhook_url == first.webhook_url);
}

BOOST_AUTO_TEST_CASE(update_subscription_replaces_fields) {
    auto original = rt::make_subscription("whk_1");
    original.workflow_id = revdesk::scope_id{"5", true};
    run(db().insert_subscription(original));

    auto changed = original;
    changed.webhook_url = "https://new.example/hook";
    changed.type = revdesk::event_type::sms_failed;
    changed.workflow_id.reset();
    changed.campaign_id = revdesk::scope_id{"c-9", false};
    changed.secret = "whsec_rotated";
    BOOST_TEST(run(db().update_subscription(changed)));

    auto loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    rt::check_same(changed, loaded[0]);
}

BOOST_AUTO_TEST_CASE(update_subscription_unknown_or_foreign_returns_false) {
    auto original = rt::make_subscription("whk_1", "ws_a");
    run(db().insert_subscription(original));

    struct row {
        std::string_view name;
        std::string id;
        std::string workspace;
    };
    for (auto const& [name, id, workspace] :
         {row{"unknown id", "whk_missing", "ws_a"}, row{"other workspace", "whk_1", "ws_b"}}) {
        BOOST_TEST_CONTEXT(name) {
            auto changed = original;
            changed.id = id;
            changed.workspace = workspace;
            changed.webhook_url = "https://attacker.example/";
            BOOST_TEST(!run(db().update_subscription(changed)));

            auto loaded = run(db().load_subscriptions());
            BOOST_TEST_REQUIRE(loaded.size() == 1u);
            rt::check_same(original, loaded[0]);
        }
    }
}

BOOST_AUTO_TEST_CASE(update_subscription_disabling_cancels_pending) {
    run(db().insert_subscription(rt::make_subscription("whk_gone")));
    run(db().insert_subscription(rt::make_subscription("whk_kept")));
    run(db().insert_event(rt::make_event("evt_1"),
                          {rt::make_delivery("msg_gone", "evt_1", "whk_gone"),
                           rt::make_delivery("msg_kept", "evt_1", "whk_kept")}));

    auto moved = rt::make_subscription("whk_kept");
    moved.webhook_url = "https://moved.example/";
    BOOST_TEST(run(db().update_subscription(moved)));
    auto disabled = rt::make_subscription("whk_gone");
    disabled.enabled = false;
    BOOST_TEST(run(db().update_subscription(disabled)));

    auto ids = rt::delivery_ids(run(db().load_pending()));
    std::vector<std::string> expected{"msg_kept"};
    BOOST_TEST(ids == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(erase_subscription_removes_it) {
    run(db().insert_subscription(rt::make_subscription("whk_1")));
    run(db().insert_subscription(rt::make_subscription("whk_2")));

    BOOST_TEST(run(db().erase_subscription("ws_a", "whk_1")));

    auto loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    BOOST_TEST(loaded[0].id == "whk_2");
    BOOST_TEST(!run(db().erase_subscription("ws_a", "whk_1")));
}

BOOST_AUTO_TEST_CASE(erase_subscription_wrong_workspace_keeps_everything) {
    run(db().insert_subscription(rt::make_subscription("whk_1", "ws_a")));
    run(db().insert_event(rt::make_event("evt_1"), {rt::make_delivery("msg_1", "evt_1", "whk_1")}));

    BOOST_TEST(!run(db().erase_subscription("ws_b", "whk_1")));
    BOOST_TEST(!run(db().erase_subscription("ws_a", "whk_unknown")));

    auto loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    BOOST_TEST(loaded[0].id == "whk_1");
    auto ids = rt::delivery_ids(run(db().load_pending()));
    std::vector<std::string> expected{"msg_1"};
    BOOST_TEST(ids == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(erase_subscription_cancels_pending_deliveries) {
    run(db().insert_subscription(rt::make_subscription("whk_erased")));
    run(db().insert_subscription(rt::make_subscription("whk_other")));
    run(db().insert_event(rt::make_event("evt_1"),
                          {rt::make_delivery("msg_erased_1", "evt_1", "whk_erased", 100),
                           rt::make_delivery("msg_other", "evt_1", "whk_other", 200)}));
    run(db().insert_event(rt::make_event("evt_2"),
                          {rt::make_delivery("msg_erased_2", "evt_2", "whk_erased", 300)}));

    BOOST_TEST(run(db().erase_subscription("ws_a", "whk_erased")));

    auto ids = rt::delivery_ids(run(db().load_pending()));
    std::vector<std::string> expected{"msg_other"};
    BOOST_TEST(ids == expected, boost::test_tools::per_element());

    // The result of an attempt that was in flight may still be recorded afterwards.
    auto late = rt::make_delivery("msg_erased_1", "evt_1", "whk_erased", 100);
    late.state = revdesk::delivery_state::failed;
    late.attempts = 1;
    run(db().record_attempt(rt::make_attempt("msg_erased_1", 1, 500, 150), late));
    BOOST_TEST(rt::delivery_ids(run(db().load_pending())) == expected,
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(insert_event_keeps_payload_bytes) {
    std::string high_bytes = "{\"raw\":\"";
    for (int byte = 1; byte < 256; ++byte) {
        high_bytes.push_back(static_cast<char>(byte));
    }
    high_bytes += "\"}";
    std::string large = "{\"items\":[";
    while (large.size() < (1u << 20)) {
        large += "{\"n\":12345678901234567890,\"s\":\"\xC3\xA9\xE2\x80\xA8\"},";
    }
    large += "null]}";

    struct row {
        std::string_view name;
        std::string payload;
    };
    std::vector<row> rows{
        {"ASCII JSON", R"({"id":"call_abc123","status":"completed","duration":42})"},
        {"non-ASCII letters",
         "{\"name\":\"Zo\xC3\xAB \xC3\x85ngstr\xC3\xB6m \xE6\x97\xA5\xE6\x9C\xAC\"}"},
        {"raw U+2028 and U+2029", "{\"note\":\"a\xE2\x80\xA8"
                                  "b\xE2\x80\xA9"
                                  "c\"}"},
        {"escaped U+2028", R"({"note":"a\u2028b\ud83d\ude00"})"},
        {"emoji", "{\"mood\":\"\xF0\x9F\x98\x80\xF0\x9F\x93\x9E\"}"},
        {"every byte but NUL", high_bytes},
        {"whitespace and order kept", "{ \"b\" :\t1 ,\r\n \"a\":[ ] }\n"},
        {"empty", ""},
        {"one MiB", large},
    };

    run(db().insert_subscription(rt::make_subscription("whk_1")));
    std::vector<revdesk::event> events;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i), rows[i].payload);
        auto d = rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1",
                                   1000 + static_cast<revdesk::unix_ms>(i));
        run(db().insert_event(e, {d}));
        events.push_back(e);
    }

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        BOOST_TEST_CONTEXT(rows[i].name) {
            rt::check_same(events[i], pending[i].source);
        }
    }
}

BOOST_AUTO_TEST_CASE(insert_event_round_trips_event_and_delivery) {
    run(db().insert_subscription(rt::make_subscription("whk_1")));

    auto e = rt::make_event("evt_scoped");
    e.workspace = "ws_z";
    e.type = revdesk::event_type::call_completed;
    e.workflow_id = revdesk::scope_id{"9007199254740993", true};
    e.campaign_id = revdesk::scope_id{"spring-2026", false};
    e.created_at = 1'767'225'600'123;
    auto d = rt::make_delivery("msg_1", e.id, "whk_1", 1'767'225'601'000);
    d.type = revdesk::event_type::call_voicemail;
    d.attempts = 3;
    run(db().insert_event(e, {d}));

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    rt::check_same(d, pending[0].message);
    rt::check_same(e, pending[0].source);
}

BOOST_AUTO_TEST_CASE(insert_event_fans_out_to_each_delivery) {
    auto e = rt::make_event("evt_1");
    std::vector<revdesk::delivery> deliveries;
    for (int i = 0; i < 5; ++i) {
        deliveries.push_back(rt::make_delivery("msg_" + std::to_string(i), e.id,
                                               "whk_" + std::to_string(i), 1000 + i));
    }
    run(db().insert_event(e, deliveries));

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == deliveries.size());
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
        rt::check_same(deliveries[i], pending[i].message);
        rt::check_same(e, pending[i].source);
    }
}

BOOST_AUTO_TEST_CASE(insert_event_without_deliveries_loads_nothing) {
    run(db().insert_event(rt::make_event("evt_alone"), {}));

    BOOST_TEST(run(db().load_pending()).empty());
    // The event was stored, so its id cannot be inserted twice.
    BOOST_CHECK_THROW(run(db().insert_event(rt::make_event("evt_alone"), {})), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(insert_event_duplicate_event_id_throws) {
    run(db().insert_event(rt::make_event("evt_1"), {rt::make_delivery("msg_1", "evt_1", "whk_1")}));

    BOOST_CHECK_THROW(run(db().insert_event(rt::make_event("evt_1", "{}"),
                                            {rt::make_delivery("msg_2", "evt_1", "whk_1")})),
                      std::runtime_error);

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    BOOST_TEST(pending[0].message.id == "msg_1");
    BOOST_TEST(pending[0].source.payload == rt::make_event("evt_1").payload);
}

BOOST_AUTO_TEST_CASE(insert_event_failed_delivery_stores_nothing) {
    run(db().insert_event(rt::make_event("evt_1"), {rt::make_delivery("msg_1", "evt_1", "whk_1")}));

    struct row {
        std::string_view name;
        std::vector<revdesk::delivery> deliveries;
    };
    std::vector<row> rows{
        {"delivery id already stored",
         {rt::make_delivery("msg_new", "evt_2", "whk_1"),
          rt::make_delivery("msg_1", "evt_2", "whk_2")}},
        {"delivery id twice in the call",
         {rt::make_delivery("msg_twice", "evt_2", "whk_1"),
          rt::make_delivery("msg_twice", "evt_2", "whk_2")}},
        {"delivery of another event",
         {rt::make_delivery("msg_new", "evt_2", "whk_1"),
          rt::make_delivery("msg_other", "evt_1", "whk_2")}},
    };
    for (auto const& [name, deliveries] : rows) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_CHECK_THROW(run(db().insert_event(rt::make_event("evt_2"), deliveries)),
                              std::runtime_error);
            auto ids = rt::delivery_ids(run(db().load_pending()));
            std::vector<std::string> expected{"msg_1"};
            BOOST_TEST(ids == expected, boost::test_tools::per_element());
        }
    }

    // Nothing of evt_2 was stored, so it can be inserted now.
    run(db().insert_event(rt::make_event("evt_2"), {rt::make_delivery("msg_2", "evt_2", "whk_1")}));
    BOOST_TEST(run(db().load_pending()).size() == 2u);
}

BOOST_AUTO_TEST_CASE(load_pending_orders_by_next_attempt_then_insertion) {
    run(db().insert_event(rt::make_event("evt_1"),
                          {rt::make_delivery("msg_300", "evt_1", "whk_1", 300),
                           rt::make_delivery("msg_100_first", "evt_1", "whk_2", 100)}));
    run(db().insert_event(rt::make_event("evt_2"),
                          {rt::make_delivery("msg_200", "evt_2", "whk_1", 200),
                           rt::make_delivery("msg_100_second", "evt_2", "whk_2", 100)}));
    run(db().insert_event(rt::make_event("evt_3"),
                          {rt::make_delivery("msg_050", "evt_3", "whk_1", 50)}));

    auto ids = rt::delivery_ids(run(db().load_pending()));

    std::vector<std::string> expected{"msg_050", "msg_100_first", "msg_100_second", "msg_200",
                                      "msg_300"};
    BOOST_TEST(ids == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(record_attempt_updates_delivery) {
    auto e = rt::make_event("evt_1");
    auto d = rt::make_delivery("msg_1", e.id, "whk_1", 1000);
    run(db().insert_event(e, {d}));

    auto retried = d;
    retried.attempts = 1;
    retried.next_attempt_at = 6000;
    revdesk::attempt first{.delivery_id = d.id,
                           .number = 1,
                           .started_at = 1000,
                           .duration_ms = 30'000,
                           .status = 0,
                           .error = "timeout",
                           .response_body = "",
                           .id = "",
                           .subscription_id = d.subscription_id,
                           .event_id = d.event_id};
    run(db().record_attempt(first, retried));

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    rt::check_same(retried, pending[0].message);

    auto delivered = retried;
    delivered.state = revdesk::delivery_state::delivered;
    delivered.attempts = 2;
    revdesk::attempt second{.delivery_id = d.id,
                            .number = 2,
                            .started_at = 6000,
                            .duration_ms = 12,
                            .status = 204,
                            .error = "",
                            .response_body = "",
                            .id = "",
                            .subscription_id = d.subscription_id,
                            .event_id = d.event_id};
    run(db().record_attempt(second, delivered));

    BOOST_TEST(run(db().load_pending()).empty());
    auto attempts = run(db().list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(attempts.size() == 2u);
    rt::check_same(second, attempts[0]);
    rt::check_same(first, attempts[1]);
}

BOOST_AUTO_TEST_CASE(record_attempt_final_states_leave_pending) {
    struct row {
        std::string_view name;
        revdesk::delivery_state state;
    };
    for (auto const& [name, state] : {row{"delivered", revdesk::delivery_state::delivered},
                                      row{"failed", revdesk::delivery_state::failed},
                                      row{"cancelled", revdesk::delivery_state::cancelled}}) {
        BOOST_TEST_CONTEXT(name) {
            auto event_id = "evt_" + std::string(name);
            auto d = rt::make_delivery("msg_" + std::string(name), event_id, "whk_1");
            run(db().insert_event(rt::make_event(event_id), {d}));
            BOOST_TEST(rt::delivery_ids(run(db().load_pending())).size() == 1u);

            auto updated = d;
            updated.state = state;
            updated.attempts = 1;
            run(db().record_attempt(rt::make_attempt(d.id, 1, 410), updated));
            BOOST_TEST(run(db().load_pending()).empty());
        }
    }
}

BOOST_AUTO_TEST_CASE(record_attempt_invalid_input_throws) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));

    auto unknown = rt::make_delivery("msg_unknown", "evt_1", "whk_1");
    BOOST_CHECK_THROW(run(db().record_attempt(rt::make_attempt("msg_unknown", 1), unknown)),
                      std::runtime_error);

    auto moved = d;
    moved.attempts = 1;
    BOOST_CHECK_THROW(run(db().record_attempt(rt::make_attempt("msg_other", 1), moved)),
                      std::runtime_error);

    BOOST_TEST(run(db().list_attempts("whk_1", 10)).empty());
    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    rt::check_same(d, pending[0].message);
}

BOOST_AUTO_TEST_CASE(list_attempts_newest_first_with_limit) {
    run(db().insert_event(rt::make_event("evt_1"),
                          {rt::make_delivery("msg_a1", "evt_1", "whk_a"),
                           rt::make_delivery("msg_a2", "evt_1", "whk_a"),
                           rt::make_delivery("msg_b1", "evt_1", "whk_b")}));

    auto record = [&](std::string delivery_id, std::string subscription_id, std::uint32_t number,
                      revdesk::unix_ms started_at) {
        auto updated = rt::make_delivery(delivery_id, "evt_1", subscription_id);
        updated.attempts = number;
        revdesk::attempt a{.delivery_id = delivery_id,
                           .number = number,
                           .started_at = started_at,
                           .duration_ms = 7 * number,
                           .status = 503,
                           .error = "",
                           .response_body = "busy \xE2\x80\xA8 \xF0\x9F\x98\x80",
                           .id = "",
                           .subscription_id = subscription_id,
                           .event_id = "evt_1"};
        run(db().record_attempt(a, updated));
        return a;
    };
    auto a1_first = record("msg_a1", "whk_a", 1, 1000);
    record("msg_a2", "whk_a", 1, 3000);
    record("msg_a1", "whk_a", 2, 2000);
    record("msg_b1", "whk_b", 1, 4000);
    auto a2_second = record("msg_a2", "whk_a", 2, 3000);

    auto all = run(db().list_attempts("whk_a", 100));
    std::vector<std::string> expected{"msg_a2#2", "msg_a2#1", "msg_a1#2", "msg_a1#1"};
    BOOST_TEST(rt::attempt_keys(all) == expected, boost::test_tools::per_element());
    BOOST_TEST_REQUIRE(all.size() == 4u);
    rt::check_same(a2_second, all[0]);
    rt::check_same(a1_first, all[3]);

    struct row {
        std::size_t limit;
        std::size_t expected_size;
    };
    for (auto [limit, expected_size] : {row{0, 0}, row{1, 1}, row{3, 3}, row{4, 4}, row{5, 4},
                                        row{static_cast<std::size_t>(-1), 4}}) {
        BOOST_TEST_CONTEXT("limit " << limit) {
            auto limited = run(db().list_attempts("whk_a", limit));
            std::vector<std::string> prefix(expected.begin(),
                                            expected.begin() + static_cast<long>(expected_size));
            BOOST_TEST(rt::attempt_keys(limited) == prefix, boost::test_tools::per_element());
        }
    }

    std::vector<std::string> other{"msg_b1#1"};
    BOOST_TEST(rt::attempt_keys(run(db().list_attempts("whk_b", 10))) == other,
               boost::test_tools::per_element());
    BOOST_TEST(run(db().list_attempts("whk_unknown", 10)).empty());
}

BOOST_AUTO_TEST_CASE(insert_event_concurrent_callers_all_stored) {
    constexpr int writers = 100;
    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < writers; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        auto d = rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1", i);
        ops.push_back(rt::insert_event_copy(db(), e, {d}));
    }
    auto errors = run_concurrently(std::move(ops));

    for (int i = 0; i < writers; ++i) {
        BOOST_TEST_CONTEXT("writer " << i) {
            BOOST_TEST(rt::message_of(errors[static_cast<std::size_t>(i)]) == "");
        }
    }
    auto ids = rt::delivery_ids(run(db().load_pending()));
    BOOST_TEST_REQUIRE(ids.size() == static_cast<std::size_t>(writers));
    for (int i = 0; i < writers; ++i) {
        BOOST_TEST(ids[static_cast<std::size_t>(i)] == "msg_" + std::to_string(i));
    }
}

BOOST_AUTO_TEST_CASE(update_subscription_round_trips_rotation_fields) {
    auto original = rt::make_subscription("whk_1");
    original.updated_at = original.created_at;
    run(db().insert_subscription(original));
    auto loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    rt::check_same(original, loaded[0]);

    auto rotated = original;
    rotated.previous_secret = original.secret;
    rotated.secret = "whsec_c2Vjb25kIHNlY3JldCBieXRlcyBmb3IgdGVzdA==";
    rotated.previous_secret_expires_at = 1'760'086'400'000;
    rotated.updated_at = 1'760'000'400'000;
    BOOST_TEST(run(db().update_subscription(rotated)));

    loaded = run(db().load_subscriptions());
    BOOST_TEST_REQUIRE(loaded.size() == 1u);
    rt::check_same(rotated, loaded[0]);
}

BOOST_AUTO_TEST_CASE(find_event_returns_only_own_workspace) {
    auto e = rt::make_event("evt_1");
    e.idempotency_key = "order-1001";
    e.response = R"({"id":"evt_1","deliveries":1})";
    e.workflow_id = revdesk::scope_id{"77", true};
    run(db().insert_event(e, {rt::make_delivery("msg_1", e.id, "whk_1")}));
    run(db().insert_event(rt::make_event("evt_plain"), {}));

    auto found = run(db().find_event("ws_a", "evt_1"));
    BOOST_TEST_REQUIRE(found.has_value());
    rt::check_same(e, *found);
    auto plain = run(db().find_event("ws_a", "evt_plain"));
    BOOST_TEST_REQUIRE(plain.has_value());
    rt::check_same(rt::make_event("evt_plain"), *plain);

    struct row {
        std::string_view name;
        std::string workspace;
        std::string id;
    };
    for (auto const& [name, workspace, id] :
         {row{"other workspace", "ws_b", "evt_1"}, row{"unknown id", "ws_a", "evt_missing"},
          row{"empty id", "ws_a", ""}}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(!run(db().find_event(workspace, id)).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(load_pending_returns_idempotency_fields) {
    auto e = rt::make_event("evt_1");
    e.idempotency_key = "order-1001";
    e.response = R"({"id":"evt_1"})";
    run(db().insert_event(e, {rt::make_delivery("msg_1", e.id, "whk_1")}));

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    rt::check_same(e, pending[0].source);
}

BOOST_AUTO_TEST_CASE(find_event_by_idempotency_key_respects_window) {
    auto e = rt::make_event("evt_keyed");
    e.idempotency_key = "order-1001";
    e.response = R"({"id":"evt_keyed"})";
    e.created_at = 50'000;
    run(db().insert_event(e, {}));
    run(db().insert_event(rt::make_event("evt_unkeyed"), {}));

    struct row {
        std::string_view name;
        std::string workspace;
        std::string key;
        revdesk::unix_ms not_before;
        bool found;
    };
    for (auto const& [name, workspace, key, not_before, found] : {
             row{"inside the window", "ws_a", "order-1001", 10'000, true},
             row{"created exactly at not_before", "ws_a", "order-1001", 50'000, true},
             row{"created before not_before", "ws_a", "order-1001", 50'001, false},
             row{"other workspace", "ws_b", "order-1001", 0, false},
             row{"other key", "ws_a", "order-1002", 0, false},
             row{"key differs in case", "ws_a", "ORDER-1001", 0, false},
             row{"empty key", "ws_a", "", 0, false},
         }) {
        BOOST_TEST_CONTEXT(name) {
            auto result = run(db().find_event_by_idempotency_key(workspace, key, not_before));
            BOOST_TEST(result.has_value() == found);
            if (result && found) {
                rt::check_same(e, *result);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(insert_event_duplicate_idempotency_key_throws) {
    auto first = rt::make_event("evt_first");
    first.idempotency_key = "order-1001";
    first.response = R"({"id":"evt_first"})";
    run(db().insert_event(first, {rt::make_delivery("msg_first", first.id, "whk_1")}));

    auto second = rt::make_event("evt_second");
    second.idempotency_key = "order-1001";
    second.response = R"({"id":"evt_second"})";
    try {
        run(db().insert_event(second, {rt::make_delivery("msg_second", second.id, "whk_1")}));
        BOOST_ERROR("a second event with the same key was stored");
    } catch (revdesk::duplicate_key_error const& e) {
        BOOST_TEST(e.existing_event_id() == "evt_first");
        BOOST_TEST(std::string(e.what()).find("order-1001") != std::string::npos, e.what());
    }

    // Nothing of the rejected event was stored.
    BOOST_TEST(!run(db().find_event("ws_a", "evt_second")).has_value());
    std::vector<std::string> expected{"msg_first"};
    BOOST_TEST(rt::delivery_ids(run(db().load_pending())) == expected,
               boost::test_tools::per_element());
    auto holder = run(db().find_event_by_idempotency_key("ws_a", "order-1001", 0));
    BOOST_TEST_REQUIRE(holder.has_value());
    rt::check_same(first, *holder);

    // The key is per workspace, and events without a key never collide.
    auto other_workspace = second;
    other_workspace.workspace = "ws_b";
    run(db().insert_event(other_workspace, {}));
    run(db().insert_event(rt::make_event("evt_unkeyed_1"), {}));
    run(db().insert_event(rt::make_event("evt_unkeyed_2"), {}));
    auto found = run(db().find_event_by_idempotency_key("ws_b", "order-1001", 0));
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->id == "evt_second");
}

BOOST_AUTO_TEST_CASE(insert_event_concurrent_same_key_one_wins) {
    constexpr int writers = 20;
    std::vector<asio::awaitable<void>> ops;
    for (int i = 0; i < writers; ++i) {
        auto e = rt::make_event("evt_" + std::to_string(i));
        e.idempotency_key = "retried-request";
        e.response = R"({"writer":)" + std::to_string(i) + "}";
        ops.push_back(rt::insert_event_copy(
            db(), e, {rt::make_delivery("msg_" + std::to_string(i), e.id, "whk_1")}));
    }
    auto errors = run_concurrently(std::move(ops));

    auto winner = run(db().find_event_by_idempotency_key("ws_a", "retried-request", 0));
    BOOST_TEST_REQUIRE(winner.has_value());
    int succeeded = 0;
    for (int i = 0; i < writers; ++i) {
        BOOST_TEST_CONTEXT("writer " << i) {
            auto const& error = errors[static_cast<std::size_t>(i)];
            if (!error) {
                ++succeeded;
                BOOST_TEST(winner->id == "evt_" + std::to_string(i));
                continue;
            }
            try {
                std::rethrow_exception(error);
            } catch (revdesk::duplicate_key_error const& e) {
                BOOST_TEST(e.existing_event_id() == winner->id);
            } catch (...) {
                BOOST_ERROR("expected duplicate_key_error, got: " << rt::message_of(error));
            }
        }
    }
    BOOST_TEST(succeeded == 1);
    BOOST_TEST(run(db().load_pending()).size() == 1u);
}

BOOST_AUTO_TEST_CASE(release_idempotency_keys_frees_old_keys) {
    auto old_event = rt::make_event("evt_old");
    old_event.idempotency_key = "order-old";
    old_event.response = R"({"id":"evt_old"})";
    old_event.created_at = 1000;
    auto recent = rt::make_event("evt_recent");
    recent.idempotency_key = "order-recent";
    recent.response = R"({"id":"evt_recent"})";
    recent.created_at = 5000;
    auto unkeyed = rt::make_event("evt_unkeyed");
    unkeyed.created_at = 1000;
    run(db().insert_event(old_event, {}));
    run(db().insert_event(recent, {}));
    run(db().insert_event(unkeyed, {}));

    BOOST_TEST(run(db().release_idempotency_keys(5000)) == 1u);
    BOOST_TEST(run(db().release_idempotency_keys(5000)) == 0u);

    auto released = run(db().find_event("ws_a", "evt_old"));
    BOOST_TEST_REQUIRE(released.has_value());
    BOOST_TEST(!released->idempotency_key.has_value());
    BOOST_TEST(released->response == "");
    BOOST_TEST(released->payload == old_event.payload);
    BOOST_TEST(!run(db().find_event_by_idempotency_key("ws_a", "order-old", 0)).has_value());
    auto kept = run(db().find_event_by_idempotency_key("ws_a", "order-recent", 0));
    BOOST_TEST_REQUIRE(kept.has_value());
    rt::check_same(recent, *kept);

    // The released key may be used again, while the kept one still rejects a second event.
    auto reuse = rt::make_event("evt_reuse");
    reuse.idempotency_key = "order-old";
    run(db().insert_event(reuse, {}));
    auto found = run(db().find_event_by_idempotency_key("ws_a", "order-old", 0));
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->id == "evt_reuse");
    auto repeat = rt::make_event("evt_repeat");
    repeat.idempotency_key = "order-recent";
    BOOST_CHECK_THROW(run(db().insert_event(repeat, {})), revdesk::duplicate_key_error);
}

BOOST_AUTO_TEST_CASE(list_deliveries_returns_current_state_in_order) {
    auto d1 = rt::make_delivery("msg_z", "evt_1", "whk_1", 300);
    auto d2 = rt::make_delivery("msg_a", "evt_1", "whk_2", 100);
    run(db().insert_event(rt::make_event("evt_1"), {d1, d2}));
    run(db().insert_event(rt::make_event("evt_2"),
                          {rt::make_delivery("msg_other", "evt_2", "whk_1")}));

    auto delivered = d2;
    delivered.state = revdesk::delivery_state::delivered;
    delivered.attempts = 1;
    run(db().record_attempt(rt::make_attempt(d2.id, 1, 200, 100), delivered));

    auto listed = run(db().list_deliveries("evt_1"));
    BOOST_TEST_REQUIRE(listed.size() == 2u);
    rt::check_same(d1, listed[0]);
    rt::check_same(delivered, listed[1]);
    BOOST_TEST(run(db().list_deliveries("evt_missing")).empty());
}

BOOST_AUTO_TEST_CASE(insert_deliveries_adds_redeliveries) {
    auto e = rt::make_event("evt_1");
    auto original = rt::make_delivery("msg_1", e.id, "whk_1", 100);
    run(db().insert_event(e, {original}));
    auto failed = original;
    failed.state = revdesk::delivery_state::failed;
    failed.attempts = 8;
    run(db().record_attempt(rt::make_attempt(original.id, 8, 500, 100), failed));
    BOOST_TEST(run(db().load_pending()).empty());

    auto again = rt::make_delivery("msg_2", e.id, "whk_1", 900);
    auto elsewhere = rt::make_delivery("msg_3", e.id, "whk_2", 800);
    run(db().insert_deliveries({again, elsewhere}));
    run(db().insert_deliveries({}));

    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 2u);
    rt::check_same(elsewhere, pending[0].message);
    rt::check_same(again, pending[1].message);
    rt::check_same(e, pending[1].source);
    std::vector<std::string> expected{"msg_1", "msg_2", "msg_3"};
    BOOST_TEST(rt::delivery_ids(run(db().list_deliveries(e.id))) == expected,
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(insert_deliveries_invalid_input_stores_nothing) {
    run(db().insert_event(rt::make_event("evt_1"), {rt::make_delivery("msg_1", "evt_1", "whk_1")}));

    struct row {
        std::string_view name;
        std::vector<revdesk::delivery> deliveries;
        std::string expected_message;
    };
    std::vector<row> rows{
        {"unknown event",
         {rt::make_delivery("msg_new", "evt_1", "whk_1"),
          rt::make_delivery("msg_lost", "evt_missing", "whk_1")},
         "evt_missing"},
        {"delivery id already stored",
         {rt::make_delivery("msg_new", "evt_1", "whk_1"),
          rt::make_delivery("msg_1", "evt_1", "whk_2")},
         ""},
        {"delivery id twice in the call",
         {rt::make_delivery("msg_twice", "evt_1", "whk_1"),
          rt::make_delivery("msg_twice", "evt_1", "whk_2")},
         ""},
    };
    for (auto const& [name, deliveries, expected_message] : rows) {
        BOOST_TEST_CONTEXT(name) {
            try {
                run(db().insert_deliveries(deliveries));
                BOOST_ERROR("insert_deliveries did not throw");
            } catch (std::runtime_error const& e) {
                BOOST_TEST(std::string(e.what()).find(expected_message) != std::string::npos,
                           e.what());
            }
            std::vector<std::string> expected{"msg_1"};
            BOOST_TEST(rt::delivery_ids(run(db().list_deliveries("evt_1"))) == expected,
                       boost::test_tools::per_element());
            BOOST_TEST(rt::delivery_ids(run(db().load_pending())) == expected,
                       boost::test_tools::per_element());
        }
    }
}

BOOST_AUTO_TEST_CASE(record_attempt_generates_unique_ids) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));

    // The caller leaves id, subscription_id and event_id empty; the store fills them.
    std::vector<revdesk::attempt> expected;
    for (std::uint32_t number = 1; number <= 3; ++number) {
        auto a = rt::make_attempt(d.id, number, 503, 1000 * number);
        auto updated = d;
        updated.attempts = number;
        run(db().record_attempt(a, updated));
        a.subscription_id = "whk_1";
        a.event_id = "evt_1";
        expected.insert(expected.begin(), a);
    }

    auto listed = run(db().list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(listed.size() == expected.size());
    for (std::size_t i = 0; i < listed.size(); ++i) {
        rt::check_same(expected[i], listed[i]);
    }
    auto ids = rt::attempt_ids(listed);
    BOOST_TEST(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
    // Generated ids follow insertion order.
    BOOST_TEST(std::is_sorted(ids.rbegin(), ids.rend()));
}

BOOST_AUTO_TEST_CASE(record_attempt_keeps_caller_id) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));

    auto a = rt::make_attempt(d.id, 1, 500, 1000);
    a.id = "att_from_caller";
    a.subscription_id = "whk_1";
    a.event_id = "evt_1";
    auto updated = d;
    updated.attempts = 1;
    run(db().record_attempt(a, updated));

    auto repeated = rt::make_attempt(d.id, 2, 500, 2000);
    repeated.id = "att_from_caller";
    auto twice = d;
    twice.attempts = 2;
    BOOST_CHECK_THROW(run(db().record_attempt(repeated, twice)), std::runtime_error);

    // Ids of the generated form are reserved, so a generated id never collides with a caller's.
    auto reserved = rt::make_attempt(d.id, 2, 500, 2000);
    reserved.id = "att_0000000000000009";
    BOOST_CHECK_THROW(run(db().record_attempt(reserved, twice)), std::runtime_error);

    auto listed = run(db().list_attempts("whk_1", 10));
    BOOST_TEST_REQUIRE(listed.size() == 1u);
    rt::check_same(a, listed[0]);
    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    BOOST_TEST(pending[0].message.attempts == 1u);
}

BOOST_AUTO_TEST_CASE(record_attempt_wrong_owner_throws) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));
    auto updated = d;
    updated.attempts = 1;

    struct row {
        std::string_view name;
        std::string subscription_id;
        std::string event_id;
    };
    for (auto const& [name, subscription_id, event_id] :
         {row{"other subscription", "whk_2", "evt_1"}, row{"other event", "whk_1", "evt_2"}}) {
        BOOST_TEST_CONTEXT(name) {
            auto a = rt::make_attempt(d.id, 1, 200, 1000);
            a.subscription_id = subscription_id;
            a.event_id = event_id;
            BOOST_CHECK_THROW(run(db().record_attempt(a, updated)), std::runtime_error);
        }
    }
    BOOST_TEST(run(db().list_attempts("whk_1", 10)).empty());
    BOOST_TEST(run(db().list_attempts("whk_2", 10)).empty());
    auto pending = run(db().load_pending());
    BOOST_TEST_REQUIRE(pending.size() == 1u);
    BOOST_TEST(pending[0].message.attempts == 0u);
}

BOOST_AUTO_TEST_CASE(list_attempts_page_walks_every_attempt) {
    auto d1 = rt::make_delivery("msg_1", "evt_1", "whk_1");
    auto d2 = rt::make_delivery("msg_2", "evt_1", "whk_1");
    auto other = rt::make_delivery("msg_3", "evt_1", "whk_2");
    run(db().insert_event(rt::make_event("evt_1"), {d1, d2, other}));
    // Several attempts share a start time, so ties must be broken consistently across pages.
    std::vector<std::pair<revdesk::delivery, revdesk::unix_ms>> plan{
        {d1, 1000}, {d2, 1000}, {d1, 3000}, {other, 2000}, {d2, 2000},
        {d1, 2000}, {d2, 3000}, {d1, 1000}, {d2, 500},
    };
    std::map<std::string, std::uint32_t> numbers;
    for (auto const& [d, started_at] : plan) {
        run(rt::record_simple_attempt(db(), d, ++numbers[d.id], started_at));
    }

    auto all = run(db().list_attempts("whk_1", 100));
    BOOST_TEST_REQUIRE(all.size() == 8u);
    for (std::size_t limit : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                              std::size_t{8}, std::size_t{9}, static_cast<std::size_t>(-1)}) {
        BOOST_TEST_CONTEXT("limit " << limit) {
            std::vector<revdesk::attempt> walked;
            std::optional<std::string> cursor;
            int pages = 0;
            do {
                auto page = run(db().list_attempts_page("whk_1", limit, cursor));
                ++pages;
                BOOST_TEST_REQUIRE(pages <= 9);
                BOOST_TEST(page.items.size() <= limit);
                // A page that is followed by another one is full.
                if (page.next_cursor) {
                    BOOST_TEST(page.items.size() == limit);
                }
                walked.insert(walked.end(), page.items.begin(), page.items.end());
                cursor = page.next_cursor;
            } while (cursor);

            BOOST_TEST(rt::attempt_ids(walked) == rt::attempt_ids(all),
                       boost::test_tools::per_element());
            auto full_pages = all.size() / limit;
            auto expected_pages = full_pages + (all.size() % limit != 0 ? 1 : 0);
            BOOST_TEST(pages == static_cast<int>(expected_pages));
            if (walked.size() == all.size()) {
                for (std::size_t i = 0; i < all.size(); ++i) {
                    rt::check_same(all[i], walked[i]);
                }
            }
        }
    }

    auto empty = run(db().list_attempts_page("whk_unknown", 10, std::nullopt));
    BOOST_TEST(empty.items.empty());
    BOOST_TEST(!empty.next_cursor.has_value());
}

BOOST_AUTO_TEST_CASE(list_attempts_page_cursor_survives_changes) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));
    std::uint32_t number = 0;
    for (revdesk::unix_ms started_at : {1000, 2000, 3000, 4000}) {
        run(rt::record_simple_attempt(db(), d, ++number, started_at));
    }
    auto before = rt::attempt_ids(run(db().list_attempts("whk_1", 10)));
    BOOST_TEST_REQUIRE(before.size() == 4u);

    auto first = run(db().list_attempts_page("whk_1", 2, std::nullopt));
    BOOST_TEST_REQUIRE(first.next_cursor.has_value());
    std::vector<std::string> first_ids(before.begin(), before.begin() + 2);
    BOOST_TEST(rt::attempt_ids(first.items) == first_ids, boost::test_tools::per_element());

    // New attempts, including one that ties with the last attempt of the first page, appear
    // before the cursor's position, so the second page neither shows nor repeats anything.
    run(rt::record_simple_attempt(db(), d, ++number, 5000));
    run(rt::record_simple_attempt(db(), d, ++number, 3000));

    auto second = run(db().list_attempts_page("whk_1", 2, first.next_cursor));
    std::vector<std::string> second_ids(before.begin() + 2, before.end());
    BOOST_TEST(rt::attempt_ids(second.items) == second_ids, boost::test_tools::per_element());
    BOOST_TEST(!second.next_cursor.has_value());

    // A cursor stays usable after the attempt it points at has been purged.
    auto done = d;
    done.state = revdesk::delivery_state::delivered;
    done.attempts = ++number;
    run(db().record_attempt(rt::make_attempt(d.id, number, 204, 6000), done));
    BOOST_TEST(run(db().purge_before(1'900'000'000'000)) == 1u);
    auto after_purge = run(db().list_attempts_page("whk_1", 2, first.next_cursor));
    BOOST_TEST(after_purge.items.empty());
    BOOST_TEST(!after_purge.next_cursor.has_value());
}

BOOST_AUTO_TEST_CASE(list_attempts_page_invalid_cursor_throws) {
    auto d = rt::make_delivery("msg_1", "evt_1", "whk_1");
    run(db().insert_event(rt::make_event("evt_1"), {d}));
    run(rt::record_simple_attempt(db(), d, 1, 1000));
    run(rt::record_simple_attempt(db(), d, 2, 2000));
    auto valid = run(db().list_attempts_page("whk_1", 1, std::nullopt)).next_cursor;
    BOOST_TEST_REQUIRE(valid.has_value());

    struct row {
        std::string_view name;
        std::string cursor;
    };
    std::vector<row> rows{
        {"empty", ""},
        {"not base64url", "not a cursor!"},
        {"standard base64 alphabet", *valid + "+/"},
        {"padding", "MS4y=="},
        {"impossible length", "MS4yM"},
        {"nonzero trailing bits", "MS4yMx"},
        {"no separator", "MTI"},
        {"three numbers", "MS4yLjM"},
        {"not a number", "eC4x"},
        {"negative sequence", "MS4tMQ"},
        {"leading zero", "MDEuMQ"},
        {"negative zero", "LTAuMQ"},
        {"space inside", "MS4gMg"},
        {"sequence out of range", "MS45MjIzMzcyMDM2ODU0Nzc1ODA4"},
        {"truncated valid cursor", valid->substr(0, valid->size() - 1)},
        {"too long", std::string(200, 'A')},
    };
    for (auto const& [name, cursor] : rows) {
        BOOST_TEST_CONTEXT(name << ": '" << cursor << "'") {
            try {
                run(db().list_attempts_page("whk_1", 10, cursor));
                BOOST_ERROR("the cursor was accepted");
            } catch (std::invalid_argument const& e) {
                std::string message = e.what();
                BOOST_TEST(message.find("cursor") != std::string::npos, message);
                BOOST_TEST(message.find("'" + cursor.substr(0, 64)) != std::string::npos, message);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(list_attempts_page_zero_limit_throws) {
    BOOST_CHECK_THROW(run(db().list_attempts_page("whk_1", 0, std::nullopt)),
                      std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(insert_key_round_trips_in_order) {
    auto late = rt::make_key("key_late", 3000);
    late.workspace = "ws_b";
    late.hint = "rdk_9f8e";
    auto early_b = rt::make_key("key_b", 1000);
    auto early_a = rt::make_key("key_a", 1000);
    early_a.revoked = true;
    run(db().insert_key(late));
    run(db().insert_key(early_b));
    run(db().insert_key(early_a));

    auto keys = run(db().load_keys());
    std::vector<revdesk::api_key> expected{early_a, early_b, late};
    BOOST_TEST_REQUIRE(keys.size() == expected.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
        BOOST_TEST_CONTEXT("key " << expected[i].id) {
            BOOST_TEST(keys[i].id == expected[i].id);
            BOOST_TEST(keys[i].workspace == expected[i].workspace);
            BOOST_TEST(keys[i].digest == expected[i].digest);
            BOOST_TEST(keys[i].hint == expected[i].hint);
            BOOST_TEST(keys[i].created_at == expected[i].created_at);
            BOOST_TEST(keys[i].revoked == expected[i].revoked);
        }
    }
    BOOST_TEST(run(db().load_keys()).size() == 3u);
}

BOOST_AUTO_TEST_CASE(insert_key_duplicate_throws) {
    run(db().insert_key(rt::make_key("key_1")));

    auto same_id = rt::make_key("key_1");
    same_id.digest = "sha256_of_something_else";
    auto same_digest = rt::make_key("key_2");
    same_digest.digest = rt::make_key("key_1").digest;
    struct row {
        std::string_view name;
        revdesk::api_key key;
    };
    for (auto const& [name, key] : {row{"same id", same_id}, row{"same digest", same_digest}}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_CHECK_THROW(run(db().insert_key(key)), std::runtime_error);
            auto keys = run(db().load_keys());
            BOOST_TEST_REQUIRE(keys.size() == 1u);
            BOOST_TEST(keys[0].digest == rt::make_key("key_1").digest);
        }
    }
}

BOOST_AUTO_TEST_CASE(revoke_key_marks_only_that_key) {
    run(db().insert_key(rt::make_key("key_1", 1000)));
    run(db().insert_key(rt::make_key("key_2", 2000)));

    BOOST_TEST(run(db().revoke_key("key_1")));
    BOOST_TEST(run(db().revoke_key("key_1")));
    BOOST_TEST(!run(db().revoke_key("key_missing")));

    auto keys = run(db().load_keys());
    BOOST_TEST_REQUIRE(keys.size() == 2u);
    BOOST_TEST(keys[0].revoked);
    BOOST_TEST(!keys[1].revoked);
}

BOOST_AUTO_TEST_CASE(purge_before_deletes_finished_old_events) {
    constexpr revdesk::unix_ms cutoff = 10'000;
    auto finish = [&](revdesk::delivery d, revdesk::delivery_state state) {
        d.state = state;
        d.attempts = 1;
        run(db().record_attempt(rt::make_attempt(d.id, 1, 200, 1000), d));
    };
    auto event_at = [](std::string id, revdesk::unix_ms created_at) {
        auto e = rt::make_event(std::move(id));
        e.created_at = created_at;
        return e;
    };

    // Old and finished in every final state: purged with deliveries and attempts.
    auto old_done = event_at("evt_old_done", 1000);
    old_done.idempotency_key = "order-old";
    auto delivered = rt::make_delivery("msg_delivered", old_done.id, "whk_1");
    auto failed = rt::make_delivery("msg_failed", old_done.id, "whk_2");
    run(db().insert_event(old_done, {delivered, failed}));
    finish(delivered, revdesk::delivery_state::delivered);
    finish(failed, revdesk::delivery_state::failed);
    run(db().insert_subscription(rt::make_subscription("whk_3")));
    auto cancelled = rt::make_delivery("msg_cancelled", "evt_old_cancelled", "whk_3");
    run(db().insert_event(event_at("evt_old_cancelled", 2000), {cancelled}));
    run(db().erase_subscription("ws_a", "whk_3"));
    run(db().insert_event(event_at("evt_old_alone", 3000), {}));

    // Kept: old with one pending delivery left, recent and finished, created at the cutoff.
    auto old_pending = event_at("evt_old_pending", 1000);
    auto pending_done = rt::make_delivery("msg_pending_done", old_pending.id, "whk_1");
    auto still_pending = rt::make_delivery("msg_still_pending", old_pending.id, "whk_2");
    run(db().insert_event(old_pending, {pending_done, still_pending}));
    finish(pending_done, revdesk::delivery_state::delivered);
    auto recent = rt::make_delivery("msg_recent", "evt_recent", "whk_1");
    run(db().insert_event(event_at("evt_recent", 20'000), {recent}));
    finish(recent, revdesk::delivery_state::delivered);
    run(db().insert_event(event_at("evt_at_cutoff", cutoff), {}));

    BOOST_TEST(run(db().purge_before(cutoff)) == 3u);
    BOOST_TEST(run(db().purge_before(cutoff)) == 0u);

    for (auto id : {"evt_old_done", "evt_old_cancelled", "evt_old_alone"}) {
        BOOST_TEST_CONTEXT(id) {
            BOOST_TEST(!run(db().find_event("ws_a", id)).has_value());
            BOOST_TEST(run(db().list_deliveries(id)).empty());
        }
    }
    for (auto id : {"evt_old_pending", "evt_recent", "evt_at_cutoff"}) {
        BOOST_TEST_CONTEXT(id) {
            BOOST_TEST(run(db().find_event("ws_a", id)).has_value());
        }
    }
    BOOST_TEST(run(db().list_deliveries("evt_old_pending")).size() == 2u);
    BOOST_TEST(!run(db().find_event_by_idempotency_key("ws_a", "order-old", 0)).has_value());

    std::vector<std::string> whk_1_attempts{"msg_recent#1", "msg_pending_done#1"};
    BOOST_TEST(rt::attempt_keys(run(db().list_attempts("whk_1", 10))) == whk_1_attempts,
               boost::test_tools::per_element());
    BOOST_TEST(run(db().list_attempts("whk_2", 10)).empty());
    BOOST_TEST(run(db().list_attempts("whk_3", 10)).empty());
    std::vector<std::string> pending{"msg_still_pending"};
    BOOST_TEST(rt::delivery_ids(run(db().load_pending())) == pending,
               boost::test_tools::per_element());

    // A purged delivery's late attempt fails like an unknown one, and its key is free again.
    auto late = delivered;
    late.attempts = 2;
    BOOST_CHECK_THROW(run(db().record_attempt(rt::make_attempt(delivered.id, 2), late)),
                      std::runtime_error);
    auto reuse = rt::make_event("evt_reuse");
    reuse.idempotency_key = "order-old";
    run(db().insert_event(reuse, {}));
}

BOOST_AUTO_TEST_CASE(ping_open_store_returns_true) {
    BOOST_TEST(run(db().ping()));
}

BOOST_AUTO_TEST_SUITE_END()
