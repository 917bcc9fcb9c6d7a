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

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
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

inline void check_same(attempt const& expected, attempt const& actual) {
    BOOST_TEST_CONTEXT("attempt " << expected.number << " of " << expected.delivery_id) {
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
                   .response_body = ""};
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
                           .response_body = ""};
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
                            .response_body = ""};
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
                           .response_body = "busy \xE2\x80\xA8 \xF0\x9F\x98\x80"};
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

BOOST_AUTO_TEST_SUITE_END()
