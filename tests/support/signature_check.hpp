// Checks of delivered webhooks that do not go through the library: a Standard Webhooks signature
// recomputed with Python's hmac module, and HTTP dates for Retry-After.
#pragma once

#include "test_support.hpp"

#include <chrono>
#include <ctime>
#include <fstream>
#include <string>
#include <string_view>

namespace revdesk::test {

/// Returns the `v1,<base64>` signature of `body` that Python's hmac and base64 modules compute
/// for `secret` (`whsec_` and base64 key), `msg_id` and `timestamp`. The body goes through a
/// file, so every byte reaches Python unchanged.
inline std::string python_signature(std::string const& secret, std::string const& msg_id,
                                    std::string const& timestamp, std::string const& body) {
    temp_dir dir;
    auto body_file = dir.file("body");
    {
        std::ofstream out(body_file, std::ios::binary);
        out.write(body.data(), static_cast<std::streamsize>(body.size()));
    }
    static constexpr std::string_view script =
        "import base64, hashlib, hmac, sys\n"
        "secret, msg_id, timestamp, path = sys.argv[1:5]\n"
        "key = base64.b64decode(secret.removeprefix('whsec_'), validate=True)\n"
        "body = open(path, 'rb').read()\n"
        "signed = msg_id.encode() + b'.' + timestamp.encode() + b'.' + body\n"
        "digest = hmac.new(key, signed, hashlib.sha256).digest()\n"
        "sys.stdout.write('v1,' + base64.b64encode(digest).decode())\n";
    auto quoted = [](std::string_view text) {
        std::string out = "'";
        for (char c : text) {
            out += c == '\'' ? std::string("'\\''") : std::string(1, c);
        }
        return out + "'";
    };
    return shell("python3 -c " + quoted(script) + " " + quoted(secret) + " " + quoted(msg_id) +
                 " " + quoted(timestamp) + " " + quoted(body_file));
}

/// Formats `t` as an IMF-fixdate, the HTTP date form, such as `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Fractions of a second are dropped.
inline std::string http_date(std::chrono::system_clock::time_point t) {
    auto seconds = std::chrono::system_clock::to_time_t(t);
    std::tm parts{};
    gmtime_r(&seconds, &parts);
    char text[64];
    auto n = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    return std::string(text, n);
}

} // namespace revdesk::test
