// Calls to a running revdesk-server's API with curl, and reads of its SQLite file with sqlite3,
// for the end-to-end tests.
#pragma once

#include "server_process.hpp"
#include "test_support.hpp"

#include <fstream>
#include <string>

namespace revdesk::test {

/// The API of one server, reached with curl and one API key.
class api_session {
public:
    api_session(std::string base_url, std::string key)
        : base_url_(std::move(base_url))
        , key_(std::move(key)) {}

    /// POST /api/v1/webhook_subscriptions with `url` and `type`.
    curl_reply subscribe(std::string const& url, std::string const& type) const {
        return post("/api/v1/webhook_subscriptions",
                    R"({"webhook_url":")" + url + R"(","event_type":")" + type + R"("})");
    }

    /// POST /api/v1/events. `payload` goes into the body byte for byte.
    curl_reply publish(std::string const& type, std::string const& payload) const {
        return post("/api/v1/events",
                    R"({"event_type":")" + type + R"(","payload":)" + payload + "}");
    }

    /// GET of an API path such as `/api/v1/webhook_subscriptions/whk_...`.
    curl_reply get(std::string const& path) const { return curl(base_url_ + path + auth()); }

    /// DELETE of an API path.
    curl_reply remove(std::string const& path) const {
        return curl("-X DELETE " + base_url_ + path + auth());
    }

    /// POSTs `body` as JSON. The body goes through a file and `--data-binary`, so curl sends
    /// every byte unchanged (line breaks and non-ASCII included).
    curl_reply post(std::string const& path, std::string const& body) const {
        temp_dir dir;
        auto file = dir.file("body.json");
        {
            std::ofstream out(file, std::ios::binary);
            out.write(body.data(), static_cast<std::streamsize>(body.size()));
        }
        return curl("-X POST " + base_url_ + path + auth() +
                    " -H 'Content-Type: application/json' --data-binary @" + quote(file));
    }

private:
    std::string auth() const { return " -H " + quote("Authorization: Bearer " + key_); }

    std::string base_url_;
    std::string key_;
};

/// Runs `query` on the SQLite file `database` with the sqlite3 command and returns its output,
/// one row a line with columns separated by `|`.
inline std::string sql(std::string const& database, std::string const& query) {
    return shell("sqlite3 -cmd '.timeout 5000' " + quote(database) + " " + quote(query));
}

} // namespace revdesk::test
