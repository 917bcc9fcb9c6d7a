// Uses a few headers of an installed revdesk-webhooks and checks one fact of each.
#include <revdesk/catalog.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/signing.hpp>

#include <iostream>

int main() {
    auto type = revdesk::parse_event_type("call_completed");
    auto id = revdesk::new_subscription_id();
    auto signature =
        revdesk::sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                      1614265330, R"({"test": 2432232314})");
    bool ok = type == revdesk::event_type::call_completed && id.starts_with("whk_") &&
              signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    std::cout << (ok ? "consumer ok" : "consumer FAILED") << "\n";
    return ok ? 0 : 1;
}
