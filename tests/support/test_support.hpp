// Shared pieces of the tests: a coroutine runner with a time limit, temporary directories, and
// certificates generated with the openssl command.
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace revdesk::test {

/// Runs `make()`'s coroutine on `io` until it finishes; rethrows what it throws. Fails with
/// std::runtime_error when it has not finished within `limit`, so a test never hangs.
template <class MakeAwaitable>
void run(asio::io_context& io, MakeAwaitable make,
         std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    std::exception_ptr failure;
    bool finished = false;
    asio::co_spawn(io, make(), [&](std::exception_ptr e) {
        failure = e;
        finished = true;
    });
    io.restart();
    auto until = std::chrono::steady_clock::now() + limit;
    while (!finished && std::chrono::steady_clock::now() < until) {
        io.run_for(std::chrono::milliseconds(50));
    }
    if (!finished) {
        throw std::runtime_error("the test coroutine did not finish within the time limit");
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
}

/// A directory under the system's temporary directory, removed with its contents on destruction.
class temp_dir {
public:
    temp_dir() {
        auto pattern = (std::filesystem::temp_directory_path() / "revdesk-test-XXXXXX").string();
        if (!mkdtemp(pattern.data())) {
            throw std::runtime_error("cannot create a temporary directory");
        }
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    temp_dir(temp_dir const&) = delete;
    temp_dir& operator=(temp_dir const&) = delete;

    std::filesystem::path const& path() const noexcept { return path_; }
    std::string file(std::string_view name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

/// Runs a shell command; returns its standard output. Throws when it exits with non-zero.
inline std::string shell(std::string const& command) {
    std::string output;
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
        throw std::runtime_error("cannot run: " + command);
    }
    char buffer[4096];
    std::size_t n = 0;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
        output.append(buffer, n);
    }
    int status = pclose(pipe);
    if (status != 0) {
        throw std::runtime_error("command failed (" + std::to_string(status) + "): " + command +
                                 "\n" + output);
    }
    return output;
}

/// A certificate authority and a server certificate it signed, for `localhost` and 127.0.0.1,
/// generated with the openssl command into a temporary directory.
struct test_certificates {
    temp_dir dir;
    std::string ca_file = dir.file("ca.pem");
    std::string cert_file = dir.file("server.pem");
    std::string key_file = dir.file("server.key");
    std::string expired_cert_file = dir.file("expired.pem");

    test_certificates() {
        auto d = dir.path().string();
        shell("cd '" + d +
              "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
              "-keyout ca.key -out ca.pem -days 2 -subj '/CN=revdesk test CA' 2>&1"
              " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
              "-keyout server.key -out server.csr -subj '/CN=localhost' 2>&1"
              " && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext.cnf"
              " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
              "-out server.pem -days 2 -extfile ext.cnf 2>&1"
              " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
              "-out expired.pem -days -1 -extfile ext.cnf 2>&1");
    }
};

} // namespace revdesk::test
