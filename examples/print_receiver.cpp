// A webhook receiver that prints every delivery: its event type, webhook-id and body. With a
// signing secret it also verifies each signature and responds 401 to a delivery that fails.
//
//   print_receiver PORT [whsec_...]
//
// It listens on 127.0.0.1 over plain HTTP, for trying revdesk-server on one machine (start the
// server with --allow-http --allow-target 127.0.0.1/32).

#include <revdesk/http/server.hpp>
#include <revdesk/signing.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <charconv>
#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

int main(int argc, char** argv) {
    constexpr std::string_view usage = "usage: print_receiver PORT [whsec_...]\n";
    if (argc < 2 || argc > 3) {
        std::cerr << usage;
        return 2;
    }
    std::string_view port_text = argv[1];
    unsigned port = 0;
    auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
        std::cerr << "invalid PORT \"" << port_text << "\": give a number from 1 to 65535\n"
                  << usage;
        return 2;
    }
    std::string secret = argc == 3 ? argv[2] : "";

    asio::io_context io;
    revdesk::http::server receiver(
        io.get_executor(),
        [&](revdesk::http::request& r,
            revdesk::http::request_context const&) -> asio::awaitable<revdesk::http::response> {
            auto header = [&](std::string_view name) {
                return std::string(r.headers.find(name).value_or("-"));
            };
            std::cout << r.method << " " << r.target << "  " << header("RevDesk-Event-Type") << "  "
                      << header("webhook-id") << "\n"
                      << r.body << "\n";

            revdesk::http::response answer;
            answer.status = 204;
            if (!secret.empty()) {
                auto problem =
                    revdesk::verify(secret, r.headers, r.body, std::chrono::system_clock::now());
                std::cout << "signature: " << (problem ? problem.message() : "valid") << "\n";
                if (problem) {
                    answer.status = 401;
                }
            }
            std::cout << std::endl;
            co_return answer;
        });
    try {
        receiver.listen({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
    } catch (std::system_error const& e) {
        std::cerr << "cannot listen on 127.0.0.1:" << port << ": " << e.what()
                  << "; stop the process that uses it or choose another PORT\n";
        return 1;
    }
    std::cout << "listening on http://127.0.0.1:" << receiver.local_endpoint().port() << std::endl;
    asio::co_spawn(io, receiver.run(), asio::detached);
    io.run();
}
