// Helpers shared by the benchmark programs: command-line options, process CPU time and resident
// memory, the loopback resolver and the JSON lines that the harness (run.py) reads.
#pragma once

#include <revdesk/http/client.hpp>

#include <boost/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

/// Options given as `--name value` pairs, looked up by name without the dashes.
class arguments {
public:
    arguments(int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            std::string_view name = argv[i];
            if (!name.starts_with("--")) {
                throw std::invalid_argument("unexpected argument \"" + std::string(name) +
                                            "\": options are --name value pairs");
            }
            name.remove_prefix(2);
            if (i + 1 >= argc) {
                throw std::invalid_argument("option --" + std::string(name) + " needs a value");
            }
            values_[std::string(name)] = argv[++i];
        }
    }

    std::string text(std::string const& name, std::string fallback) const {
        auto it = values_.find(name);
        return it == values_.end() ? fallback : it->second;
    }

    double number(std::string const& name, double fallback) const {
        auto it = values_.find(name);
        if (it == values_.end()) {
            return fallback;
        }
        try {
            return std::stod(it->second);
        } catch (std::exception const&) {
            throw std::invalid_argument("option --" + name + " needs a number, got \"" +
                                        it->second + "\"");
        }
    }

    std::size_t count(std::string const& name, std::size_t fallback) const {
        auto value = number(name, static_cast<double>(fallback));
        if (value < 0) {
            throw std::invalid_argument("option --" + name + " must not be negative");
        }
        return static_cast<std::size_t>(value);
    }

private:
    std::map<std::string, std::string> values_;
};

/// Returns the user plus system CPU seconds of the whole process, all threads included.
inline double cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](timeval const& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

/// Returns the resident set size (VmRSS) in bytes, from /proc/self/status.
inline std::uint64_t resident_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmRSS:")) {
            std::string_view rest(line);
            rest.remove_prefix(6);
            while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) {
                rest.remove_prefix(1);
            }
            std::uint64_t kib = 0;
            std::from_chars(rest.data(), rest.data() + rest.size(), kib);
            return kib * 1024;
        }
    }
    return 0;
}

/// Raises the soft limit on open files to the hard limit, so that 1,000 connections fit.
inline void raise_open_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/// The domain under which every benchmark receiver is named, such as `r7.bench.test`.
/// `.test` is reserved (RFC 6761), so these names can never reach a real host.
inline constexpr std::string_view receiver_domain = ".bench.test";

/// Returns a resolver that maps every name under receiver_domain to 127.0.0.1 and fails for any
/// other name, so that no benchmark traffic can leave the machine.
inline revdesk::http::resolve_function loopback_resolver() {
    return [](std::string const& host,
              std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
        if (!host.ends_with(receiver_domain)) {
            ec = asio::error::host_not_found;
            co_return std::vector<asio::ip::address>{};
        }
        co_return std::vector<asio::ip::address>{asio::ip::address_v4::loopback()};
    };
}

/// Prints one result as a single JSON line on standard output, the format that run.py reads.
inline void emit(boost::json::object const& result) {
    std::cout << boost::json::serialize(result) << '\n' << std::flush;
}

/// Returns the value at fraction `q` (0 to 1) of sorted `samples` by the nearest-rank method:
/// the smallest sample that at least `q` of all samples are less than or equal to. Returns 0 for
/// an empty vector.
inline double percentile(std::vector<double> const& sorted, double q) {
    if (sorted.empty()) {
        return 0;
    }
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

} // namespace bench
