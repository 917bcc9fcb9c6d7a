// A burst of events published to a running revdesk-server over keep-alive connections, for the
// end-to-end tests that kill servers in the middle of a burst.
#pragma once

#include <revdesk/http/client.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

namespace revdesk::test {

/// Returns the body of event number `n`: a `contact_created` event with the contact id `ct_n`.
inline std::string numbered_event_body(std::size_t n) {
    return R"({"event_type":"contact_created","payload":{"id":"ct_)" + std::to_string(n) +
           R"(","phone_number":"+15557654321","first_name":"Ada","last_name":null,)"
           R"("email":null,"created_at":"2026-06-30T19:30:00.000Z"}})";
}

/// Publishes numbered events (numbered_event_body) with the library's own HTTP client, from
/// several coroutines at once, and records which numbers the server accepted with 202.
class publisher {
public:
    /// `ports` are the API ports of the servers, taken in turn, one per request.
    publisher(asio::io_context& io, std::vector<std::uint16_t> ports, std::string api_key,
              std::size_t connections)
        : io_(io)
        , tls_(asio::ssl::context::tls_client)
        , client_(io.get_executor(), tls_, loopback_policy())
        , ports_(std::move(ports))
        , api_key_(std::move(api_key))
        , connections_(connections) {}

    /// How a failed request is handled.
    enum class on_failure {
        halt,     ///< Stop every connection: the server is gone.
        continue_ ///< Count it and go on with the next number, as while a database restarts.
    };

    /// Publishes numbers from `first` up to `end` (exclusive) until `stop` returns true after a
    /// response, or a request fails and `failure` is `halt`. Returns when every connection has
    /// stopped.
    asio::awaitable<void> run(
        std::size_t first, std::size_t end, std::function<bool()> stop = [] { return false; },
        on_failure failure = on_failure::halt) {
        next_ = first;
        end_ = end;
        stop_ = std::move(stop);
        failure_ = failure;
        halted_ = false;
        running_ = connections_;
        for (std::size_t i = 0; i < connections_; ++i) {
            asio::co_spawn(io_, publish_loop(), [this](std::exception_ptr) { --running_; });
        }
        asio::steady_timer tick(io_);
        while (running_ > 0) {
            tick.expires_after(std::chrono::milliseconds(5));
            co_await tick.async_wait(http::use_nothrow);
        }
    }

    std::set<std::size_t> const& accepted() const { return accepted_; }
    std::size_t failed() const { return failed_; }
    /// The statuses of the responses other than 202, with their counts.
    std::map<int, std::size_t> const& refusals() const { return refusals_; }
    std::size_t next() const { return next_; }

private:
    static address_policy loopback_policy() {
        address_policy p;
        p.allow(*cidr::parse("127.0.0.1/32"));
        return p;
    }

    asio::awaitable<void> publish_loop() {
        while (next_ < end_ && !halted_) {
            auto n = next_++;
            webhook_target target;
            target.scheme = "http";
            target.host = "127.0.0.1";
            target.port = ports_[n % ports_.size()];
            target.target = "/api/v1/events";
            target.host_is_ip = true;

            http::request req;
            req.method = "POST";
            req.target = target.target;
            req.headers.add("Authorization", "Bearer " + api_key_);
            req.headers.add("Content-Type", "application/json");
            req.body = numbered_event_body(n);
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
            auto result = co_await client_.send(target, std::move(req), deadline);
            bool accepted = result.error == http::failure::none && result.response.status == 202;
            if (accepted) {
                accepted_.insert(n);
            } else {
                // Without a 202 this number may or may not have been stored.
                ++failed_;
                if (result.error == http::failure::none) {
                    ++refusals_[result.response.status];
                }
                if (result.error != http::failure::none && failure_ == on_failure::halt) {
                    halted_ = true;
                    co_return;
                }
                if (failure_ == on_failure::continue_) {
                    // Give a restarting database a moment instead of spinning through numbers.
                    asio::steady_timer pause(io_, std::chrono::milliseconds(20));
                    co_await pause.async_wait(http::use_nothrow);
                }
            }
            if (stop_()) {
                halted_ = true;
            }
        }
    }

    asio::io_context& io_;
    asio::ssl::context tls_;
    http::client client_;
    std::vector<std::uint16_t> ports_;
    std::string api_key_;
    std::size_t connections_;
    std::size_t next_ = 0;
    std::size_t end_ = 0;
    std::size_t running_ = 0;
    std::size_t failed_ = 0;
    bool halted_ = false;
    on_failure failure_ = on_failure::halt;
    std::function<bool()> stop_;
    std::set<std::size_t> accepted_;
    std::map<int, std::size_t> refusals_;
};

} // namespace revdesk::test
