// One libpq connection driven without blocking from asio: connect, queries with parameters,
// prepared statements and notifications.
#pragma once

#include <libpq-fe.h>
#include <poll.h>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/error.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace revdesk {

/// A failure that PostgreSQL or libpq reported, with its SQLSTATE (such as `23505` for a unique
/// violation, or `08006` when the connection broke). The message never contains a password.
class postgres_error : public std::runtime_error {
public:
    postgres_error(std::string sqlstate, std::string const& message)
        : std::runtime_error(message)
        , sqlstate_(std::move(sqlstate)) {}

    /// The five-character SQLSTATE code.
    std::string const& sqlstate() const noexcept { return sqlstate_; }

    /// True when the error class is 08 (connection exception) or 57P (operator intervention,
    /// such as a server shutdown), after which the connection is not used again.
    bool connection_lost() const noexcept {
        return sqlstate_.starts_with("08") || sqlstate_.starts_with("57P");
    }

private:
    std::string sqlstate_;
};

} // namespace revdesk

namespace revdesk::detail {

/// Returns libpq's message on one line: libpq ends it with a newline and continues some messages
/// on indented lines, which would break a log's one line per message.
inline std::string trimmed_message(char const* message) {
    std::string text;
    bool line_break = false;
    for (char const* c = message != nullptr ? message : ""; *c != '\0'; ++c) {
        if (*c == '\n' || *c == '\r') {
            line_break = true;
            continue;
        }
        if (line_break && (*c == '\t' || *c == ' ')) {
            continue; // the indentation of a continuation line
        }
        if (line_break && !text.empty()) {
            text += ' ';
        }
        line_break = false;
        text += *c;
    }
    while (!text.empty() && text.back() == ' ') {
        text.pop_back();
    }
    return text.empty() ? "unknown libpq error" : text;
}

/// One parameter of a query. Text parameters travel in binary format with their length, so their
/// bytes reach the server unchanged and a NUL byte is rejected instead of cutting the value short.
/// Integers and array literals travel as text.
struct pg_param {
    std::string value;
    bool is_null = false;
    bool binary = true;

    static pg_param text(std::string_view v) { return {std::string(v), false, true}; }
    static pg_param bytes(std::string_view v) { return {std::string(v), false, true}; }
    static pg_param int64(std::int64_t v) { return {std::to_string(v), false, false}; }
    static pg_param boolean(bool v) { return {v ? "true" : "false", false, false}; }
    static pg_param null() { return {std::string(), true, false}; }

    /// Returns a `bigint[]` literal of `items`.
    static pg_param int64_array(std::vector<std::int64_t> const& items) {
        std::string literal = "{";
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (i != 0) {
                literal += ',';
            }
            literal += std::to_string(items[i]);
        }
        literal += '}';
        return {std::move(literal), false, false};
    }

    /// Returns a `text[]` literal of `items`, every element quoted. Array literals travel as
    /// text, which ends at a NUL byte: an element with one makes the literal malformed, and the
    /// server rejects it.
    static pg_param text_array(std::vector<std::string> const& items) {
        std::string literal = "{";
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (i != 0) {
                literal += ',';
            }
            literal += '"';
            for (char c : items[i]) {
                if (c == '"' || c == '\\') {
                    literal += '\\';
                }
                literal += c;
            }
            literal += '"';
        }
        literal += '}';
        return {std::move(literal), false, false};
    }
};

/// Owns a PGresult and reads its rows in text format.
class pg_result {
public:
    pg_result() = default;
    explicit pg_result(PGresult* result)
        : result_(result, &PQclear) {}

    int rows() const noexcept { return result_ ? PQntuples(result_.get()) : 0; }

    bool is_null(int row, int column) const {
        return PQgetisnull(result_.get(), row, column) != 0;
    }

    std::string text(int row, int column) const {
        return std::string(PQgetvalue(result_.get(), row, column),
                           static_cast<std::size_t>(PQgetlength(result_.get(), row, column)));
    }

    std::int64_t int64(int row, int column) const {
        return std::strtoll(PQgetvalue(result_.get(), row, column), nullptr, 10);
    }

    bool boolean(int row, int column) const {
        return PQgetvalue(result_.get(), row, column)[0] == 't';
    }

    /// Decodes a `bytea` column, which the server sends in hex form (`\x` and two digits a byte).
    std::string bytes(int row, int column) const {
        std::string_view hex(PQgetvalue(result_.get(), row, column),
                             static_cast<std::size_t>(PQgetlength(result_.get(), row, column)));
        if (!hex.starts_with("\\x")) {
            throw std::runtime_error("PostgreSQL sent bytea in a form other than hex");
        }
        auto digit = [](char c) -> int {
            if (c >= '0' && c <= '9') {
                return c - '0';
            }
            if (c >= 'a' && c <= 'f') {
                return c - 'a' + 10;
            }
            if (c >= 'A' && c <= 'F') {
                return c - 'A' + 10;
            }
            throw std::runtime_error("PostgreSQL sent an invalid hex digit in bytea");
        };
        std::string out;
        out.reserve((hex.size() - 2) / 2);
        for (std::size_t i = 2; i + 1 < hex.size(); i += 2) {
            out.push_back(static_cast<char>(digit(hex[i]) * 16 + digit(hex[i + 1])));
        }
        return out;
    }

    /// Returns the number of rows that an INSERT, UPDATE or DELETE changed.
    std::size_t affected() const {
        char const* count = result_ ? PQcmdTuples(result_.get()) : "";
        return count[0] == '\0' ? 0 : static_cast<std::size_t>(std::strtoull(count, nullptr, 10));
    }

private:
    std::shared_ptr<PGresult> result_;
};

/// Returns a description of the server that `conn` connects to, such as
/// `host=127.0.0.1 port=5432 dbname=revdesk user=revdesk`. It never contains the password.
inline std::string describe_target(PGconn const* conn) {
    if (conn == nullptr) {
        return "(no connection)";
    }
    auto* c = const_cast<PGconn*>(conn);
    auto field = [](char const* value) { return std::string(value != nullptr ? value : ""); };
    return "host=" + field(PQhost(c)) + " port=" + field(PQport(c)) + " dbname=" +
           field(PQdb(c)) + " user=" + field(PQuser(c));
}

/// One connection to PostgreSQL. Every member function must run on the executor that the
/// connection was created with, one at a time: libpq allows a single query in flight.
class pg_connection {
public:
    explicit pg_connection(asio::any_io_executor executor)
        : socket_(executor)
        , timer_(executor) {}

    pg_connection(pg_connection const&) = delete;
    pg_connection& operator=(pg_connection const&) = delete;

    ~pg_connection() { close(); }

    /// Releases the socket from asio (libpq owns the descriptor) and closes the connection.
    void close() noexcept {
        if (socket_.is_open()) {
            std::error_code ignored;
            socket_.cancel(ignored);
            (void)socket_.release();
        }
        if (conn_ != nullptr) {
            PQfinish(conn_);
            conn_ = nullptr;
        }
        prepared_.clear();
    }

    /// Cancels a pending wait on the socket, so that the waiting coroutine resumes with an error.
    void cancel() noexcept {
        std::error_code ignored;
        socket_.cancel(ignored);
    }

    /// True while the connection can run queries.
    bool ok() const noexcept { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

    PGconn* handle() const noexcept { return conn_; }

    /// Connects with `conninfo` (libpq keyword/value form or a URI). Throws postgres_error with
    /// SQLSTATE 08001 naming the server (never the password) when the connection fails or takes
    /// longer than `timeout`.
    asio::awaitable<void> connect(std::string const& conninfo, std::chrono::milliseconds timeout) {
        close();
        char const* keys[] = {"dbname", "client_encoding", "fallback_application_name", nullptr};
        char const* values[] = {conninfo.c_str(), "UTF8", "revdesk", nullptr};
        conn_ = PQconnectStartParams(keys, values, 1);
        if (conn_ == nullptr) {
            throw postgres_error("08001", "cannot connect to PostgreSQL: out of memory");
        }
        if (PQstatus(conn_) == CONNECTION_BAD) {
            // libpq rejected the string itself. Its message may quote parts of the string, which
            // can contain the password, so it is not repeated.
            close();
            throw postgres_error("08001",
                                 "cannot connect to PostgreSQL: the connection string is not valid "
                                 "libpq syntax (key=value pairs or a postgresql:// URI)");
        }

        // Shared with the timer's handler, which may run after this coroutine has finished.
        struct deadline {
            bool finished = false;
            bool timed_out = false;
        };
        auto limit = std::make_shared<deadline>();
        timer_.expires_after(timeout);
        timer_.async_wait([this, limit](std::error_code ec) {
            if (!ec && !limit->finished) {
                limit->timed_out = true;
                cancel();
            }
        });
        std::string failure;
        for (;;) {
            auto state = PQconnectPoll(conn_);
            if (state == PGRES_POLLING_OK) {
                break;
            }
            if (state == PGRES_POLLING_FAILED) {
                failure = trimmed_message(PQerrorMessage(conn_));
                break;
            }
            // The socket can change while libpq tries the addresses of a host one by one.
            if (!rewrap_socket()) {
                failure = "libpq has no socket";
                break;
            }
            std::error_code ec;
            auto wait = state == PGRES_POLLING_WRITING ? asio::posix::descriptor_base::wait_write
                                                       : asio::posix::descriptor_base::wait_read;
            co_await socket_.async_wait(wait, asio::redirect_error(asio::use_awaitable, ec));
            if (limit->timed_out) {
                failure = "no connection after " + std::to_string(timeout.count()) + " ms";
                break;
            }
            if (ec) {
                failure = ec.message();
                break;
            }
        }
        limit->finished = true;
        timer_.cancel();

        if (!failure.empty()) {
            std::string target = describe_target(conn_);
            close();
            throw postgres_error("08001", "cannot connect to PostgreSQL at " + target + ": " +
                                              failure +
                                              "; check that the server is running and accepts "
                                              "connections there, and that the connection "
                                              "string names the right host, port, database, "
                                              "user and password");
        }
        // Notices (such as "relation already exists, skipping") are not errors; they are
        // dropped instead of being printed to stderr by libpq.
        PQsetNoticeReceiver(conn_, [](void*, PGresult const*) {}, nullptr);
        if (PQsetnonblocking(conn_, 1) != 0 || !rewrap_socket()) {
            std::string message = trimmed_message(PQerrorMessage(conn_));
            close();
            throw postgres_error("08001", "cannot use the PostgreSQL connection: " + message);
        }
    }

    /// Runs `sql` with the simple query protocol, which admits several statements.
    asio::awaitable<pg_result> execute(std::string const& sql) {
        check_usable();
        if (PQsendQuery(conn_, sql.c_str()) == 0) {
            throw_send_failure();
        }
        co_return co_await finish();
    }

    /// Runs `sql` with `params` as a statement that is prepared once on this connection.
    asio::awaitable<pg_result> query(std::string const& sql, std::vector<pg_param> const& params) {
        check_usable();
        auto found = prepared_.find(sql);
        std::string name;
        if (found == prepared_.end()) {
            name = "revdesk_" + std::to_string(prepared_.size() + 1);
            if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), static_cast<int>(params.size()),
                              nullptr) == 0) {
                throw_send_failure();
            }
            co_await finish();
            prepared_.emplace(sql, name);
        } else {
            name = found->second;
        }

        std::vector<char const*> values;
        std::vector<int> lengths;
        std::vector<int> formats;
        for (auto const& p : params) {
            values.push_back(p.is_null ? nullptr : p.value.c_str());
            lengths.push_back(static_cast<int>(p.value.size()));
            formats.push_back(p.binary ? 1 : 0);
        }
        if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(params.size()),
                                values.data(), lengths.data(), formats.data(), 0) == 0) {
            throw_send_failure();
        }
        co_return co_await finish();
    }

    /// Waits until the server sends something, then calls `on_notify(channel, payload)` for each
    /// notification received. Throws postgres_error when the connection breaks, and
    /// std::system_error when the wait was cancelled.
    asio::awaitable<void>
    wait_notifications(std::function<void(std::string, std::string)> const& on_notify) {
        check_usable();
        deliver_notifications(on_notify);
        std::error_code ec;
        co_await socket_.async_wait(asio::posix::descriptor_base::wait_read,
                                    asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            throw std::system_error(ec, "waiting for PostgreSQL notifications");
        }
        if (PQconsumeInput(conn_) == 0) {
            throw lost();
        }
        deliver_notifications(on_notify);
        if (PQstatus(conn_) != CONNECTION_OK) {
            throw lost();
        }
    }

    /// Checks an idle connection without waiting: reads what the server sent (such as the notice
    /// of a shutdown) and returns false when the connection is gone.
    bool still_alive() noexcept {
        // One read may return the server's termination message and the next one the end of the
        // stream, so read while the socket has something, without waiting.
        for (int reads = 0; reads < 8 && ok(); ++reads) {
            pollfd readable{PQsocket(conn_), POLLIN, 0};
            if (::poll(&readable, 1, 0) <= 0) {
                break;
            }
            if (PQconsumeInput(conn_) == 0) {
                return false;
            }
            // Notifications on a pool connection are of no interest.
            while (PGnotify* n = PQnotifies(conn_)) {
                PQfreemem(n);
            }
        }
        return ok();
    }

private:
    bool rewrap_socket() {
        int fd = PQsocket(conn_);
        if (fd < 0) {
            return false;
        }
        if (socket_.is_open() && socket_.native_handle() == fd) {
            return true;
        }
        if (socket_.is_open()) {
            (void)socket_.release();
        }
        std::error_code ec;
        socket_.assign(fd, ec);
        return !ec;
    }

    void check_usable() const {
        if (!ok()) {
            throw postgres_error("08003", "the PostgreSQL connection is closed");
        }
    }

    postgres_error lost() {
        return postgres_error("08006", "lost the PostgreSQL connection: " +
                                           trimmed_message(PQerrorMessage(conn_)));
    }

    [[noreturn]] void throw_send_failure() {
        if (PQstatus(conn_) != CONNECTION_OK) {
            throw lost();
        }
        throw postgres_error("08000", "cannot send a query to PostgreSQL: " +
                                          trimmed_message(PQerrorMessage(conn_)));
    }

    void deliver_notifications(std::function<void(std::string, std::string)> const& on_notify) {
        while (PGnotify* n = PQnotifies(conn_)) {
            std::string channel = n->relname != nullptr ? n->relname : "";
            std::string payload = n->extra != nullptr ? n->extra : "";
            PQfreemem(n);
            on_notify(std::move(channel), std::move(payload));
        }
    }

    // Flushes the query, waits for its results and returns the last one. Throws postgres_error
    // with the server's SQLSTATE for the first error result.
    asio::awaitable<pg_result> finish() {
        std::error_code ec;
        for (;;) {
            int flushed = PQflush(conn_);
            if (flushed == 0) {
                break;
            }
            if (flushed < 0) {
                throw lost();
            }
            // Reading after each wait lets libpq take in what the server sent meanwhile.
            // NOTE: only writability wakes this loop. A query too large for the socket buffers,
            // sent while the server also writes, could stall; the store's queries are far smaller.
            co_await socket_.async_wait(asio::posix::descriptor_base::wait_write,
                                        asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                throw std::system_error(ec, "sending a query to PostgreSQL");
            }
            if (PQconsumeInput(conn_) == 0) {
                throw lost();
            }
        }

        std::optional<postgres_error> error;
        pg_result last;
        for (;;) {
            while (PQisBusy(conn_) != 0) {
                co_await socket_.async_wait(asio::posix::descriptor_base::wait_read,
                                            asio::redirect_error(asio::use_awaitable, ec));
                if (ec) {
                    throw std::system_error(ec, "waiting for a PostgreSQL result");
                }
                if (PQconsumeInput(conn_) == 0) {
                    throw lost();
                }
            }
            PGresult* raw = PQgetResult(conn_);
            if (raw == nullptr) {
                break;
            }
            pg_result result(raw);
            auto status = PQresultStatus(raw);
            if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR ||
                status == PGRES_BAD_RESPONSE) {
                if (!error) {
                    char const* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
                    char const* constraint = PQresultErrorField(raw, PG_DIAG_CONSTRAINT_NAME);
                    std::string message = trimmed_message(PQresultErrorMessage(raw));
                    if (constraint != nullptr) {
                        message += " (constraint " + std::string(constraint) + ")";
                    }
                    error.emplace(state != nullptr ? state : "XX000", message);
                }
            } else {
                last = std::move(result);
            }
            if (PQstatus(conn_) != CONNECTION_OK) {
                break;
            }
        }
        if (PQstatus(conn_) != CONNECTION_OK) {
            if (error && error->connection_lost()) {
                throw *error;
            }
            throw lost();
        }
        if (error) {
            throw *error;
        }
        co_return last;
    }

    PGconn* conn_ = nullptr;
    asio::posix::stream_descriptor socket_;
    asio::steady_timer timer_;
    std::unordered_map<std::string, std::string> prepared_;
};

} // namespace revdesk::detail
