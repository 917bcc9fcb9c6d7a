// Runs the real revdesk-server binary as a child process, and calls its API with the real curl.
#pragma once

#include "test_support.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace revdesk::test {

/// How `server_process` starts the server, besides its arguments.
struct launch_options {
    /// Whether to add `--listen 127.0.0.1:0`; off when the listen address comes from elsewhere,
    /// such as a config file or the environment.
    bool listen_on_any_port = true;
    /// Environment variables set in the server's process, as NAME and value.
    std::vector<std::pair<std::string, std::string>> environment;
};

/// One revdesk-server process listening on a loopback port the system chose.
class server_process {
public:
    /// Starts `binary` with `args` plus `--listen 127.0.0.1:0`, with REVDESK_API_KEY set to `key`,
    /// and waits until it logs where it listens. Its output goes to `log_file`.
    server_process(std::string binary, std::vector<std::string> args, std::string key,
                   std::string log_file)
        : server_process(std::move(binary), std::move(args), std::move(key), std::move(log_file),
                         launch_options{}) {}

    /// Starts the server like the constructor above, with the changes in `launch`.
    server_process(std::string binary, std::vector<std::string> args, std::string key,
                   std::string log_file, launch_options const& launch)
        : log_file_(std::move(log_file)) {
        if (launch.listen_on_any_port) {
            args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
        }
        args.insert(args.begin(), binary);
        start_offset_ = log().size();
        // Flush first, or the child would write this process's buffered output a second time.
        std::fflush(stdout);
        std::fflush(stderr);
        pid_ = fork();
        if (pid_ < 0) {
            throw std::runtime_error("fork failed");
        }
        if (pid_ == 0) {
            FILE* out = freopen(log_file_.c_str(), "a", stdout);
            (void)out;
            dup2(fileno(stdout), fileno(stderr));
            setenv("REVDESK_API_KEY", key.c_str(), 1);
            for (auto const& [name, value] : launch.environment) {
                setenv(name.c_str(), value.c_str(), 1);
            }
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            execv(binary.c_str(), argv.data());
            _exit(127);
        }
        try {
            wait_for_listening();
        } catch (...) {
            // The destructor does not run after a throwing constructor: a server that never
            // listened must not outlive the test.
            stop(SIGKILL);
            throw;
        }
    }

    ~server_process() { stop(SIGTERM); }

    server_process(server_process const&) = delete;
    server_process& operator=(server_process const&) = delete;

    /// Sends `signal` and waits for the process to exit; returns its exit status, or -1 when it
    /// was already gone.
    int stop(int signal) {
        if (pid_ <= 0) {
            return -1;
        }
        kill(pid_, signal);
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

    std::string const& base_url() const noexcept { return base_url_; }

    /// Returns everything the server has logged so far.
    std::string log() const {
        std::ifstream in(log_file_);
        std::stringstream all;
        all << in.rdbuf();
        return all.str();
    }

private:
    void wait_for_listening() {
        // Followed by "://" (plain HTTP) or "s://" (HTTPS), then HOST:PORT.
        constexpr std::string_view marker = "listening on http";
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (std::chrono::steady_clock::now() < until) {
            auto text = log();
            // A log file may be shared by restarts; use the last start's line.
            auto at = text.rfind(marker);
            if (at != std::string::npos && at >= start_offset_) {
                auto start = at + std::string_view("listening on ").size();
                auto end = text.find(' ', start);
                base_url_ = text.substr(start, end - start);
                start_offset_ = text.size();
                return;
            }
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("revdesk-server exited at start:\n" + text);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        throw std::runtime_error("revdesk-server did not start listening within 30 s:\n" + log());
    }

    std::string log_file_;
    std::string base_url_;
    std::size_t start_offset_ = 0;
    pid_t pid_ = -1;
};

/// A response that curl received.
struct curl_reply {
    int status = 0;
    std::string body;
    std::string headers;

    boost::json::value json() const { return boost::json::parse(body); }
};

/// Runs curl with `arguments` (already shell-quoted) and returns the status, headers and body.
inline curl_reply curl(std::string const& arguments) {
    temp_dir dir;
    auto body_file = dir.file("body");
    auto header_file = dir.file("headers");
    auto code = shell("curl -sS -o '" + body_file + "' -D '" + header_file +
                      "' -w '%{http_code}' " + arguments);
    curl_reply reply;
    reply.status = std::stoi(code);
    std::ifstream body(body_file, std::ios::binary);
    std::stringstream b;
    b << body.rdbuf();
    reply.body = b.str();
    std::ifstream headers(header_file, std::ios::binary);
    std::stringstream h;
    h << headers.rdbuf();
    reply.headers = h.str();
    return reply;
}

/// Quotes `text` for a POSIX shell.
inline std::string quote(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out.push_back(c);
        }
    }
    out += "'";
    return out;
}

} // namespace revdesk::test
