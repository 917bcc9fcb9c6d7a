// Strict parsing of JSON request bodies from untrusted clients, and byte-exact access to members.
//
// Boost.JSON 1.81 alone accepts several inputs this API must reject: a repeated member name
// (the last value silently wins), and a number such as 1e400 (it becomes an infinite double,
// which serializes as a non-JSON token). It also reports invalid UTF-8 and unpaired surrogate
// escapes as a generic syntax error. parse_strict closes those gaps and gives each rejection a
// stable code and a message that names the position.
//
// Every function here is reentrant and keeps no state between calls. Link with -lboost_json.
#pragma once

#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace revdesk::json_input {

/// A rejection of an input, for the client.
struct problem {
    /// Stable machine code. parse_strict returns `body_too_large`, `empty_body`, `invalid_utf8`,
    /// `invalid_json`, `lone_surrogate`, `number_out_of_range`, `too_deep`, `trailing_data`,
    /// `duplicate_member` or `not_an_object`. read_identifier returns `invalid_identifier` or
    /// `identifier_out_of_range`.
    std::string code;
    /// One or two sentences for a human that say what is wrong, where and how to fix it.
    /// Lines and columns count from 1 and columns count bytes. Byte offsets count from 0.
    std::string message;
    /// Path of the member concerned, such as `payload.items[2].id`, or empty when the problem
    /// is not tied to one member. Names are joined with `.` unescaped, so the path is meant for
    /// humans: a name that contains `.` or `[` makes it ambiguous.
    std::string field;

    friend bool operator==(problem const&, problem const&) = default;
};

/// Limits for parse_strict.
struct options {
    /// Maximum nesting depth of arrays and objects: `[[1]]` has depth 2, a scalar depth 0.
    std::size_t max_depth = 32;
    /// Maximum body size in bytes.
    std::size_t max_size = 1024 * 1024;
    /// When true, a body that is valid JSON but not an object is rejected with `not_an_object`.
    bool require_object = false;
};

/// Parses a whole request body as exactly one JSON value under RFC 8259, with no extensions.
///
/// Returns the value, or the first problem found, which is one of these:
/// - `body_too_large`: the body is larger than `o.max_size` bytes.
/// - `empty_body`: the body is empty or only whitespace.
/// - `invalid_utf8`: overlong forms, UTF-8-encoded surrogates, code points above U+10FFFF or
///   truncated sequences, anywhere in the body.
/// - `invalid_json`: anything outside RFC 8259, such as comments, trailing commas, NaN,
///   Infinity, single quotes, unescaped control characters, leading zeros or a byte order mark.
/// - `lone_surrogate`: a `\u` escape that is an unpaired UTF-16 surrogate.
/// - `number_out_of_range`: a number beyond the range of a double, such as 1e400.
/// - `too_deep`: arrays and objects nested deeper than `o.max_depth`.
/// - `trailing_data`: anything but whitespace after the value.
/// - `duplicate_member`: an object, at any depth, repeats a member name after unescaping, so
///   `"a"` and `"\u0061"` are the same name.
/// - `not_an_object`: `o.require_object` is set and the value is not an object.
///
/// Nesting is tracked by the parser's own stack, not by recursion, so 100,000 nested `[` are
/// rejected after reading `o.max_depth + 1` of them.
///
/// Integers that do not fit std::int64_t or std::uint64_t become doubles and may lose digits.
/// Read such identifiers from the text with raw_member and read_identifier instead.
/// NOTE: Boost.JSON 1.81 does not always round decimals correctly: the same digits, such as
/// 12.45678901334567890123, can give doubles one ulp apart depending on where they sit in the
/// body. A number below the double range, such as 1e-400, becomes 0 without a problem.
///
/// The returned value uses the default memory resource and does not refer to `text`.
/// Throws std::bad_alloc when memory runs out.
std::variant<boost::json::value, problem> parse_strict(std::string_view text, options o = {});

/// Returns the exact bytes of the value of the top-level member `name` (compared after
/// unescaping the member names in `text`), without surrounding whitespace, or std::nullopt when
/// the member is absent or `text` is not an object.
///
/// `text` must be a body that parse_strict accepted: on other input the result is unspecified
/// (for a repeated name it is the first occurrence), but the function never reads outside
/// `text`. The returned view points into `text`. Nested objects and arrays are skipped without
/// recursion.
std::optional<std::string_view> raw_member(std::string_view text, std::string_view name);

/// An identifier exactly as the client wrote it.
struct identifier {
    /// The unescaped string, or the decimal digits of the integer.
    std::string text;
    /// True when the client sent an integer rather than a string.
    bool is_number = false;

    friend bool operator==(identifier const&, identifier const&) = default;
};

/// Maximum length, in characters, of an identifier sent as a string.
inline constexpr std::size_t max_identifier_length = 128;

/// Reads an identifier from the raw JSON text of a value (as returned by raw_member), digit for
/// digit, without converting through a double. Whitespace around the value is ignored.
///
/// A string must unescape to 1 to 128 printable ASCII characters (U+0020 to U+007E). An integer
/// must be a non-negative JSON integer of plain digits that fits std::int64_t (at most
/// 9223372036854775807); larger integers return `identifier_out_of_range`. Everything else is
/// rejected with `invalid_identifier`: negative numbers, fractions and exponents (`1.0`, `1e3`),
/// booleans, null, objects, arrays and malformed text. Every problem carries `field` in
/// problem::field and in its message. A caller that treats null as "not set" checks
/// `raw_value == "null"` before calling.
std::variant<identifier, problem> read_identifier(std::string_view raw_value,
                                                  std::string_view field);

} // namespace revdesk::json_input

#include <revdesk/impl/json_input.ipp>
