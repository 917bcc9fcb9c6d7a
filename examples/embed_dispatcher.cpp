// Embeds the revdesk dispatcher in an asio program: subscribe a receiver, publish one event, and
// watch it arrive. The receiver runs in the same program on loopback so the example is
// self-contained; a real receiver would be an https URL elsewhere.

#include <revdesk/dispatcher.hpp>
#include <revdesk/http/server.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/store/memory_store.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>

#include <iostream>

asio::awaitable<void> demo(asio::io_context& io) {
    // 1. A receiver on a loopback port. It prints what it gets and stops the program.
    revdesk::http::server receiver(
        io.get_executor(),
        [&io](revdesk::http::request& r,
              revdesk::http::request_context const&) -> asio::awaitable<revdesk::http::response> {
            std::cout << "received " << *r.headers.find("RevDesk-Event-Type") << ": " << r.body
                      << "\n";
            io.stop();
            revdesk::http::response answer;
            answer.status = 204;
            co_return answer;
        });
    receiver.listen({asio::ip::make_address("127.0.0.1"), 0});
    asio::co_spawn(io, receiver.run(), asio::detached);

    // 2. The dispatcher. Loopback is refused by default; this example allows it explicitly.
    revdesk::address_policy policy;
    policy.allow(*revdesk::cidr::parse("127.0.0.1/32"));
    asio::ssl::context tls(asio::ssl::context::tls_client);
    tls.set_default_verify_paths();
    revdesk::http::client client(io.get_executor(), tls, policy);
    revdesk::memory_store store;
    revdesk::dispatcher_options options;
    options.allow_http = true; // the demo receiver speaks plain HTTP
    revdesk::dispatcher dispatcher(io.get_executor(), store, client, policy, options);
    co_await dispatcher.start();

    // 3. Subscribe the receiver to new calls.
    revdesk::subscription s;
    s.id = revdesk::new_subscription_id();
    s.workspace = "demo";
    s.webhook_url =
        "http://127.0.0.1:" + std::to_string(receiver.local_endpoint().port()) + "/hooks";
    s.type = revdesk::event_type::new_call;
    s.secret = revdesk::new_signing_secret();
    co_await dispatcher.subscribe(s);

    // 4. Publish. This returns once the event is queued; delivery happens in the background.
    revdesk::event e;
    e.id = revdesk::new_event_id();
    e.workspace = "demo";
    e.type = revdesk::event_type::new_call;
    e.payload = R"({"id":"call_1","from_number":"+15551234567","to_number":"+15557654321"})";
    auto queued = co_await dispatcher.publish(e, std::array{e.type});
    std::cout << "published " << queued.event_id << " to " << queued.deliveries
              << " subscription\n";

    // Keep the receiver and dispatcher alive until the delivery stops the loop.
    asio::steady_timer limit(io, std::chrono::seconds(10));
    co_await limit.async_wait(asio::use_awaitable);
    std::cerr << "no delivery within 10 s\n";
}

int main() {
    asio::io_context io;
    asio::co_spawn(io, demo(io), [](std::exception_ptr e) {
        if (e) {
            std::rethrow_exception(e);
        }
    });
    io.run();
}
