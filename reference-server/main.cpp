// revdesk-server: the reference webhook server built from the revdesk-webhooks library.

#include "api.hpp"
#include "metrics.hpp"

#include <revdesk/destination.hpp>
#include <revdesk/dispatcher.hpp>
#include <revdesk/http/client.hpp>
#include <revdesk/http/server.hpp>
#include <revdesk/ids.hpp>
#include <revdesk/store/memory_store.hpp>
#include <revdesk/store/postgres_store.hpp>
#include <revdesk/store/sqlite_store.hpp>

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fcntl.h>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/file.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace {

// The server's settings, one member per option; `define_options` declares them.
struct settings {
    std::string listen = "127.0.0.1:8080";
    std::string tls_cert;
    std::string tls_key;
    std::string store = "sqlite:revdesk.db";
    std::string node_id;
    std::string lease = "60s";
    std::size_t pool_size = 4;
    std::vector<std::string> allow_targets;
    std::string ca_file;
    bool allow_http = false;
    std::string retry_schedule = "5s,5m,30m,2h,5h,10h,14h,20h,24h";
    std::size_t max_per_origin = 16;
    std::size_t max_in_flight = 512;
    std::size_t max_unrecorded = 4096;
    std::size_t delivery_threads = 0;
    std::size_t attempt_timeout_s = 15;
    std::string retention = "30d";
    std::vector<std::string> resolve;
    std::string log_format = "text";
};

// Defines every option of the server, in one place. Each option can also come from the
// environment and from the config file, named after the option (see name_environment_variables).
void define_options(CLI::App& app, settings& config) {
    // The API.
    app.add_option("--listen", config.listen, "Address and port of the API, HOST:PORT");
    app.add_option("--tls-cert", config.tls_cert,
                   "A PEM file with the API's certificate chain (its certificate first); with "
                   "--tls-key the API speaks HTTPS only. Default: none, plain HTTP");
    app.add_option("--tls-key", config.tls_key,
                   "A PEM file with the unencrypted private key of --tls-cert. Default: none");

    // State.
    app.add_option("--store", config.store,
                   "Where state lives: sqlite:PATH (durable, one server), "
                   "postgresql://USER@HOST:PORT/DATABASE (durable, shared by several servers; "
                   "any libpq connection URI) or memory: (lost on exit)");
    app.add_option("--node-id", config.node_id,
                   "With PostgreSQL: this server's name in the leases it takes, unique among the "
                   "servers on one database. Default: HOSTNAME-PID-RANDOM");
    app.add_option("--lease", config.lease,
                   "With PostgreSQL: how long a claimed delivery stays with this server unless "
                   "renewed, such as 60s; after a crash, other servers take its deliveries over "
                   "after this long. Must exceed --attempt-timeout");
    app.add_option("--pool-size", config.pool_size,
                   "With PostgreSQL: connections that run queries (one more listens for "
                   "notifications)")
        ->check(CLI::Range(1, 64));

    // Delivery.
    app.add_option("--allow-target", config.allow_targets,
                   "An address range (CIDR) that receivers may be in although it is private, "
                   "loopback or otherwise refused; repeatable, such as 127.0.0.1/32. In the "
                   "environment, separate several with commas")
        ->delimiter(',');
    app.add_option("--ca-file", config.ca_file,
                   "A PEM file of extra CA certificates trusted for receivers' certificates. "
                   "Default: none, the system's CA certificates only")
        ->check(CLI::ExistingFile);
    app.add_flag("--allow-http", config.allow_http,
                 "Accept http:// receiver URLs besides https:// (for development). Default: "
                 "false; in the environment or the config file write true or false");
    app.add_option("--retry-schedule", config.retry_schedule,
                   "Delays before each retry, comma-separated with units ms, s, m, h or d");
    app.add_option("--max-per-origin", config.max_per_origin,
                   "Concurrent attempts to one receiver origin (scheme, host, port)")
        ->check(CLI::Range(1, 1024));
    app.add_option("--max-in-flight", config.max_in_flight,
                   "Concurrent delivery attempts over all receivers")
        ->check(CLI::Range(1, 65536));
    app.add_option("--max-unrecorded", config.max_unrecorded,
                   "Finished attempts that may wait for the store to record them while their "
                   "slots serve the next attempts; 0 keeps each slot until its attempt is "
                   "recorded")
        ->check(CLI::Range(0, 1048576));
    app.add_option("--delivery-threads", config.delivery_threads,
                   "Threads that carry the attempts' connections, TLS and HTTP, besides the "
                   "thread of the API and the dispatcher; 0 carries them on that thread too. "
                   "Try more on machines with more than two cores")
        ->check(CLI::Range(0, 64));
    app.add_option("--resolve", config.resolve,
                   "Answer these addresses for a host name instead of asking DNS, as "
                   "HOST=ADDRESS[,ADDRESS...]; repeatable. The destination policy still applies "
                   "to them. In the environment, separate several with spaces")
        ->delimiter(' ');
    app.add_option(
           "--attempt-timeout", config.attempt_timeout_s,
           "Seconds one attempt may take, from resolving the host to the end of the response")
        ->check(CLI::Range(1, 300));
    app.add_option("--retention", config.retention,
                   "How long finished events are kept with their deliveries and attempts, such "
                   "as 30d; off keeps everything. Events with a pending delivery are always "
                   "kept. Below 24h, repeated Idempotency-Keys of purged events are forgotten "
                   "early");

    // Logs.
    app.add_option("--log-format", config.log_format,
                   "text: one readable line per message; json: one JSON object per line")
        ->check(CLI::IsMember({"text", "json"}));
}

// Gives every option of `app` except --help and --config the environment variable REVDESK_NAME.
void name_environment_variables(CLI::App& app) {
    for (auto* option : app.get_options()) {
        if (option == app.get_help_ptr() || option == app.get_config_ptr()) {
            continue;
        }
        auto name = "REVDESK_" + option->get_single_name();
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) {
            return c == '-' ? '_' : static_cast<char>(std::toupper(c));
        });
        option->envname(name);
    }
}

// CLI11's TOML reader without the keys whose environment variable is set. CLI11 reads the config
// file first and keeps an option's first value, so the file would otherwise win over the
// environment. With this reader the order is flag > environment > config file > default.
class config_below_environment final : public CLI::ConfigTOML {
public:
    explicit config_below_environment(CLI::App const& app)
        : app_(app) {}

    std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
        auto items = CLI::ConfigTOML::from_config(input);
        std::erase_if(items, [this](CLI::ConfigItem const& item) {
            if (!item.parents.empty()) {
                return false;
            }
            auto const* option = app_.get_option_no_throw("--" + item.name);
            if (option == nullptr || option->get_envname().empty()) {
                return false;
            }
            auto const* value = std::getenv(option->get_envname().c_str());
            return value != nullptr && *value != '\0';
        });
        return items;
    }

private:
    CLI::App const& app_;
};

// Returns `text` unchanged when it is valid UTF-8, and otherwise with every byte outside ASCII
// written as \xNN, so that every JSON log line is valid UTF-8.
std::string as_utf8(std::string_view text) {
    auto valid = [&text] {
        for (std::size_t i = 0; i < text.size();) {
            auto c = static_cast<unsigned char>(text[i]);
            std::size_t extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2
                                           : (c >> 3) == 0x1e ? 3 : 4;
            if (extra == 4 || (extra == 1 && c < 0xc2) || text.size() - i <= extra) {
                return false;
            }
            for (std::size_t k = 1; k <= extra; ++k) {
                if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) {
                    return false;
                }
            }
            i += extra + 1;
        }
        return true;
    };
    if (valid()) {
        return std::string(text);
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : text) {
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
    return out;
}

// The structured fields of the line being logged, for the json format: set by `log_with` around
// one spdlog call on the thread that makes it, read by `json_formatter` within that call.
thread_local boost::json::object const* line_fields = nullptr;

// Formats each message as one JSON object on one line: time (UTC, milliseconds), level, message,
// then the structured fields of the line, if any.
class json_formatter final : public spdlog::formatter {
public:
    void format(spdlog::details::log_msg const& msg, spdlog::memory_buf_t& dest) override {
        using namespace std::chrono;
        auto since_epoch = msg.time.time_since_epoch();
        auto seconds = system_clock::to_time_t(system_clock::time_point(
            duration_cast<system_clock::duration>(floor<std::chrono::seconds>(since_epoch))));
        auto millis = duration_cast<milliseconds>(since_epoch).count() % 1000;
        std::tm utc{};
        gmtime_r(&seconds, &utc);
        char time[32];
        auto length = std::strftime(time, sizeof time, "%Y-%m-%dT%H:%M:%S", &utc);
        std::snprintf(time + length, sizeof time - length, ".%03dZ", static_cast<int>(millis));

        auto level = spdlog::level::to_string_view(msg.level);
        std::string text = R"({"time":")";
        text += time;
        text += R"(","level":)";
        text += boost::json::serialize(boost::json::string_view(level.data(), level.size()));
        text += R"(,"message":)";
        text += boost::json::serialize(
            boost::json::string(as_utf8(std::string_view(msg.payload.data(), msg.payload.size()))));
        if (line_fields != nullptr) {
            for (auto const& field : *line_fields) {
                text += ',';
                text += boost::json::serialize(field.key());
                text += ':';
                // Fractions as plain decimals (12.5, not Boost.JSON's 1.25E1), for people who
                // read the line as well as for parsers.
                text += field.value().is_double() ? fmt::format("{}", field.value().as_double())
                                                  : boost::json::serialize(field.value());
            }
        }
        text += "}\n";
        dest.append(text.data(), text.data() + text.size());
    }

    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<json_formatter>();
    }
};

// Logs one message with structured `fields`; the text format shows only the message.
template <class... Args>
void log_with(spdlog::level::level_enum level, boost::json::object const& fields,
              spdlog::format_string_t<Args...> format, Args&&... args) {
    struct reset {
        ~reset() { line_fields = nullptr; }
    } reset_fields;
    line_fields = &fields;
    spdlog::log(level, format, std::forward<Args>(args)...);
}

// Sets the format of every log line: "text" or "json".
void use_log_format(std::string const& format) {
    if (format == "json") {
        spdlog::set_formatter(std::make_unique<json_formatter>());
    } else {
        spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    }
}

// Logs one completed request with the route template, never the raw target, so that no ids, query
// strings, keys or secrets reach the log.
void log_request(std::string const& method, std::string const& route, int status,
                 double duration_ms, std::string const& workspace) {
    boost::json::object fields;
    fields["method"] = as_utf8(method);
    fields["route"] = route;
    fields["status"] = status;
    fields["duration_ms"] = std::round(duration_ms * 10.0) / 10.0;
    if (workspace.empty()) {
        fields["workspace"] = nullptr;
    } else {
        fields["workspace"] = workspace;
    }
    log_with(spdlog::level::info, fields, "{} {} {} {:.1f}ms workspace={}", method, route, status,
             duration_ms, workspace.empty() ? "-" : workspace);
}

// Parses HOST:PORT, with the host of an IPv6 address in brackets.
asio::ip::tcp::endpoint parse_listen(std::string const& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || colon + 1 == text.size()) {
        throw std::invalid_argument("invalid --listen \"" + text +
                                    "\": write HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080");
    }
    auto host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    std::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    unsigned long port = 0;
    try {
        std::size_t used = 0;
        port = std::stoul(text.substr(colon + 1), &used);
        if (used != text.size() - colon - 1) {
            port = 70000;
        }
    } catch (std::exception const&) {
        port = 70000;
    }
    if (ec || port > 65535) {
        throw std::invalid_argument("invalid --listen \"" + text +
                                    "\": write an IP address and a port 0-65535, such as "
                                    "127.0.0.1:8080 or [::1]:8080");
    }
    return {address, static_cast<unsigned short>(port)};
}

// One server per SQLite file: a second would deliver from its own in-memory index and miss the
// first one's new subscriptions. Holds an exclusive flock(2) on the database file for the life of
// the process; SQLite's own fcntl locks are independent of it, so `keys` commands still work.
// Returns the open descriptor (-1 for the memory store). Throws when another server has it locked.
int lock_for_one_server(std::string const& spec) {
    if (!spec.starts_with("sqlite:")) {
        return -1;
    }
    auto path = spec.substr(7);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path + " to lock it: " + std::strerror(errno));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        throw std::runtime_error("another revdesk-server is already using " + path +
                                 "; stop it, or give this one its own --store sqlite:OTHER.db "
                                 "(several nodes on one database need the PostgreSQL store)");
    }
    return fd;
}

bool is_postgres(std::string const& spec) {
    return spec.starts_with("postgresql://") || spec.starts_with("postgres://");
}

revdesk::postgres_options postgres_settings(settings const& config) {
    revdesk::postgres_options options;
    options.conninfo = config.store;
    options.node_id = config.node_id;
    options.pool_size = config.pool_size;
    return options;
}

// Opens the store that --store names, on `io`. The PostgreSQL store connects and migrates here.
std::unique_ptr<revdesk::store> open_store(settings const& config, asio::io_context& io);

// Returns --store as the log may show it: a PostgreSQL URI may carry a password. The node id is
// added for a running server.
std::string store_label(settings const& config, revdesk::store& store, bool with_node = true) {
    if (auto* postgres = dynamic_cast<revdesk::postgres_store*>(&store)) {
        auto node = with_node ? ", node " + postgres->node_id() : std::string();
        return "postgresql (" + postgres->target() + node + ")";
    }
    return config.store;
}

// Parses the --resolve values (HOST=ADDRESS[,ADDRESS...]) into fixed addresses by host name.
std::map<std::string, std::vector<asio::ip::address>>
parse_resolve_overrides(std::vector<std::string> const& values) {
    std::map<std::string, std::vector<asio::ip::address>> fixed;
    for (auto const& text : values) {
        auto invalid = [&text](std::string const& why) {
            return std::invalid_argument("invalid --resolve \"" + text + "\": " + why +
                                         "; write HOST=ADDRESS[,ADDRESS...], such as "
                                         "hooks.example.com=127.0.0.1");
        };
        auto equals = text.find('=');
        if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
            throw invalid("a host name, '=' and at least one address are required");
        }
        auto host = text.substr(0, equals);
        std::transform(host.begin(), host.end(), host.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        auto& addresses = fixed[host];
        auto list = std::string_view(text).substr(equals + 1);
        while (true) {
            auto comma = list.find(',');
            auto item = std::string(list.substr(0, comma));
            std::error_code ec;
            auto address = asio::ip::make_address(item, ec);
            if (ec) {
                throw invalid("\"" + item + "\" is not an IP address");
            }
            addresses.push_back(address);
            if (comma == std::string_view::npos) {
                break;
            }
            list.remove_prefix(comma + 1);
        }
    }
    return fixed;
}

// Returns a resolver that returns the addresses in `fixed` for its hosts and asks the system for
// other hosts. The destination policy checks fixed addresses like any others.
revdesk::http::resolve_function
make_resolver(std::map<std::string, std::vector<asio::ip::address>> fixed) {
    auto system = revdesk::http::system_resolver();
    if (fixed.empty()) {
        return system;
    }
    return [system, fixed = std::move(fixed)](
               std::string const& host,
               std::error_code& ec) -> asio::awaitable<std::vector<asio::ip::address>> {
        if (auto it = fixed.find(host); it != fixed.end()) {
            ec = {};
            co_return it->second;
        }
        co_return co_await system(host, ec);
    };
}

std::string curl_host(asio::ip::tcp::endpoint const& e) {
    auto address = e.address();
    auto host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
    return host + ":" + std::to_string(e.port());
}

// Runs `work` on `io` until it completes and returns its result; for the work before the
// server starts and for the keys and migrate commands. Other work on `io`, such as a store's
// listening connection, stays queued for the next run.
template <class T>
T run_on(asio::io_context& io, asio::awaitable<T> work) {
    std::optional<T> result;
    std::exception_ptr failure;
    asio::co_spawn(io, std::move(work), [&](std::exception_ptr e, T value) {
        failure = e;
        if (!e) {
            result = std::move(value);
        }
        io.stop();
    });
    io.restart();
    io.run();
    io.restart();
    if (failure) {
        std::rethrow_exception(failure);
    }
    return std::move(*result);
}

inline void run_on(asio::io_context& io, asio::awaitable<void> work) {
    std::exception_ptr failure;
    asio::co_spawn(io, std::move(work), [&](std::exception_ptr e) {
        failure = e;
        io.stop();
    });
    io.restart();
    io.run();
    io.restart();
    if (failure) {
        std::rethrow_exception(failure);
    }
}

std::unique_ptr<revdesk::store> open_store(settings const& config, asio::io_context& io) {
    auto const& spec = config.store;
    if (spec == "memory:") {
        return std::make_unique<revdesk::memory_store>();
    }
    if (spec.starts_with("sqlite:") && spec.size() > 7) {
        return std::make_unique<revdesk::sqlite_store>(spec.substr(7));
    }
    if (is_postgres(spec)) {
        auto store =
            std::make_unique<revdesk::postgres_store>(io.get_executor(), postgres_settings(config));
        run_on(io, store->open());
        return store;
    }
    throw std::invalid_argument("invalid --store (it must be sqlite:PATH such as "
                                "sqlite:revdesk.db, a postgresql:// URI, or memory:); got \"" +
                                (spec.find("://") == std::string::npos ? spec : std::string("...")) +
                                "\"");
}

// The migrate command: brings the store's schema up to this build's version and exits, so that a
// deployment can migrate once before it starts several servers.
int migrate(settings const& config) {
    asio::io_context io(1);
    if (is_postgres(config.store)) {
        auto result = run_on(
            io, revdesk::postgres_store::migrate(io.get_executor(), postgres_settings(config)));
        std::cout << "PostgreSQL schema at version " << result.current_version << " (was "
                  << result.previous_version << ")" << std::endl;
        return 0;
    }
    if (config.store.starts_with("sqlite:")) {
        // Opening a SQLite store applies its migrations.
        open_store(config, io);
        std::cout << "SQLite schema of " << config.store.substr(7) << " is up to date"
                  << std::endl;
        return 0;
    }
    std::cerr << "the migrate command needs a durable store: give --store sqlite:PATH or "
                 "--store postgresql://...\n";
    return 2;
}

struct new_key {
    revdesk::api_key record;
    std::string secret; // shown once, never stored
};

// Makes a key of `workspace`: `rdk_` and 160 random bits in base32, stored as its digest only.
new_key make_key(std::string const& workspace) {
    new_key out;
    out.secret = "rdk_" + revdesk::random_token(20);
    out.record.id = "key_" + revdesk::random_token(10);
    out.record.workspace = workspace;
    out.record.digest = revdesk::server::key_digest_hex(out.secret);
    out.record.hint = out.secret.substr(0, 8);
    out.record.created_at = revdesk::now_ms();
    return out;
}

// How often a running server reads the keys again, so that keys created or revoked with the
// keys command take effect without a restart.
constexpr std::chrono::seconds key_reload_interval{2};

asio::awaitable<void> reload_keys(revdesk::store& store, revdesk::server::key_ring& keys) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (true) {
        timer.expires_after(key_reload_interval);
        std::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            co_return;
        }
        try {
            keys.replace_stored(co_await store.load_keys());
        } catch (std::exception const& e) {
            // The previous keys stay in force until a reload succeeds.
            spdlog::error("cannot reload API keys: {}", e.what());
        }
    }
}

bool valid_workspace(std::string const& name) {
    return !name.empty() && name.size() <= 64 &&
           std::all_of(name.begin(), name.end(), [](unsigned char c) {
               return std::isalnum(c) || c == '-' || c == '_' || c == '.';
           });
}

std::string format_ms(revdesk::unix_ms at) {
    return revdesk::format_utc_timestamp(revdesk::utc_timestamp(std::chrono::milliseconds(at)));
}

// How often the server purges finished events at most, and at least.
constexpr std::chrono::milliseconds max_purge_interval = std::chrono::hours(1);
constexpr std::chrono::milliseconds min_purge_interval = std::chrono::seconds(1);

// Parses the value of `option` as one positive duration with its unit, in the syntax of
// --retry-schedule. Throws naming the option, the value and `examples` when it is not one.
std::chrono::milliseconds parse_duration(std::string const& option, std::string const& text,
                                         std::string const& examples) {
    auto parsed = revdesk::retry_policy::parse_schedule(text);
    if (std::holds_alternative<std::string>(parsed) || std::get<0>(parsed).size() != 1) {
        throw std::invalid_argument("invalid " + option + " \"" + text +
                                    "\": write one positive duration with its unit, such as " +
                                    examples);
    }
    return std::get<0>(parsed)[0];
}

// Returns --retention, or nothing for `off`.
std::optional<std::chrono::milliseconds> parse_retention(std::string const& text) {
    if (text == "off") {
        return std::nullopt;
    }
    return parse_duration("--retention", text, "30d or 12h, or off");
}

// Deletes the events that finished more than `retention` ago, with their deliveries and
// attempts, every quarter of `retention` (between 1 second and 1 hour), so that the store does not
// grow with every event. Several servers on one database may all do it: a purge is one statement.
asio::awaitable<void> purge_finished_events(revdesk::store& store,
                                            std::chrono::milliseconds retention) {
    auto interval = std::clamp(retention / 4, min_purge_interval, max_purge_interval);
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (true) {
        timer.expires_after(interval);
        std::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            co_return;
        }
        auto cutoff = revdesk::now_ms() - retention.count();
        try {
            auto purged = co_await store.purge_before(cutoff);
            if (purged > 0) {
                spdlog::info("purged {} finished events created before {}", purged,
                             format_ms(cutoff));
            }
        } catch (std::exception const& e) {
            spdlog::error("purging events created before {} failed: {}; trying again in {} s",
                          format_ms(cutoff), e.what(),
                          std::chrono::duration_cast<std::chrono::seconds>(interval).count());
        }
    }
}

// The keys command: create, list or revoke API keys in the store, without a running server.
int manage_keys(settings const& config, std::string const& action,
                std::string const& workspace, std::string const& id) {
    if (config.store == "memory:") {
        std::cerr << "the keys command needs a durable store: give --store sqlite:PATH or "
                     "--store postgresql://..., the store the server uses\n";
        return 2;
    }
    if (action == "create" && !valid_workspace(workspace)) {
        std::cerr << "invalid --workspace \"" << workspace
                  << "\": use 1 to 64 letters, digits, '-', '_' or '.'\n";
        return 2;
    }
    if (config.store.starts_with("sqlite:") && ::access(config.store.c_str() + 7, F_OK) != 0) {
        // Listing or revoking would create an empty database that no server reads; a new key
        // may well come before the server's first start.
        if (action != "create") {
            std::cerr << "no SQLite store at " << config.store.substr(7)
                      << "; check --store, or start the server once to create it\n";
            return 2;
        }
        std::cerr << "no SQLite store at " << config.store.substr(7) << " yet; creating it\n";
    }
    asio::io_context io(1);
    auto store = open_store(config, io);
    if (action == "create") {
        auto created = make_key(workspace);
        run_on(io, store->insert_key(created.record));
        std::cout << "created API key " << created.record.id << " for workspace " << workspace
                  << "; store it now, it is not shown again:\n"
                  << created.secret << std::endl;
        return 0;
    }
    if (action == "list") {
        std::cout << "id\tworkspace\thint\tcreated\trevoked\n";
        for (auto const& k : run_on(io, store->load_keys())) {
            std::cout << k.id << '\t' << k.workspace << '\t' << k.hint << "...\t"
                      << format_ms(k.created_at) << '\t' << (k.revoked ? "yes" : "no") << '\n';
        }
        std::cout.flush();
        return 0;
    }
    if (!run_on(io, store->revoke_key(id))) {
        std::cerr << "no API key with id " << id << " in "
                  << store_label(config, *store, false)
                  << "; list the keys with: revdesk-server keys list\n";
        return 1;
    }
    std::cout << "revoked API key " << id << std::endl;
    return 0;
}

// Builds the response to a request whose handler threw `failure`: 503 with Retry-After when the
// store cannot be reached (a lost PostgreSQL connection, or a failed ping), so that clients retry.
// Otherwise the failure propagates and the HTTP server responds 500.
asio::awaitable<revdesk::http::response>
store_failure_response(revdesk::store& store, std::exception_ptr failure, std::string const& route) {
    bool unreachable = false;
    std::string what;
    try {
        std::rethrow_exception(failure);
    } catch (revdesk::postgres_error const& e) {
        unreachable = e.connection_lost();
        what = e.what();
    } catch (std::exception const& e) {
        what = e.what();
    }
    if (!unreachable) {
        unreachable = !co_await store.ping();
    }
    if (!unreachable) {
        std::rethrow_exception(failure);
    }
    spdlog::error("{} failed because the store is unavailable: {}", route, what);
    auto res = revdesk::server::error_response(
        {503, "store_unavailable",
         "the server cannot reach its store right now, so the request may not have been applied; "
         "retry in a few seconds, and publish with the same Idempotency-Key so that an event "
         "stored before the failure is not queued twice",
         ""});
    res.headers.add("Retry-After", "2");
    co_return res;
}

// Returns the TLS context of the API when --tls-cert and --tls-key are set, or nothing when
// neither is (plain HTTP).
std::optional<asio::ssl::context> api_tls(settings const& config) {
    if (config.tls_cert.empty() && config.tls_key.empty()) {
        return std::nullopt;
    }
    if (config.tls_key.empty() || config.tls_cert.empty()) {
        auto present = config.tls_key.empty() ? "--tls-cert" : "--tls-key";
        auto missing = config.tls_key.empty() ? "--tls-key" : "--tls-cert";
        throw std::invalid_argument(std::string(present) + " is set but " + missing +
                                    " is missing: set both (the PEM certificate chain and its "
                                    "private key) for HTTPS, or neither for plain HTTP");
    }
    try {
        return revdesk::http::server_tls_context(config.tls_cert, config.tls_key);
    } catch (std::runtime_error const& e) {
        throw std::runtime_error(
            std::string("failed to load the TLS settings --tls-cert and --tls-key: ") + e.what());
    }
}

int serve(settings const& config) {
    auto listen_on = parse_listen(config.listen);
    auto tls_server = api_tls(config);
    std::string const scheme = tls_server ? "https" : "http";

    revdesk::address_policy policy;
    for (auto const& entry : config.allow_targets) {
        // "A, B" in the environment or a config file leaves spaces around the ranges.
        auto first = entry.find_first_not_of(' ');
        auto text = first == std::string::npos
                        ? std::string()
                        : entry.substr(first, entry.find_last_not_of(' ') - first + 1);
        auto range = revdesk::cidr::parse(text);
        if (!range) {
            throw std::invalid_argument(
                "invalid --allow-target \"" + text +
                "\": write an address or a range with its host bits zero, such as 127.0.0.1/32, "
                "10.0.0.0/8 or ::1/128");
        }
        policy.allow(*range);
        // Such a range lets any subscriber make the server send requests to the machine's
        // cloud metadata service (IPv4, and AWS's IPv6 address).
        for (auto const* metadata : {"169.254.169.254", "fd00:ec2::254"}) {
            if (range->contains(asio::ip::make_address(metadata))) {
                spdlog::warn("--allow-target {} includes the cloud metadata address {}: any "
                             "subscriber could make this server send requests to it; allow a "
                             "narrower range",
                             text, metadata);
            }
        }
    }
    if (!config.allow_targets.empty() || config.allow_http) {
        std::string ranges;
        for (auto const& range : policy.allowed()) {
            ranges += (ranges.empty() ? "" : ", ") + range.to_string();
        }
        spdlog::info("deliveries may go to public addresses{}{}",
                     ranges.empty() ? "" : " and to " + ranges,
                     config.allow_http ? "; plain http URLs are allowed" : "");
    }

    revdesk::retry_policy retries;
    auto schedule = revdesk::retry_policy::parse_schedule(config.retry_schedule);
    if (auto* message = std::get_if<std::string>(&schedule)) {
        throw std::invalid_argument("--retry-schedule: " + *message);
    }
    retries.schedule = std::get<0>(schedule);

    asio::io_context io(1);
    asio::ssl::context tls_client(asio::ssl::context::tls_client);
    tls_client.set_default_verify_paths();
    tls_client.set_verify_mode(asio::ssl::verify_peer);
    if (!config.ca_file.empty()) {
        std::error_code ec;
        tls_client.load_verify_file(config.ca_file, ec);
        if (ec) {
            throw std::invalid_argument("cannot load --ca-file \"" + config.ca_file + "\": " +
                                        ec.message() + "; give a PEM file of CA certificates");
        }
    }

    auto store = open_store(config, io);
    [[maybe_unused]] auto server_lock = lock_for_one_server(config.store);
    auto resolver = make_resolver(parse_resolve_overrides(config.resolve));
    revdesk::http::client_options client_options;
    client_options.threads = config.delivery_threads;
    client_options.kept_response_fields = revdesk::dispatcher_response_fields();
    revdesk::http::client client(io.get_executor(), tls_client, policy, client_options, resolver);

    revdesk::dispatcher_options options;
    options.allow_http = config.allow_http;
    options.retries = retries;
    options.max_per_origin = config.max_per_origin;
    options.max_in_flight = config.max_in_flight;
    options.max_unrecorded = config.max_unrecorded;
    options.attempt_timeout = std::chrono::seconds(config.attempt_timeout_s);
    auto retention = parse_retention(config.retention);
    if (retention && *retention < std::chrono::hours(24)) {
        spdlog::warn("--retention {} is shorter than the 24-hour idempotency window: a publish "
                     "that repeats the Idempotency-Key of a purged event is stored again",
                     config.retention);
    }
    // With the largest jitter, the last retry comes this long after the event's creation.
    auto retry_span = std::chrono::milliseconds(0);
    for (auto delay : retries.schedule) {
        retry_span += delay + delay / 5;
    }
    if (retention && *retention <= retry_span) {
        spdlog::warn("--retention {} is shorter than the retry schedule ({} s with jitter): a "
                     "message that fails on its last attempt is purged soon after; keep the "
                     "retention above the schedule",
                     config.retention,
                     std::chrono::duration_cast<std::chrono::seconds>(retry_span).count());
    }
    options.lease = parse_duration("--lease", config.lease, "60s or 2m");
    if (store->shared() && options.lease <= options.attempt_timeout) {
        throw std::invalid_argument("--lease " + config.lease + " must be longer than "
                                    "--attempt-timeout " + std::to_string(config.attempt_timeout_s) +
                                    "s, or another server could take a delivery over during its "
                                    "attempt");
    }
    options.on_error = [](std::string_view what) { spdlog::error("{}", what); };
    revdesk::server::metrics stats;
    options.on_attempt = [&stats](revdesk::attempt const& a, revdesk::delivery const& d,
                                  revdesk::subscription const& s) {
        constexpr std::array<char const*, 4> outcomes{"retrying", "delivered", "failed",
                                                      "cancelled"};
        auto const* outcome = outcomes.at(static_cast<std::size_t>(d.state));
        stats.count_attempt(static_cast<double>(a.duration_ms) / 1000.0, outcome);
        boost::json::object fields;
        fields["delivery"] = d.id;
        fields["subscription"] = s.id;
        fields["attempt"] = a.number;
        fields["status"] = a.status;
        fields["duration_ms"] = a.duration_ms;
        fields["outcome"] = outcome;
        if (d.state == revdesk::delivery_state::delivered) {
            log_with(spdlog::level::debug, fields, "delivered {} to {} (attempt {}, status {}, {} ms)",
                     d.id, s.id, a.number, a.status, a.duration_ms);
            return;
        }
        // The receiver's response is escaped and cut short: it is not ours to trust.
        auto error = a.error.empty() ? revdesk::server::printable(a.response_body, 200) : a.error;
        fields["error"] = error;
        // Status 0 means that no response arrived, so the error names the reason.
        auto outcome_text =
            a.status != 0 ? std::to_string(a.status) + " " + error : "no response, " + error;
        log_with(spdlog::level::warn, fields,
                 "attempt {} of {} to subscription {} failed: {} ({} ms); now {}", a.number, d.id,
                 s.id, outcome_text, a.duration_ms,
                 d.state == revdesk::delivery_state::pending ? "retrying" : "given up");
    };
    revdesk::dispatcher dispatcher(io.get_executor(), *store, client, policy, options);

    revdesk::server::key_ring keys;
    std::string shown_key;
    if (auto const* key = std::getenv("REVDESK_API_KEY"); key && *key) {
        keys.add(key, "default");
    }
    auto stored_keys = run_on(io, store->load_keys());
    if (stored_keys.empty() && keys.empty()) {
        // The first start without any key: one development key goes into the store, so it
        // stays valid across restarts, and is shown only this once.
        auto created = make_key("default");
        run_on(io, store->insert_key(created.record));
        stored_keys.push_back(created.record);
        shown_key = created.secret;
    }
    keys.replace_stored(stored_keys);
    revdesk::server::api routes(dispatcher, *store, keys, policy, config.allow_http, resolver);
    revdesk::http::server_options server_options;
    server_options.on_error = [](std::string_view what) { spdlog::warn("{}", what); };
    revdesk::http::server* server_of_metrics = nullptr;
    revdesk::http::server http_server(
        io.get_executor(),
        [&routes, &stats, &dispatcher, &server_of_metrics, &store](
            revdesk::http::request& req, revdesk::http::request_context const& context)
            -> asio::awaitable<revdesk::http::response> {
            auto started = std::chrono::steady_clock::now();
            revdesk::server::request_facts facts;
            revdesk::http::response res;
            if (req.target.substr(0, req.target.find('?')) == "/metrics") {
                facts.route = "/metrics";
                if (req.method != "GET" && req.method != "HEAD") {
                    res = revdesk::server::error_response(
                        {405, "method_not_allowed", "this path accepts only GET, HEAD", ""});
                    res.headers.add("Allow", "GET, HEAD");
                } else {
                    res.status = 200;
                    res.headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
                    res.body =
                        stats.render(dispatcher.queued(), dispatcher.in_flight(),
                                     server_of_metrics ? server_of_metrics->connections() : 0);
                }
            } else {
                std::exception_ptr failure;
                try {
                    res = co_await routes.handle(req, context, facts);
                } catch (std::exception const&) {
                    failure = std::current_exception();
                }
                if (failure) {
                    res = co_await store_failure_response(*store, failure, facts.route);
                }
            }
            stats.count_request(req.method, facts.route, res.status);
            if (facts.route == "/api/v1/events" && res.status == 202 &&
                !res.headers.find("Idempotent-Replayed")) {
                stats.count_event();
            }
            auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                                  started);
            log_request(req.method, facts.route, res.status, took.count(), facts.workspace);
            co_return res;
        },
        server_options, tls_server ? &*tls_server : nullptr);
    server_of_metrics = &http_server;
    try {
        http_server.listen(listen_on);
    } catch (std::system_error const& e) {
        throw std::runtime_error("cannot listen on " + config.listen + ": " + e.code().message() +
                                 "; stop the process that uses it or choose another --listen");
    }
    auto bound = http_server.local_endpoint();

    bool failed = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await dispatcher.start();
            spdlog::info("revdesk-server listening on {}://{} with store {} ({} subscriptions, "
                         "{} messages queued for delivery)",
                         scheme, curl_host(bound), store_label(config, *store),
                         dispatcher.subscriptions().size(), dispatcher.queued());
            if (!shown_key.empty()) {
                spdlog::info("created a development API key for workspace default; it is shown "
                             "only now (manage keys with revdesk-server keys): {}",
                             shown_key);
            }
            asio::co_spawn(io, reload_keys(*store, keys), [](std::exception_ptr failure) {
                if (failure) {
                    spdlog::error("reloading API keys stopped");
                }
            });
            if (retention) {
                asio::co_spawn(io, purge_finished_events(*store, *retention),
                               [](std::exception_ptr failure) {
                                   if (failure) {
                                       spdlog::error("purging finished events stopped");
                                   }
                               });
            }
            auto key = shown_key.empty() ? std::string("$REVDESK_API_KEY") : shown_key;
            spdlog::info(
                "subscribe a receiver (put your {} URL in place of the example): curl -X POST "
                "{}://{}/api/v1/webhook_subscriptions -H \"Authorization: "
                "Bearer {}\" -H \"Content-Type: application/json\" -d '{{ \"webhook_url\": "
                "\"https://receiver.example/hooks/revdesk\", \"event_type\": \"call_completed\" }}'",
                config.allow_http ? "http or https" : "https", scheme, curl_host(bound), key);
            co_await http_server.run();
        },
        [&](std::exception_ptr failure) {
            if (failure) {
                try {
                    std::rethrow_exception(failure);
                } catch (std::exception const& e) {
                    spdlog::critical("server stopped: {}", e.what());
                }
                failed = true;
                io.stop();
            }
        });

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int signal) {
        if (ec) {
            return;
        }
        spdlog::info("received signal {}, stopping", signal);
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                auto forced = co_await http_server.shutdown(std::chrono::seconds(10));
                auto left = co_await dispatcher.drain(std::chrono::seconds(10));
                spdlog::info("stopped: {} connections closed by force, {} attempts left in flight "
                             "(they resume on the next start)",
                             forced, left);
                io.stop();
            },
            asio::detached);
    });

    io.run();
    return failed ? 1 : 0;
}

} // namespace

int main(int argc, char** argv) {
    settings config;
    CLI::App app{"revdesk-server: delivers RevDesk webhook events to subscribed HTTPS URLs"};
    app.option_defaults()->always_capture_default();
    // REVDESK_CONFIG names the config file when --config does not; a file named either way must
    // exist.
    auto const* config_from_environment = std::getenv("REVDESK_CONFIG");
    bool const config_named = config_from_environment != nullptr && *config_from_environment;
    app.set_config("--config", config_named ? config_from_environment : "",
                   "A config file of KEY = VALUE lines (TOML), the keys named like the options "
                   "without '--'; or give REVDESK_CONFIG. Default: none",
                   config_named);
    app.config_formatter(std::make_shared<config_below_environment>(app));
    app.allow_config_extras(CLI::config_extras_mode::error);
    define_options(app, config);
    name_environment_variables(app);
    app.footer(
        "Each option is read from, first to last: the command line, the environment variable "
        "shown as Env, the config file, the default shown after '='. REVDESK_API_KEY adds an "
        "API key of workspace default besides the stored ones.");

    std::string key_workspace;
    std::string key_id;
    auto* keys = app.add_subcommand("keys", "Create, list or revoke API keys in the store");
    keys->require_subcommand(1);
    keys->fallthrough();
    auto* create = keys->add_subcommand(
        "create", "Create an API key for a workspace and print it as the last line");
    create->add_option("--workspace", key_workspace, "The workspace the key belongs to")
        ->required();
    create->fallthrough();
    auto* list =
        keys->add_subcommand("list", "List the keys: id, workspace, hint, created, revoked");
    list->fallthrough();
    auto* revoke = keys->add_subcommand("revoke", "Revoke a key by its id; it stops working");
    revoke->add_option("id", key_id, "The key id, such as key_...")->required();
    revoke->fallthrough();
    auto* migrate_command = app.add_subcommand(
        "migrate", "Bring the store's schema up to this version and exit (the server also does "
                   "it when it starts)");
    migrate_command->fallthrough();
    try {
        app.parse(argc, argv);
    } catch (CLI::ConfigError const& e) {
        // CLI11 words an unknown key as "INI was not able to parse KEY".
        std::string message = e.what();
        constexpr std::string_view unknown = "INI was not able to parse ";
        if (message.starts_with(unknown)) {
            message = "unknown key \"" + message.substr(unknown.size()) +
                      "\": the keys are the option names without '--', such as listen (see "
                      "--help)";
        }
        std::cerr << "invalid config file: " << message << std::endl;
        return e.get_exit_code();
    } catch (CLI::ParseError const& e) {
        return app.exit(e);
    }

    use_log_format(config.log_format);
    try {
        if (keys->parsed()) {
            auto action = create->parsed() ? "create" : list->parsed() ? "list" : "revoke";
            return manage_keys(config, action, key_workspace, key_id);
        }
        if (migrate_command->parsed()) {
            return migrate(config);
        }
        return serve(config);
    } catch (std::exception const& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
