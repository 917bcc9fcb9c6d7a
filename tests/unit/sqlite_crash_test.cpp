#include <revdesk/store/sqlite_store.hpp>

#define BOOST_TEST_MODULE sqlite_crash
#include <boost/test/unit_test.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

// A child process writes events through a sqlite_store and reports each id on a pipe once its
// insert_event has returned. The test kills the child with SIGKILL while writes are in flight,
// reopens the file and checks that every reported id is stored, which shows that an acknowledged
// write survives the death of its process. Power loss is outside what a test can produce;
// docs/storage.md explains why synchronous=FULL covers it.

namespace fs = std::filesystem;

namespace {

constexpr int writers_per_child = 8;

class temporary_directory {
public:
    temporary_directory() {
        std::string pattern = (fs::temp_directory_path() / "revdesk-crash-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
        }
        path_ = pattern;
    }
    temporary_directory(temporary_directory const&) = delete;
    temporary_directory& operator=(temporary_directory const&) = delete;
    ~temporary_directory() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }

    fs::path const& path() const noexcept { return path_; }

private:
    fs::path path_;
};

/// Writes all of `line` to `fd`. Ends the process when that fails, because the child has no one
/// else to report to.
void write_line(int fd, std::string const& line) {
    std::size_t written = 0;
    while (written < line.size()) {
        auto n = ::write(fd, line.data() + written, line.size() - written);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            ::_exit(3);
        }
        written += static_cast<std::size_t>(n);
    }
}

/// Inserts events with one delivery each, forever, and reports each id after it is committed.
asio::awaitable<void> write_events(revdesk::store& store, int fd, std::string prefix) {
    for (long n = 0;; ++n) {
        revdesk::event e;
        e.id = prefix + "_" + std::to_string(n);
        e.workspace = "ws_crash";
        e.type = revdesk::event_type::call_completed;
        e.payload = R"({"id":")" + e.id + R"(","note":"caf\u00e9 )" + "\xE2\x80\xA8" + R"("})";
        e.created_at = n;
        revdesk::delivery d;
        d.id = "msg_" + e.id;
        d.event_id = e.id;
        d.subscription_id = "whk_crash";
        d.type = e.type;
        d.next_attempt_at = n;
        std::vector<revdesk::delivery> deliveries{d};
        co_await store.insert_event(e, deliveries);
        write_line(fd, e.id + "\n");
    }
}

/// Runs the writers of the child process until it is killed. Never returns.
[[noreturn]] void run_child(std::string const& path, int fd, int round) {
    try {
        asio::io_context context;
        revdesk::sqlite_store store(path);
        for (int w = 0; w < writers_per_child; ++w) {
            auto prefix = "evt_r" + std::to_string(round) + "_w" + std::to_string(w);
            asio::co_spawn(context, write_events(store, fd, prefix), [](std::exception_ptr e) {
                if (e) {
                    ::_exit(4);
                }
            });
        }
        context.run();
    } catch (...) {
        ::_exit(2);
    }
    ::_exit(0);
}

/// Reads complete lines from `fd` into `ids` until `target_count` ids have arrived, or until end of
/// file when `target_count` is 0. Returns false when `deadline` passes first.
bool read_ids(int fd, std::set<std::string>& ids, std::string& partial, std::size_t target_count,
              std::chrono::steady_clock::time_point deadline) {
    char buffer[4096];
    for (;;) {
        if (target_count != 0 && ids.size() >= target_count) {
            return true;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return false;
        }
        pollfd p{fd, POLLIN, 0};
        int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            continue;
        }
        auto n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return target_count == 0;
        }
        partial.append(buffer, static_cast<std::size_t>(n));
        for (auto end = partial.find('\n'); end != std::string::npos; end = partial.find('\n')) {
            ids.insert(partial.substr(0, end));
            partial.erase(0, end + 1);
        }
    }
}

std::string integrity_of(std::string const& path) {
    sqlite3* db = nullptr;
    std::string result = "cannot open";
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
            sqlite3_step(stmt) == SQLITE_ROW) {
            result = reinterpret_cast<char const*>(sqlite3_column_text(stmt, 0));
        }
        sqlite3_finalize(stmt);
    }
    sqlite3_close_v2(db);
    return result;
}

std::set<std::string> stored_event_ids(std::string const& path) {
    asio::io_context context;
    revdesk::sqlite_store store(path);
    std::set<std::string> ids;
    bool done = false;
    asio::co_spawn(context, store.load_pending(),
                   [&](std::exception_ptr e, std::vector<revdesk::pending_delivery> pending) {
                       if (e) {
                           std::rethrow_exception(e);
                       }
                       for (auto const& p : pending) {
                           ids.insert(p.source.id);
                       }
                       done = true;
                   });
    context.run_for(std::chrono::seconds(60));
    if (!done) {
        throw std::runtime_error("load_pending did not finish within 60 s");
    }
    return ids;
}

} // namespace

BOOST_AUTO_TEST_CASE(kill_writer_keeps_acknowledged_events) {
    temporary_directory directory;
    auto path = (directory.path() / "crash.db").string();
    std::set<std::string> acknowledged;

    // Each round kills a child after a different number of acknowledgements, on the file that the
    // earlier rounds left behind, so recovery from a killed writer is itself exercised.
    for (int round = 0; round < 4; ++round) {
        BOOST_TEST_CONTEXT("round " << round) {
            int fds[2];
            BOOST_TEST_REQUIRE(::pipe(fds) == 0);
            pid_t child = ::fork();
            BOOST_TEST_REQUIRE(child >= 0);
            if (child == 0) {
                ::close(fds[0]);
                run_child(path, fds[1], round);
            }
            ::close(fds[1]);

            std::set<std::string> reported;
            std::string partial;
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            std::size_t target_count = 150 + 173 * static_cast<std::size_t>(round);
            bool enough = read_ids(fds[0], reported, partial, target_count, deadline);
            ::kill(child, SIGKILL);
            int status = 0;
            ::waitpid(child, &status, 0);
            // What the child wrote before it died is still in the pipe.
            read_ids(fds[0], reported, partial, 0, deadline);
            ::close(fds[0]);

            BOOST_TEST_REQUIRE(enough, "the child reported only " << reported.size() << " ids");
            BOOST_TEST(WIFSIGNALED(status));
            BOOST_TEST(WTERMSIG(status) == SIGKILL);

            acknowledged.insert(reported.begin(), reported.end());
            BOOST_TEST(integrity_of(path) == "ok");
            auto stored = stored_event_ids(path);
            std::size_t missing = 0;
            for (auto const& id : acknowledged) {
                if (!stored.contains(id)) {
                    ++missing;
                    BOOST_TEST_MESSAGE("acknowledged but missing: " << id);
                }
            }
            BOOST_TEST(missing == 0u);
            // Each writer of the child waits for one insert at a time, so at most one committed
            // write per writer can lack its acknowledgement.
            BOOST_TEST_REQUIRE(stored.size() >= acknowledged.size());
            BOOST_TEST(stored.size() - acknowledged.size() <=
                       static_cast<std::size_t>(writers_per_child) * (round + 1));
            BOOST_TEST_MESSAGE("round " << round << ": " << reported.size() << " acknowledged, "
                                        << stored.size() << " stored in total");
        }
    }
}
