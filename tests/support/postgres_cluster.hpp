// A throw-away PostgreSQL cluster for tests: initdb into a new temporary directory, a server on a
// free loopback port with its unix socket in that directory, and everything removed at the end.
//
// Usage:
//     revdesk::test::postgres_cluster cluster;          // initdb and start; throws on failure
//     auto db = cluster.create_database();              // a new empty database
//     revdesk::postgres_options options{.conninfo = cluster.conninfo(db)};
//     cluster.restart();                                // stop, then start on the same port
//
// The server listens on 127.0.0.1 only, trusts every local connection (no passwords), and runs
// with fsync off, which suits tests and nothing else. When the process runs as root, initdb and
// pg_ctl run as the `postgres` system user (PostgreSQL refuses root), through `runuser`.
// The binaries come from $REVDESK_PG_BINDIR, `pg_config --bindir` or /usr/lib/postgresql/15/bin.
// When none has initdb, the constructor throws, so a test fails instead of being skipped.
#pragma once

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace revdesk::test {

class postgres_cluster {
public:
    /// Creates and starts the cluster. Throws std::runtime_error with the reason (and the log
    /// of the failing command) when PostgreSQL is missing or does not start.
    postgres_cluster() {
        bindir_ = find_bindir();
        std::string pattern =
            (std::filesystem::temp_directory_path() / "revdesk-pg-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
        }
        directory_ = pattern;
        try {
            if (::geteuid() == 0) {
                passwd const* user = ::getpwnam("postgres");
                if (user == nullptr) {
                    throw std::runtime_error(
                        "running as root, but there is no 'postgres' user to run PostgreSQL as "
                        "(install the postgresql package, which creates it)");
                }
                if (::chown(directory_.c_str(), user->pw_uid, user->pw_gid) != 0) {
                    throw std::system_error(errno, std::generic_category(),
                                            "chown " + directory_.string());
                }
                as_postgres_ = true;
            }
            ::chmod(directory_.c_str(), 0700);
            port_ = free_port();
            run({bindir_ + "/initdb", "-D", data_dir(), "-A", "trust", "-U", "postgres", "-E",
                 "UTF8", "--locale=C", "--no-sync"},
                "initdb");
            std::ofstream conf(data_dir() + "/postgresql.conf", std::ios::app);
            conf << "\nlisten_addresses = '127.0.0.1'\n"
                 << "port = " << port_ << "\n"
                 << "unix_socket_directories = '" << directory_.string() << "'\n"
                 << "fsync = off\n"
                 << "full_page_writes = off\n"
                 << "max_connections = 200\n";
            conf.close();
            if (!conf) {
                throw std::runtime_error("cannot write " + data_dir() + "/postgresql.conf");
            }
            start();
        } catch (...) {
            remove_directory();
            throw;
        }
    }

    postgres_cluster(postgres_cluster const&) = delete;
    postgres_cluster& operator=(postgres_cluster const&) = delete;

    /// Stops the server (immediately) and removes the directory.
    ~postgres_cluster() {
        if (running_) {
            try {
                run({bindir_ + "/pg_ctl", "-D", data_dir(), "-m", "immediate", "-w", "stop"},
                    "pg_ctl stop");
            } catch (...) {
            }
        }
        remove_directory();
    }

    /// Starts the server and waits until it accepts connections. Throws with the server's log
    /// when it does not start.
    void start() {
        run({bindir_ + "/pg_ctl", "-D", data_dir(), "-l", log_path(), "-w", "-t", "60", "start"},
            "pg_ctl start");
        running_ = true;
    }

    /// Stops the server with the fast mode: sessions are ended and the server shuts down
    /// cleanly. Waits until it has stopped.
    void stop() {
        run({bindir_ + "/pg_ctl", "-D", data_dir(), "-m", "fast", "-w", "-t", "60", "stop"},
            "pg_ctl stop");
        running_ = false;
    }

    /// stop(), then start() on the same port.
    void restart() {
        stop();
        start();
    }

    bool running() const noexcept { return running_; }

    /// The TCP port on 127.0.0.1.
    std::uint16_t port() const noexcept { return port_; }

    /// The temporary directory: the data directory, the server's log and the unix socket.
    std::filesystem::path const& directory() const noexcept { return directory_; }

    /// Returns a libpq connection string for `dbname` over TCP on 127.0.0.1, as user `postgres`.
    std::string conninfo(std::string const& dbname = "postgres") const {
        return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + dbname +
               " connect_timeout=10";
    }

    /// Creates a new, empty database and returns its name (`revdesk_test_N`).
    std::string create_database() {
        std::string name = "revdesk_test_" + std::to_string(++databases_);
        execute("CREATE DATABASE " + name);
        return name;
    }

    /// Runs `sql` on `dbname` with a blocking connection and returns the first column of the
    /// first row of the last result as text (empty when there is none). Throws with the server's
    /// message on failure.
    std::string execute(std::string const& sql, std::string const& dbname = "postgres") const {
        PGconn* conn = PQconnectdb(conninfo(dbname).c_str());
        if (PQstatus(conn) != CONNECTION_OK) {
            std::string message = PQerrorMessage(conn);
            PQfinish(conn);
            throw std::runtime_error("cannot connect to the test cluster: " + message);
        }
        PGresult* result = PQexec(conn, sql.c_str());
        auto status = PQresultStatus(result);
        std::string value;
        if (status == PGRES_TUPLES_OK && PQntuples(result) > 0 && PQnfields(result) > 0) {
            value = PQgetvalue(result, 0, 0);
        }
        std::string message = PQresultErrorMessage(result);
        PQclear(result);
        PQfinish(conn);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            throw std::runtime_error(sql + ": " + message);
        }
        return value;
    }

private:
    std::string data_dir() const { return (directory_ / "data").string(); }
    std::string log_path() const { return (directory_ / "server.log").string(); }

    static bool has_initdb(std::string const& dir) {
        return !dir.empty() && ::access((dir + "/initdb").c_str(), X_OK) == 0;
    }

    static std::string find_bindir() {
        if (char const* env = std::getenv("REVDESK_PG_BINDIR"); env != nullptr && has_initdb(env)) {
            return env;
        }
        std::string dir;
        if (FILE* pipe = ::popen("pg_config --bindir 2>/dev/null", "r")) {
            char buffer[512];
            while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) {
                dir += buffer;
            }
            ::pclose(pipe);
            while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) {
                dir.pop_back();
            }
        }
        if (has_initdb(dir)) {
            return dir;
        }
        if (has_initdb("/usr/lib/postgresql/15/bin")) {
            return "/usr/lib/postgresql/15/bin";
        }
        throw std::runtime_error(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in $REVDESK_PG_BINDIR, "
            "`pg_config --bindir` or /usr/lib/postgresql/15/bin: install the postgresql package "
            "(.ci/install-deps --with-tests)");
    }

    // Asks the kernel for a free port on 127.0.0.1. Another process could take it before the
    // server binds it, which is unlikely enough for tests.
    static std::uint16_t free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            throw std::system_error(errno, std::generic_category(), "socket");
        }
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        socklen_t length = sizeof address;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            int error = errno;
            ::close(fd);
            throw std::system_error(error, std::generic_category(), "bind 127.0.0.1:0");
        }
        ::close(fd);
        return ntohs(address.sin_port);
    }

    // Runs `args` (as the postgres user when needed) with its output in a file, and throws with
    // that output, and the server's log, when it fails.
    void run(std::vector<std::string> args, std::string const& step) const {
        if (as_postgres_) {
            args.insert(args.begin(), {"runuser", "-u", "postgres", "--"});
        }
        std::string output_path = (directory_ / "command.out").string();
        pid_t child = ::fork();
        if (child < 0) {
            throw std::system_error(errno, std::generic_category(), "fork");
        }
        if (child == 0) {
            int out = ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (out >= 0) {
                ::dup2(out, STDOUT_FILENO);
                ::dup2(out, STDERR_FILENO);
            }
            int null_in = ::open("/dev/null", O_RDONLY);
            if (null_in >= 0) {
                ::dup2(null_in, STDIN_FILENO);
            }
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        int status = 0;
        while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            return;
        }
        throw std::runtime_error(step + " failed (" + args[as_postgres_ ? 4 : 0] +
                                 "):\n" + read_file(output_path) + "\nserver log:\n" +
                                 read_file(log_path()));
    }

    static std::string read_file(std::string const& path) {
        std::ifstream in(path);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

    void remove_directory() noexcept {
        std::error_code ignored;
        std::filesystem::remove_all(directory_, ignored);
    }

    std::string bindir_;
    std::filesystem::path directory_;
    std::uint16_t port_ = 0;
    bool as_postgres_ = false;
    bool running_ = false;
    int databases_ = 0;
};

} // namespace revdesk::test
