// One store operation handed from a caller's coroutine to the SQLite worker thread.
#pragma once

#include <revdesk/store/detail/sqlite_connection.hpp>

#include <asio/associated_executor.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace revdesk::detail {

/// The completion signature of a job whose work returns `T`.
template <typename T>
struct sqlite_job_signature {
    using type = void(std::exception_ptr, T);
};

template <>
struct sqlite_job_signature<void> {
    using type = void(std::exception_ptr);
};

/// The type-erased form that the worker queue holds.
///
/// Lifecycle: a caller's thread constructs the job and queues it under the store's mutex. The
/// worker thread then calls `execute` (once, or again when a batch is retried) and finally
/// `complete` exactly once, which posts the result to the caller's executor.
class sqlite_job {
public:
    explicit sqlite_job(bool is_write) noexcept
        : is_write_(is_write) {}
    sqlite_job(sqlite_job const&) = delete;
    sqlite_job& operator=(sqlite_job const&) = delete;
    virtual ~sqlite_job() = default;

    /// True when the job changes the database and so runs inside a write transaction.
    bool is_write() const noexcept { return is_write_; }

    /// Runs the work on `connection`, replacing any earlier result. Returns false when the work
    /// threw, and keeps the exception for the caller.
    virtual bool execute(sqlite_connection& connection) noexcept = 0;

    /// Replaces the result with `error`.
    virtual void fail(std::exception_ptr error) noexcept = 0;

    /// Posts the result to the caller's executor, which resumes the awaiting coroutine there.
    virtual void complete() noexcept = 0;

private:
    bool is_write_;
};

/// A job that runs `Work` (callable as `T(sqlite_connection&)`) and completes `Handler` with
/// `(std::exception_ptr)` when `T` is void, otherwise with `(std::exception_ptr, T)`.
template <typename T, typename Work, typename Handler>
class sqlite_job_impl final : public sqlite_job {
public:
    sqlite_job_impl(bool is_write, Work work, Handler handler)
        : sqlite_job(is_write)
        , work_(std::move(work))
        , handler_(std::move(handler))
        // Counts as outstanding work, so the caller's io_context::run does not return while the
        // job waits in the queue.
        , executor_(asio::prefer(asio::get_associated_executor(handler_),
                                 asio::execution::outstanding_work.tracked)) {}

    bool execute(sqlite_connection& connection) noexcept override {
        error_ = nullptr;
        try {
            if constexpr (std::is_void_v<T>) {
                work_(connection);
            } else {
                result_.reset();
                result_.emplace(work_(connection));
            }
            return true;
        } catch (...) {
            error_ = std::current_exception();
            return false;
        }
    }

    void fail(std::exception_ptr error) noexcept override { error_ = std::move(error); }

    void complete() noexcept override {
        auto executor = std::move(executor_);
        asio::post(executor, [handler = std::move(handler_), error = std::move(error_),
                              result = std::move(result_)]() mutable {
            if constexpr (std::is_void_v<T>) {
                std::move(handler)(error);
            } else if (error) {
                std::move(handler)(error, T{});
            } else {
                std::move(handler)(error, std::move(*result));
            }
        });
    }

private:
    using executor_type =
        std::decay_t<decltype(asio::prefer(asio::get_associated_executor(std::declval<Handler&>()),
                                           asio::execution::outstanding_work.tracked))>;
    using result_type = std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>;

    Work work_;
    Handler handler_;
    executor_type executor_;
    std::exception_ptr error_;
    result_type result_{};
};

} // namespace revdesk::detail
