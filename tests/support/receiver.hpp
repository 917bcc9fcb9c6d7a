// A webhook receiver for tests: an HTTPS (or HTTP) server on loopback, in its own thread, that
// records every request and responds with a status, or a whole response, that the test chooses.
#pragma once

#include <revdesk/http/server.hpp>

#include <asio/io_context.hpp>
#include <asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace revdesk::test {

class receiver {
public:
    /// Starts listening on 127.0.0.1 with a system-chosen port. With `cert_file` and `key_file`
    /// it speaks TLS.
    receiver(std::string const& cert_file = {}, std::string const& key_file = {}) {
        if (!cert_file.empty()) {
            tls_.emplace(asio::ssl::context::tls_server);
            tls_->use_certificate_chain_file(cert_file);
            tls_->use_private_key_file(key_file, asio::ssl::context::pem);
        }
        server_.emplace(
            io_.get_executor(),
            [this](http::request& r,
                   http::request_context const&) -> asio::awaitable<http::response> {
                std::lock_guard lock(mutex_);
                received_.push_back(r);
                co_return respond_(r);
            },
            http::server_options{}, tls_ ? &*tls_ : nullptr);
        server_->listen({asio::ip::make_address("127.0.0.1"), 0});
        asio::co_spawn(io_, server_->run(), asio::detached);
        thread_ = std::thread([this] { io_.run(); });
    }

    ~receiver() {
        asio::post(io_, [this] {
            server_->stop();
            io_.stop();
        });
        thread_.join();
    }

    receiver(receiver const&) = delete;
    receiver& operator=(receiver const&) = delete;

    std::uint16_t port() const { return server_->local_endpoint().port(); }

    /// Sets the response status for each request from now on.
    void answer_with(std::function<int(http::request const&)> f) {
        respond_with([f = std::move(f)](http::request const& r) {
            http::response res;
            res.status = f(r);
            return res;
        });
    }

    /// Sets the whole response for each request from now on, for statuses that need fields
    /// such as `Location` or `Retry-After`. `f` runs on the receiver's thread under its lock.
    void respond_with(std::function<http::response(http::request const&)> f) {
        std::lock_guard lock(mutex_);
        respond_ = std::move(f);
    }

    /// Returns a copy of every request received so far.
    std::vector<http::request> received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }

    /// Returns the requests whose target is `path`.
    std::vector<http::request> received_at(std::string const& path) const {
        std::vector<http::request> out;
        for (auto& r : received()) {
            if (r.target == path) {
                out.push_back(r);
            }
        }
        return out;
    }

    /// Returns the number of requests whose target is `path`, without copying them.
    std::size_t count_at(std::string const& path) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (auto const& r : received_) {
            n += r.target == path ? 1 : 0;
        }
        return n;
    }

    /// Waits until `count` requests have arrived at `path` or `limit` passes; returns whether
    /// they did.
    bool wait_for(std::string const& path, std::size_t count,
                  std::chrono::milliseconds limit = std::chrono::seconds(20)) const {
        auto until = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < until) {
            if (count_at(path) >= count) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }

private:
    asio::io_context io_{1};
    std::optional<asio::ssl::context> tls_;
    std::optional<http::server> server_;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::vector<http::request> received_;
    std::function<http::response(http::request const&)> respond_ = [](http::request const&) {
        http::response res;
        res.status = 200;
        return res;
    };
};

} // namespace revdesk::test
