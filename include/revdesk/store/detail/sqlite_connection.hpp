// A thin RAII layer over one SQLite connection, which reports errors as exceptions and caches
// prepared statements.
//
// Not thread-safe. One thread at a time uses a connection (the store's worker thread).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace revdesk {

/// An error reported by SQLite, with its extended result code (such as
/// `SQLITE_CONSTRAINT_PRIMARYKEY`) for callers that branch on the cause.
class sqlite_error : public std::runtime_error {
public:
    sqlite_error(int code, std::string const& message)
        : std::runtime_error(message)
        , code_(code) {}

    /// The extended result code, such as `SQLITE_BUSY_TIMEOUT`.
    int code() const noexcept { return code_; }

private:
    int code_;
};

} // namespace revdesk

namespace revdesk::detail {

/// One prepared statement in use. Binds parameters by 1-based index and steps through rows. The
/// destructor resets the statement and clears its bindings so the cache can hand it out again.
///
/// Text and blob parameters are bound without copying (`SQLITE_STATIC`), so the bound strings
/// must outlive the last `step`.
class sqlite_statement {
public:
    sqlite_statement(sqlite3_stmt* stmt, std::string const* label) noexcept
        : stmt_(stmt)
        , label_(label) {}
    sqlite_statement(sqlite_statement const&) = delete;
    sqlite_statement& operator=(sqlite_statement const&) = delete;
    ~sqlite_statement() {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }

    void bind(int index, std::int64_t value) { check(sqlite3_bind_int64(stmt_, index, value)); }

    void bind(int index, std::string_view text) {
        // A null pointer would bind NULL instead of an empty string.
        check(sqlite3_bind_text64(stmt_, index, text.data() == nullptr ? "" : text.data(),
                                  text.size(), SQLITE_STATIC, SQLITE_UTF8));
    }

    /// Binds bytes as a BLOB so that SQLite stores them unchanged, including an empty value.
    void bind_blob(int index, std::string_view bytes) {
        // A null pointer would bind NULL instead of an empty BLOB.
        static char const empty = 0;
        check(sqlite3_bind_blob64(stmt_, index, bytes.empty() ? &empty : bytes.data(), bytes.size(),
                                  SQLITE_STATIC));
    }

    void bind_null(int index) { check(sqlite3_bind_null(stmt_, index)); }

    /// Runs the statement up to its next row. Returns true when a row is available, false when
    /// the statement has finished. Throws sqlite_error on failure.
    bool step() {
        int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) {
            return true;
        }
        if (rc == SQLITE_DONE) {
            return false;
        }
        fail(rc);
    }

    /// Runs a statement that returns no rows.
    void run() {
        while (step()) {
        }
    }

    bool is_null(int column) const noexcept {
        return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
    }

    std::int64_t int64(int column) const noexcept { return sqlite3_column_int64(stmt_, column); }

    std::string text(int column) const {
        auto data = reinterpret_cast<char const*>(sqlite3_column_text(stmt_, column));
        auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column));
        return data == nullptr ? std::string() : std::string(data, size);
    }

    /// Returns a BLOB column's bytes (a zero-length BLOB comes back as a null pointer).
    std::string blob(int column) const {
        auto data = static_cast<char const*>(sqlite3_column_blob(stmt_, column));
        auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column));
        return data == nullptr ? std::string() : std::string(data, size);
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) {
            fail(rc);
        }
    }

    [[noreturn]] void fail(int rc) {
        sqlite3* db = sqlite3_db_handle(stmt_);
        std::string message = sqlite3_errmsg(db);
        std::string generic = sqlite3_errstr(rc);
        if (message != generic) {
            message += " (" + generic + ")";
        }
        throw sqlite_error(sqlite3_extended_errcode(db),
                           "SQLite database '" + *label_ + "': " + message);
    }

    sqlite3_stmt* stmt_;
    std::string const* label_;
};

/// An open SQLite connection that finalizes its cached statements and closes on destruction.
class sqlite_connection {
public:
    /// Opens or creates the database file at `path`. Throws sqlite_error naming the path and
    /// SQLite's message (with the operating system's error, when there is one) on failure.
    explicit sqlite_connection(std::string path)
        : path_(std::move(path)) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
        if (rc != SQLITE_OK) {
            std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            int system_error = db_ != nullptr ? sqlite3_system_errno(db_) : 0;
            if (system_error != 0) {
                message += " (" + std::string(std::strerror(system_error)) + ")";
            }
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw sqlite_error(rc, "cannot open SQLite database '" + path_ + "': " + message);
        }
        sqlite3_extended_result_codes(db_, 1);
    }

    sqlite_connection(sqlite_connection const&) = delete;
    sqlite_connection& operator=(sqlite_connection const&) = delete;

    ~sqlite_connection() {
        for (auto& [sql, stmt] : statements_) {
            sqlite3_finalize(stmt);
        }
        // With every statement finalized, close cannot report SQLITE_BUSY.
        sqlite3_close_v2(db_);
    }

    sqlite3* handle() const noexcept { return db_; }
    std::string const& path() const noexcept { return path_; }

    /// Runs one or more SQL statements that return no rows, without caching them.
    void execute(char const* sql) {
        char* error = nullptr;
        int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
        if (rc != SQLITE_OK) {
            std::string message = error != nullptr ? error : sqlite3_errstr(rc);
            sqlite3_free(error);
            throw sqlite_error(sqlite3_extended_errcode(db_),
                               "SQLite database '" + path_ + "': " + message);
        }
    }

    /// Returns the cached statement for `sql`, preparing it on first use. `sql` must point to
    /// storage that outlives the connection, such as a string literal, because it is the cache key.
    sqlite_statement prepare(std::string_view sql) {
        auto found = statements_.find(sql);
        if (found == statements_.end()) {
            sqlite3_stmt* stmt = nullptr;
            int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                        SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
            if (rc != SQLITE_OK) {
                throw sqlite_error(sqlite3_extended_errcode(db_),
                                   "SQLite database '" + path_ + "': cannot prepare '" +
                                       std::string(sql) + "': " + sqlite3_errmsg(db_));
            }
            found = statements_.emplace(sql, stmt).first;
        }
        return sqlite_statement(found->second, &path_);
    }

    /// Returns the number of rows that the last INSERT, UPDATE or DELETE changed.
    std::int64_t changes() const noexcept { return sqlite3_changes64(db_); }

    /// Returns true while a transaction is open. SQLite ends a transaction by itself after some
    /// errors (such as SQLITE_FULL or SQLITE_IOERR), which this detects.
    bool in_transaction() const noexcept { return sqlite3_get_autocommit(db_) == 0; }

    /// Runs a single-row query and returns its first column as an integer.
    std::int64_t query_int64(std::string_view sql) {
        auto stmt = prepare(sql);
        if (!stmt.step()) {
            throw sqlite_error(SQLITE_ERROR, "SQLite database '" + path_ + "': '" +
                                                 std::string(sql) + "' returned no row");
        }
        return stmt.int64(0);
    }

    /// Runs a single-row query and returns its first column as text.
    std::string query_text(std::string_view sql) {
        auto stmt = prepare(sql);
        if (!stmt.step()) {
            throw sqlite_error(SQLITE_ERROR, "SQLite database '" + path_ + "': '" +
                                                 std::string(sql) + "' returned no row");
        }
        return stmt.text(0);
    }

    /// Rolls back the open transaction, if any. Errors are ignored because the callers run it
    /// while already handling a failure.
    void rollback_quietly() noexcept {
        if (in_transaction()) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        }
    }

private:
    std::string path_;
    sqlite3* db_ = nullptr;
    std::unordered_map<std::string_view, sqlite3_stmt*> statements_;
};

} // namespace revdesk::detail
