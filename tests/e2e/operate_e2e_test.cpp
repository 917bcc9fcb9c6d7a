// End to end: running the real revdesk-server binary as an operator would. HTTPS on the API with
// a certificate made with the openssl command, JSON logs, the config file, the environment and
// --help; driven with the real curl.
#define BOOST_TEST_MODULE operate_e2e
#include <boost/test/unit_test.hpp>

#include "../support/server_api.hpp"
#include "../support/server_process.hpp"
#include "../support/test_support.hpp"

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <chrono>
#include <fstream>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using revdesk::test::curl;
using revdesk::test::launch_options;
using revdesk::test::quote;
using revdesk::test::server_process;
using revdesk::test::shell;

namespace {

std::string const env_key = "operate-e2e-env-key-7d31";
std::string const number_event = R"({"id":4821,"phone_number":"+15551234567","area_code":"555",)"
                                  R"("status":"ACTIVE","organization_id":"org_1"})";

// What a command printed (standard output and error together) and its exit status.
struct command_result {
    int status = 0;
    std::string output;
};

// Runs `command` in a shell with `environment` (NAME=value words, already quoted) in front.
command_result run(std::string const& command, std::string const& environment = "") {
    command_result result;
    auto line = (environment.empty() ? "" : "env " + environment + " ") + command + " 2>&1";
    FILE* pipe = popen(line.c_str(), "r");
    BOOST_TEST_REQUIRE(pipe != nullptr);
    char buffer[4096];
    std::size_t n = 0;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
        result.output.append(buffer, n);
    }
    auto status = pclose(pipe);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

std::string server_binary() { return quote(REVDESK_SERVER_PATH); }

// Returns the lines of `text`, without empty ones.
std::vector<std::string> lines_of(std::string const& text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        if (end > start) {
            lines.push_back(text.substr(start, end - start));
        }
        start = end + 1;
    }
    return lines;
}

// Connects a TCP socket to `port` on 127.0.0.1; returns the descriptor.
int connect_loopback(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_TEST_REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_TEST_REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    return fd;
}

// Waits until the peer closes `fd` (end of stream or reset) and returns when that happened, or
// nothing when it is still open at `limit`. Bytes the peer sends are read and dropped.
std::optional<std::chrono::steady_clock::time_point>
closed_at(int fd, std::chrono::steady_clock::time_point limit) {
    while (true) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            limit - std::chrono::steady_clock::now());
        if (left <= 0ms) {
            return std::nullopt;
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            continue;
        }
        char buffer[512];
        if (::recv(fd, buffer, sizeof buffer, 0) <= 0) {
            return std::chrono::steady_clock::now();
        }
    }
}

std::uint16_t port_of(std::string const& base_url) {
    return static_cast<std::uint16_t>(std::stoi(base_url.substr(base_url.rfind(':') + 1)));
}

struct operate_fixture {
    revdesk::test::temp_dir dir;
    std::unique_ptr<server_process> server;

    std::string write_file(std::string const& name, std::string const& content) const {
        auto path = dir.file(name);
        std::ofstream(path, std::ios::binary) << content;
        return path;
    }

    void start(std::vector<std::string> args, launch_options const& launch = {}) {
        server = std::make_unique<server_process>(REVDESK_SERVER_PATH, std::move(args), env_key,
                                                  dir.file("server.log"), launch);
    }

    std::string auth() const { return " -H " + quote("Authorization: Bearer " + env_key); }
};

struct tls_fixture : operate_fixture {
    revdesk::test::test_certificates certs;

    void start_tls() {
        start({"--store", "memory:", "--tls-cert", certs.cert_file, "--tls-key", certs.key_file,
               "--allow-http", "--allow-target", "127.0.0.1/32"});
    }

    std::string cacert() const { return " --cacert " + quote(certs.ca_file); }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(tls, tls_fixture)

BOOST_AUTO_TEST_CASE(https_api_answers_curl_that_trusts_the_generated_ca) {
    start_tls();
    BOOST_TEST(server->base_url().starts_with("https://127.0.0.1:"), server->base_url());
    auto log = server->log();
    BOOST_TEST(log.find("curl -X POST https://127.0.0.1:") != std::string::npos, log);
    BOOST_TEST(log.find("http://127.0.0.1") == std::string::npos, log);

    auto reply = curl(quote(server->base_url() + "/api/v1/webhook_subscriptions") + auth() +
                      cacert());
    BOOST_TEST(reply.status == 200, reply.body);
    BOOST_TEST(reply.headers.starts_with("HTTP/1.1 200"), reply.headers);

    // By name: the certificate names localhost as well as 127.0.0.1.
    auto by_name = "https://localhost:" + std::to_string(port_of(server->base_url()));
    BOOST_TEST(curl(quote(by_name + "/healthz") + cacert()).status == 200);

    // Without the CA curl refuses the certificate, and below TLS 1.2 the server refuses curl.
    BOOST_TEST(run("curl -sS " + quote(server->base_url() + "/healthz")).status != 0);
    auto old_tls = run("curl -sS --tls-max 1.1 " + quote(server->base_url() + "/healthz") +
                       cacert());
    BOOST_TEST(old_tls.status != 0, old_tls.output);

    // A subscription made over HTTPS works like one made over HTTP.
    auto created =
        curl("-X POST " + quote(server->base_url() + "/api/v1/webhook_subscriptions") + auth() +
             cacert() + " -H 'Content-Type: application/json' --data " +
             quote(R"({"webhook_url":"http://127.0.0.1:9/hook","event_type":"call_completed"})"));
    BOOST_TEST(created.status == 201, created.body);
}

BOOST_AUTO_TEST_CASE(plain_http_to_the_https_port_gets_a_clear_400_and_the_server_goes_on) {
    start_tls();
    auto port = std::to_string(port_of(server->base_url()));
    auto plain = curl(quote("http://127.0.0.1:" + port + "/healthz"));
    BOOST_TEST(plain.status == 400);
    BOOST_TEST(plain.body.find("speaks HTTPS only") != std::string::npos, plain.body);
    BOOST_TEST(plain.headers.find("Connection: close") != std::string::npos, plain.headers);

    // Bytes that are neither TLS nor HTTP get the same 400, then the connection closes.
    int garbage = connect_loopback(port_of(server->base_url()));
    unsigned char const bytes[] = {0x01, 0x02, 0x03, 0x0a};
    BOOST_TEST_REQUIRE(::send(garbage, bytes, sizeof bytes, 0) == static_cast<ssize_t>(sizeof bytes));
    BOOST_TEST(closed_at(garbage, std::chrono::steady_clock::now() + 5s).has_value());
    ::close(garbage);

    BOOST_TEST(curl(quote(server->base_url() + "/healthz") + cacert()).status == 200);
}

BOOST_AUTO_TEST_CASE(silent_and_stalled_tls_clients_are_dropped_at_the_header_deadline) {
    start_tls();
    auto port = port_of(server->base_url());
    auto started = std::chrono::steady_clock::now();
    int silent = connect_loopback(port);
    // A TLS record header that announces a ClientHello which never comes.
    int stalled = connect_loopback(port);
    unsigned char const partial_hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    BOOST_TEST_REQUIRE(::send(stalled, partial_hello, sizeof partial_hello, 0) ==
                       static_cast<ssize_t>(sizeof partial_hello));

    // Meanwhile the server serves others.
    BOOST_TEST(curl(quote(server->base_url() + "/healthz") + cacert()).status == 200);

    // The header deadline is 10 s; the write deadline, which bounded handshakes before, is 30 s.
    auto limit = started + 25s;
    for (int fd : {silent, stalled}) {
        auto at = closed_at(fd, limit);
        BOOST_TEST_REQUIRE(at.has_value(), "a TLS client that sent no handshake stayed connected");
        auto after = std::chrono::duration<double>(*at - started).count();
        BOOST_TEST(after >= 9.0, after);
        BOOST_TEST(after < 20.0, after);
        ::close(fd);
    }
    BOOST_TEST(curl(quote(server->base_url() + "/healthz") + cacert()).status == 200);
}

BOOST_AUTO_TEST_CASE(tls_flags_must_come_together_and_load) {
    auto start_with = [&](std::string const& args, std::string const& environment = "") {
        return run(server_binary() + " --store memory: --listen 127.0.0.1:0 " + args, environment);
    };
    auto cert = quote(certs.cert_file);
    auto key = quote(certs.key_file);

    auto only_cert = start_with("--tls-cert " + cert);
    BOOST_TEST(only_cert.status != 0);
    BOOST_TEST(only_cert.output.find("--tls-cert is set but --tls-key is missing") != std::string::npos,
               only_cert.output);

    auto only_key = start_with("--tls-key " + key);
    BOOST_TEST(only_key.status != 0);
    BOOST_TEST(only_key.output.find("--tls-key is set but --tls-cert is missing") != std::string::npos,
               only_key.output);

    // The same rule holds when a value comes from the environment.
    auto only_env_cert = start_with("", "REVDESK_TLS_CERT=" + cert);
    BOOST_TEST(only_env_cert.status != 0);
    BOOST_TEST(only_env_cert.output.find("--tls-key is missing") != std::string::npos,
               only_env_cert.output);

    auto missing_file = dir.file("missing.pem");
    auto missing = start_with("--tls-cert " + quote(missing_file) + " --tls-key " + key);
    BOOST_TEST(missing.status != 0);
    BOOST_TEST(missing.output.find("cannot read the TLS certificate file \"" + missing_file +
                                   "\"") != std::string::npos,
               missing.output);

    // A key created apart from the certificate does not match it.
    auto other_key = dir.file("other.key");
    shell("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out " +
          quote(other_key) + " 2>&1");
    auto mismatch = start_with("--tls-cert " + cert + " --tls-key " + quote(other_key));
    BOOST_TEST(mismatch.status != 0);
    BOOST_TEST(mismatch.output.find("the private key in \"" + other_key +
                                    "\" does not match the certificate in \"" +
                                    certs.cert_file + "\"") != std::string::npos,
               mismatch.output);

    // The files swapped: the certificate file contains no certificate.
    auto swapped = start_with("--tls-cert " + key + " --tls-key " + cert);
    BOOST_TEST(swapped.status != 0);
    BOOST_TEST(swapped.output.find("contains no valid PEM certificate") != std::string::npos,
               swapped.output);

    // An encrypted key fails at once instead of asking for a passphrase.
    auto encrypted_key = dir.file("encrypted.key");
    shell("openssl pkey -in " + key + " -aes256 -passout pass:secret-pass -out " +
          quote(encrypted_key) + " 2>&1");
    auto encrypted = run("timeout 20 " + server_binary() +
                         " --store memory: --listen 127.0.0.1:0 --tls-cert " + cert +
                         " --tls-key " + quote(encrypted_key) + " < /dev/null");
    BOOST_TEST(encrypted.status == 1, encrypted.output);
    BOOST_TEST(encrypted.output.find("contains no unencrypted PEM private key") != std::string::npos,
               encrypted.output);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(logs, operate_fixture)

BOOST_AUTO_TEST_CASE(json_logs_parse_line_by_line_with_request_and_attempt_fields) {
    // Port 9 on loopback refuses connections, so the one attempt fails.
    start({"--store", "memory:", "--log-format", "json", "--allow-http", "--allow-target",
           "127.0.0.1/32", "--retry-schedule", "1h"});
    revdesk::test::api_session api(server->base_url(), env_key);
    auto created = api.subscribe("http://127.0.0.1:9/hook", "number_purchased");
    BOOST_TEST_REQUIRE(created.status == 201, created.body);
    auto subscription = std::string(created.json().at("id").as_string());
    BOOST_TEST(api.get("/api/v1/webhook_subscriptions/" + subscription).status == 200);
    BOOST_TEST(curl(quote(server->base_url() + "/api/v1/webhook_subscriptions") +
                    " -H 'Authorization: Bearer wrong-key-4411'")
                   .status == 401);
    BOOST_TEST_REQUIRE(api.publish("number_purchased", number_event).status == 202);

    boost::json::object request_line;
    boost::json::object attempt_line;
    auto until = std::chrono::steady_clock::now() + 20s;
    while (attempt_line.empty() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(100ms);
        for (auto const& line : lines_of(server->log())) {
            // The last line may be half written while the server runs.
            boost::system::error_code ec;
            auto value = boost::json::parse(line, ec);
            if (!ec && value.is_object() && value.as_object().contains("subscription") &&
                value.as_object().at("level") == "warning") {
                attempt_line = value.as_object();
            }
        }
    }
    BOOST_TEST_REQUIRE(!attempt_line.empty(), server->log());
    server->stop(SIGTERM);

    auto log = server->log();
    BOOST_TEST(log.find(env_key) == std::string::npos);
    BOOST_TEST(log.find("wrong-key-4411") == std::string::npos);
    BOOST_TEST(log.find("whsec_") == std::string::npos);
    std::size_t parsed = 0;
    bool saw_unauthorized = false;
    for (auto const& line : lines_of(log)) {
        boost::json::value value;
        BOOST_REQUIRE_NO_THROW(value = boost::json::parse(line));
        BOOST_TEST_REQUIRE(value.is_object(), line);
        auto const& fields = value.as_object();
        BOOST_TEST(fields.at("time").as_string().ends_with("Z"), line);
        BOOST_TEST(fields.at("level").is_string(), line);
        BOOST_TEST(fields.at("message").is_string(), line);
        ++parsed;
        if (fields.contains("route") &&
            fields.at("route") == "/api/v1/webhook_subscriptions/{id}") {
            request_line = fields;
        }
        if (fields.contains("route") && fields.at("status") == 401) {
            saw_unauthorized = true;
            BOOST_TEST(fields.at("workspace").is_null(), line);
        }
    }
    BOOST_TEST(parsed >= 6u);
    BOOST_TEST(saw_unauthorized);

    BOOST_TEST_REQUIRE(!request_line.empty(), log);
    BOOST_TEST(request_line.at("level") == "info");
    BOOST_TEST(request_line.at("method") == "GET");
    BOOST_TEST(request_line.at("status") == 200);
    BOOST_TEST(request_line.at("workspace") == "default");
    BOOST_TEST(request_line.at("duration_ms").is_number());
    BOOST_TEST(request_line.at("duration_ms").to_number<double>() >= 0.0);

    BOOST_TEST(attempt_line.at("subscription").as_string() == subscription);
    BOOST_TEST(attempt_line.at("attempt") == 1);
    BOOST_TEST(attempt_line.at("status") == 0);
    BOOST_TEST(attempt_line.at("outcome") == "retrying");
    BOOST_TEST(attempt_line.at("error").is_string());
    BOOST_TEST(attempt_line.at("delivery").as_string().size() > 0u);
}

BOOST_AUTO_TEST_CASE(text_logs_keep_their_request_line) {
    start({"--store", "memory:"});
    BOOST_TEST(curl(quote(server->base_url() + "/api/v1/webhook_subscriptions") + auth()).status ==
               200);
    server->stop(SIGTERM);
    auto log = server->log();
    BOOST_TEST(log.find(" info GET /api/v1/webhook_subscriptions 200 ") != std::string::npos, log);
    BOOST_TEST(log.find("workspace=default") != std::string::npos, log);
    BOOST_TEST(log.find("{\"time\"") == std::string::npos, log);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(settings, operate_fixture)

// The listen address shows which source won: each source names a different loopback address.
BOOST_AUTO_TEST_CASE(flag_beats_environment_beats_config_file_beats_default) {
    auto config = write_file("revdesk.toml", "# From the config file\n"
                                             "listen = \"127.0.0.2:0\"\n"
                                             "store = \"memory:\"\n"
                                             "log-format = \"json\"\n");
    launch_options from_config;
    from_config.listen_on_any_port = false;

    start({"--config", config}, from_config);
    BOOST_TEST(server->base_url().starts_with("http://127.0.0.2:"), server->base_url());
    // The config file's log format applies: the log is JSON.
    BOOST_TEST(server->log().starts_with("{\""), server->log());
    server->stop(SIGTERM);

    auto from_env = from_config;
    from_env.environment = {{"REVDESK_LISTEN", "127.0.0.3:0"}};
    start({"--config", config}, from_env);
    BOOST_TEST(server->base_url().starts_with("http://127.0.0.3:"), server->base_url());
    server->stop(SIGTERM);

    start({"--config", config, "--listen", "127.0.0.4:0"}, from_env);
    BOOST_TEST(server->base_url().starts_with("http://127.0.0.4:"), server->base_url());
    server->stop(SIGTERM);

    // REVDESK_CONFIG names the file when --config does not.
    auto named_by_env = from_config;
    named_by_env.environment = {{"REVDESK_CONFIG", config}};
    start({}, named_by_env);
    BOOST_TEST(server->base_url().starts_with("http://127.0.0.2:"), server->base_url());
    server->stop(SIGTERM);
}

BOOST_AUTO_TEST_CASE(lists_and_flags_come_from_environment_and_config_file) {
    // Receivers on loopback over plain HTTP need both --allow-target and --allow-http.
    auto subscribe_status = [this] {
        revdesk::test::api_session api(server->base_url(), env_key);
        return api.subscribe("http://127.0.0.1:9/hook", "number_purchased").status;
    };
    start({"--store", "memory:"});
    BOOST_TEST(subscribe_status() != 201);
    server->stop(SIGTERM);

    launch_options from_env;
    from_env.environment = {{"REVDESK_ALLOW_TARGET", "10.0.0.0/8,127.0.0.1/32"},
                            {"REVDESK_ALLOW_HTTP", "true"},
                            {"REVDESK_STORE", "memory:"}};
    start({}, from_env);
    BOOST_TEST(subscribe_status() == 201);
    server->stop(SIGTERM);

    auto config = write_file("lists.toml", "allow-target = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n"
                                           "allow-http = true\n"
                                           "store = \"memory:\"\n");
    start({"--config", config});
    BOOST_TEST(subscribe_status() == 201);
    server->stop(SIGTERM);

    // The environment replaces the file's list rather than adding to it.
    launch_options narrower;
    narrower.environment = {{"REVDESK_ALLOW_TARGET", "10.0.0.0/8"}};
    start({"--config", config}, narrower);
    BOOST_TEST(subscribe_status() != 201);
    server->stop(SIGTERM);
}

BOOST_AUTO_TEST_CASE(start_log_names_allowed_targets_and_metadata_risk) {
    start({"--store", "memory:", "--allow-target", "127.0.0.1/32", "--allow-http"});
    server->stop(SIGTERM);
    auto narrow = server->log();
    BOOST_TEST(narrow.find("deliveries may go to public addresses and to 127.0.0.1/32; plain "
                           "http URLs are allowed") != std::string::npos,
               narrow);
    BOOST_TEST(narrow.find("metadata") == std::string::npos, narrow);
    BOOST_TEST(narrow.find("put your http or https URL") != std::string::npos, narrow);

    start({"--store", "memory:", "--allow-target", "169.254.0.0/16", "--allow-target", "::/0"});
    server->stop(SIGTERM);
    auto wide = server->log();
    BOOST_TEST(wide.find("--allow-target 169.254.0.0/16 includes the cloud metadata address "
                         "169.254.169.254") != std::string::npos,
               wide);
    BOOST_TEST(wide.find("--allow-target ::/0 includes the cloud metadata address fd00:ec2::254") !=
                   std::string::npos,
               wide);
    BOOST_TEST(wide.find("put your https URL") != std::string::npos, wide);
}

BOOST_AUTO_TEST_CASE(bad_config_files_stop_the_start_with_a_message) {
    auto typo = write_file("typo.toml", "lisen = \"127.0.0.1:0\"\n");
    auto with_typo = run(server_binary() + " --store memory: --config " + quote(typo));
    BOOST_TEST(with_typo.status != 0);
    BOOST_TEST(with_typo.output.find("lisen") != std::string::npos, with_typo.output);

    auto missing = dir.file("missing.toml");
    auto without_file = run(server_binary() + " --store memory: --config " + quote(missing));
    BOOST_TEST(without_file.status != 0);
    BOOST_TEST(without_file.output.find(missing) != std::string::npos, without_file.output);

    auto by_env = run(server_binary() + " --store memory:", "REVDESK_CONFIG=" + quote(missing));
    BOOST_TEST(by_env.status != 0);
    BOOST_TEST(by_env.output.find(missing) != std::string::npos, by_env.output);

    auto bad_value = write_file("bad.toml", "max-in-flight = 0\n");
    auto with_bad_value = run(server_binary() + " --store memory: --config " + quote(bad_value));
    BOOST_TEST(with_bad_value.status != 0);
    BOOST_TEST(with_bad_value.output.find("max-in-flight") != std::string::npos,
               with_bad_value.output);
}

BOOST_AUTO_TEST_CASE(example_config_file_is_accepted) {
    start({"--config", REVDESK_EXAMPLE_CONFIG, "--store", "memory:"});
    BOOST_TEST(curl(quote(server->base_url() + "/healthz")).status == 200);
}

BOOST_AUTO_TEST_CASE(help_lists_every_option_with_its_default_and_variable) {
    auto help = run(server_binary() + " --help");
    BOOST_TEST(help.status == 0);
    struct expected {
        std::string option;
        std::string shown_default;
    };
    std::vector<expected> const options{
        {"listen", "=127.0.0.1:8080"},
        {"tls-cert", "Default: none"},
        {"tls-key", "Default: none"},
        {"store", "=sqlite:revdesk.db"},
        {"allow-target", "=[]"},
        {"ca-file", "Default: none"},
        {"allow-http", "Default: false"},
        {"retry-schedule", "=5s,5m,30m,2h,5h,10h,14h,20h,24h"},
        {"max-per-origin", "=16"},
        {"max-in-flight", "=512"},
        {"max-unrecorded", "=4096"},
        {"resolve", "=[]"},
        {"attempt-timeout", "=15"},
        {"log-format", "=text"},
    };
    for (auto const& o : options) {
        auto at = help.output.find("\n  --" + o.option + " ");
        BOOST_TEST_REQUIRE(at != std::string::npos, o.option);
        ++at;
        // The option's entry runs to the next option.
        auto entry = help.output.substr(at, help.output.find("\n  --", at + 1) - at);
        BOOST_TEST(entry.find(o.shown_default) != std::string::npos, entry);
        std::string variable = "REVDESK_";
        for (char c : o.option) {
            variable.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
        }
        BOOST_TEST(entry.find("Env:" + variable) != std::string::npos, entry);
    }
    BOOST_TEST(help.output.find("--config") != std::string::npos);
    BOOST_TEST(help.output.find("REVDESK_CONFIG") != std::string::npos);
    BOOST_TEST(help.output.find("REVDESK_API_KEY") != std::string::npos);
    BOOST_TEST(help.output.find("the command line, the environment variable") !=
               std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

#ifdef REVDESK_PRINT_RECEIVER_PATH
// The example receiver of the README.
BOOST_AUTO_TEST_SUITE(examples)

BOOST_AUTO_TEST_CASE(print_receiver_rejects_bad_ports_with_a_message) {
    auto receiver = quote(REVDESK_PRINT_RECEIVER_PATH);
    for (std::string bad : {"--help", "70000", "0", "9x"}) {
        auto r = run(receiver + " " + bad);
        BOOST_TEST(r.status == 2, bad);
        BOOST_TEST(r.output.find("invalid PORT \"" + bad + "\"") != std::string::npos, r.output);
        BOOST_TEST(r.output.find("usage: print_receiver PORT") != std::string::npos, r.output);
    }

    // A port that another socket listens on.
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_TEST_REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    BOOST_TEST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), length) == 0);
    BOOST_TEST_REQUIRE(::listen(listener, 1) == 0);
    BOOST_TEST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    auto port = std::to_string(ntohs(address.sin_port));
    auto r = run(receiver + " " + port);
    ::close(listener);
    BOOST_TEST(r.status == 1);
    BOOST_TEST(r.output.find("cannot listen on 127.0.0.1:" + port) != std::string::npos,
               r.output);
}

BOOST_AUTO_TEST_SUITE_END()
#endif
