// The API baseline: revdesk::http::server responding to every request with the same static 202
// response, so that the API benchmark can separate the server loop from the routes' work.
//
//   revdesk-bench-static-server --port PORT
//
// Listens on 127.0.0.1:PORT, prints "listening on 127.0.0.1:PORT" once ready, and stops on
// SIGINT or SIGTERM.

#include <revdesk/http/server.hpp>

#include "bench_common.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

int main(int argc, char** argv) {
    try {
        bench::arguments args(argc, argv);
        auto port = static_cast<std::uint16_t>(args.count("port", 0));
        bench::raise_open_file_limit();

        asio::io_context io(1);
        revdesk::http::server server(
            io.get_executor(),
            [](revdesk::http::request&,
               revdesk::http::request_context const&) -> asio::awaitable<revdesk::http::response> {
                // The shape of a POST /api/v1/events response.
                revdesk::http::response res;
                res.status = 202;
                res.reason = "Accepted";
                res.headers.add("Content-Type", "application/json");
                res.body = R"({"id":"evt_zn4soqjbgtpmp2palbdlhgrbh4",)"
                           R"("event_types":["call_completed"],"deliveries":0})";
                co_return res;
            });
        server.listen({asio::ip::address_v4::loopback(), port});
        std::cout << "listening on 127.0.0.1:" << server.local_endpoint().port() << std::endl;

        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&](std::error_code, int) {
            server.stop();
            io.stop();
        });
        asio::co_spawn(io, server.run(), asio::detached);
        io.run();
        return 0;
    } catch (std::exception const& e) {
        std::cerr << "revdesk-bench-static-server: " << e.what() << '\n';
        return 1;
    }
}
