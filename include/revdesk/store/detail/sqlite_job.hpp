// One store operation handed from a caller's coroutine to the SQLite worker thread.
#pragma once

#include <revdesk/store/detail/sqlite_connection.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

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
/// worker thread then calls `execute` (once, or again when a batch is retried) and finally passes
/// the job to `complete` or `complete_all`, which post it to the caller's executor. There `finish`
/// hands the result to the caller and the job is destroyed, so that what the caller's thread
/// allocated for it is freed on that thread too.
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

    /// Posts `job`'s result to its caller's executor, which resumes the awaiting coroutine there.
    static void complete(std::unique_ptr<sqlite_job> job) {
        auto executor = job->untracked_executor();
        asio::post(executor, [job = std::move(job)] { job->finish(); });
    }

    /// Posts `jobs` like complete, one handler for each run of jobs with the same executor, so
    /// that a commit of many writes wakes each caller's thread once. Leaves `jobs` empty.
    static void complete_all(std::vector<std::unique_ptr<sqlite_job>>& jobs) {
        auto first = jobs.begin();
        while (first != jobs.end()) {
            auto last = std::find_if(first, jobs.end(), [&](auto const& job) {
                return job->executor_ != (*first)->executor_;
            });
            post_group(std::vector<std::unique_ptr<sqlite_job>>(std::make_move_iterator(first),
                                                                std::make_move_iterator(last)));
            first = last;
        }
        jobs.clear();
    }

    /// Calls the caller's handler with the result. Runs on the caller's executor.
    virtual void finish() = 0;

protected:
    // The caller's executor, which counts the job as outstanding work until it is destroyed.
    asio::any_io_executor executor_;

private:
    // Returns the caller's executor without its work count, for the worker thread to post with.
    // Only the job's own copy counts, and it ends with the job on the caller's thread. A tracked
    // copy that ended on the worker thread could be the caller's last outstanding work after its
    // io_context::run had returned, so it would stop that io_context and make the next run return
    // at once.
    asio::any_io_executor untracked_executor() const {
        return asio::prefer(executor_, asio::execution::outstanding_work.untracked);
    }

    // Posts one handler that finishes `group`, whose jobs share an executor. A handler that
    // throws leaves the rest of the group to a handler of its own, as separate posts would, and
    // the exception reaches the executor like any handler's.
    static void post_group(std::vector<std::unique_ptr<sqlite_job>> group) {
        auto executor = group.front()->untracked_executor();
        asio::post(executor, [group = std::move(group)]() mutable {
            for (std::size_t i = 0; i < group.size(); ++i) {
                try {
                    group[i]->finish();
                } catch (...) {
                    auto rest = group.begin() + static_cast<std::ptrdiff_t>(i + 1);
                    if (rest != group.end()) {
                        post_group(std::vector<std::unique_ptr<sqlite_job>>(
                            std::make_move_iterator(rest), std::make_move_iterator(group.end())));
                    }
                    throw;
                }
            }
        });
    }

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
        , handler_(std::move(handler)) {
        // Counts as outstanding work, so the caller's io_context::run does not return while the
        // job waits in the queue.
        executor_ = asio::prefer(asio::get_associated_executor(handler_),
                                 asio::execution::outstanding_work.tracked);
    }

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

    void finish() override {
        if constexpr (std::is_void_v<T>) {
            std::move(handler_)(error_);
        } else if (error_) {
            std::move(handler_)(error_, T{});
        } else {
            std::move(handler_)(error_, std::move(*result_));
        }
    }

private:
    using result_type = std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>;

    Work work_;
    Handler handler_;
    std::exception_ptr error_;
    result_type result_{};
};

} // namespace revdesk::detail
