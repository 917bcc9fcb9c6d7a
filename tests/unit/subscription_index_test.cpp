#include <revdesk/subscription_index.hpp>

#define BOOST_TEST_MODULE subscription_index
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <set>
#include <string>

using revdesk::event_type;
using revdesk::scope_id;
using revdesk::subscription;
using revdesk::subscription_index;

namespace {

subscription make(std::string id, std::string workspace, event_type type,
                  std::optional<std::string> workflow = {},
                  std::optional<std::string> campaign = {}) {
    subscription s;
    s.id = std::move(id);
    s.workspace = std::move(workspace);
    s.webhook_url = "https://example.com/h";
    s.type = type;
    if (workflow) {
        s.workflow_id = scope_id{*workflow, false};
    }
    if (campaign) {
        s.campaign_id = scope_id{*campaign, false};
    }
    return s;
}

std::set<std::string> ids(std::vector<subscription_index::pointer> const& found) {
    std::set<std::string> out;
    for (auto const& s : found) {
        out.insert(s->id);
    }
    return out;
}

std::optional<scope_id> scope(std::string text) {
    return scope_id{std::move(text), false};
}

} // namespace

BOOST_AUTO_TEST_CASE(match_by_workspace_and_type) {
    subscription_index index;
    index.insert(make("a", "w1", event_type::call_completed));
    index.insert(make("b", "w1", event_type::call_completed));
    index.insert(make("c", "w1", event_type::sms_sent));
    index.insert(make("d", "w2", event_type::call_completed));

    BOOST_TEST((ids(index.match("w1", event_type::call_completed, {}, {})) ==
                std::set<std::string>{"a", "b"}));
    BOOST_TEST(
        (ids(index.match("w2", event_type::call_completed, {}, {})) == std::set<std::string>{"d"}));
    BOOST_TEST(index.match("w3", event_type::call_completed, {}, {}).empty());
    BOOST_TEST(index.match("w1", event_type::new_call, {}, {}).empty());
}

BOOST_AUTO_TEST_CASE(match_applies_scopes) {
    subscription_index index;
    index.insert(make("all", "w", event_type::call_completed));
    index.insert(make("wf7", "w", event_type::call_completed, "7"));
    index.insert(make("wf8", "w", event_type::call_completed, "8"));
    index.insert(make("c1", "w", event_type::call_completed, std::nullopt, "c1"));
    index.insert(make("wf7c1", "w", event_type::call_completed, "7", "c1"));

    BOOST_TEST((ids(index.match("w", event_type::call_completed, {}, {})) ==
                std::set<std::string>{"all"}));
    BOOST_TEST((ids(index.match("w", event_type::call_completed, scope("7"), {})) ==
                std::set<std::string>{"all", "wf7"}));
    BOOST_TEST((ids(index.match("w", event_type::call_completed, {}, scope("c1"))) ==
                std::set<std::string>{"all", "c1"}));
    BOOST_TEST((ids(index.match("w", event_type::call_completed, scope("7"), scope("c1"))) ==
                std::set<std::string>{"all", "wf7", "c1", "wf7c1"}));
    BOOST_TEST((ids(index.match("w", event_type::call_completed, scope("8"), scope("c2"))) ==
                std::set<std::string>{"all", "wf8"}));
}

BOOST_AUTO_TEST_CASE(match_compares_scope_text_only) {
    subscription_index index;
    auto s = make("n", "w", event_type::new_call);
    s.workflow_id = scope_id{"42", true};
    index.insert(s);

    BOOST_TEST(index.match("w", event_type::new_call, scope_id{"42", false}, {}).size() == 1u);
    BOOST_TEST(index.match("w", event_type::new_call, scope_id{"042", false}, {}).empty());
}

BOOST_AUTO_TEST_CASE(match_skips_disabled) {
    subscription_index index;
    auto s = make("off", "w", event_type::sms_failed);
    s.enabled = false;
    index.insert(s);
    index.insert(make("on", "w", event_type::sms_failed));

    BOOST_TEST(
        (ids(index.match("w", event_type::sms_failed, {}, {})) == std::set<std::string>{"on"}));
}

BOOST_AUTO_TEST_CASE(erase_removes_only_that_subscription) {
    subscription_index index;
    index.insert(make("a", "w", event_type::call_busy));
    index.insert(make("b", "w", event_type::call_busy));

    BOOST_TEST(index.erase("a") != nullptr);
    BOOST_TEST(index.erase("a") == nullptr);
    BOOST_TEST(index.find("a") == nullptr);
    BOOST_TEST(index.find("b") != nullptr);
    BOOST_TEST(index.size() == 1u);
    BOOST_TEST(
        (ids(index.match("w", event_type::call_busy, {}, {})) == std::set<std::string>{"b"}));
}

BOOST_AUTO_TEST_CASE(insert_replaces_same_id) {
    subscription_index index;
    index.insert(make("a", "w", event_type::call_busy));
    index.insert(make("a", "w", event_type::call_failed));

    BOOST_TEST(index.size() == 1u);
    BOOST_TEST(index.match("w", event_type::call_busy, {}, {}).empty());
    BOOST_TEST(index.match("w", event_type::call_failed, {}, {}).size() == 1u);
}

BOOST_AUTO_TEST_CASE(match_among_100000_subscriptions) {
    subscription_index index;
    for (int i = 0; i < 100'000; ++i) {
        auto type = revdesk::all_event_types[static_cast<std::size_t>(i) % 15];
        index.insert(
            make("s" + std::to_string(i), "ws" + std::to_string(i % 1000), type,
                 i % 3 == 0 ? std::optional<std::string>(std::to_string(i)) : std::nullopt));
    }
    index.insert(make("target1", "special", event_type::contact_created));
    index.insert(make("target2", "special", event_type::contact_created, "wf"));

    BOOST_TEST(index.size() == 100'002u);
    BOOST_TEST((ids(index.match("special", event_type::contact_created, scope("wf"), {})) ==
                std::set<std::string>{"target1", "target2"}));
    BOOST_TEST((ids(index.match("special", event_type::contact_created, {}, {})) ==
                std::set<std::string>{"target1"}));

    // Subscription 3 is in workspace ws3 with type index 3 and workflow "3"; subscriptions
    // 1003, 2003, ... share its workspace and type but are scoped to other workflows or to none.
    auto found = index.match("ws3", revdesk::all_event_types[3], scope("3"), {});
    auto expected_unscoped = 0;
    for (int i = 3; i < 100'000; i += 1000) {
        if (i % 15 == 3 && i % 3 != 0) {
            ++expected_unscoped;
        }
    }
    BOOST_TEST(found.size() == static_cast<std::size_t>(expected_unscoped + 1));
}
