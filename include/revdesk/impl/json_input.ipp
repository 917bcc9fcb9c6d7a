// Inline definitions for revdesk/json_input.hpp.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value_stack.hpp>
#include <boost/system/errc.hpp>

#include <cmath>
#include <cstdint>
#include <memory_resource>
#include <set>
#include <string>
#include <vector>

namespace revdesk::json_input {
namespace detail {

inline constexpr std::size_t npos = std::string_view::npos;

// RFC 8259 whitespace: space, horizontal tab, line feed, carriage return. Nothing else.
constexpr bool is_json_whitespace(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

inline std::size_t skip_whitespace(std::string_view text, std::size_t i) noexcept {
    while (i < text.size() && is_json_whitespace(text[i])) {
        ++i;
    }
    return i;
}

inline std::string_view trim_whitespace(std::string_view text) noexcept {
    std::size_t first = skip_whitespace(text, 0);
    std::size_t last = text.size();
    while (last > first && is_json_whitespace(text[last - 1])) {
        --last;
    }
    return text.substr(first, last - first);
}

inline std::string hex_byte(unsigned char byte) {
    static constexpr char digits[] = "0123456789ABCDEF";
    return {digits[byte >> 4], digits[byte & 0x0F]};
}

// "line 2, column 5 (byte 17)": line and column count from 1, columns in bytes.
inline std::string describe_position(std::string_view text, std::size_t offset) {
    std::size_t line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(offset - line_start + 1) +
           " (byte " + std::to_string(offset) + ")";
}

// Copies client text into a message: control characters, quotes and backslashes are escaped,
// and text beyond max_bytes is cut at a UTF-8 character boundary and marked with "...".
inline std::string excerpt(std::string_view text, std::size_t max_bytes = 64) {
    std::size_t length = text.size();
    bool const cut = length > max_bytes;
    if (cut) {
        length = max_bytes;
        while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xC0) == 0x80) {
            --length;
        }
    }
    std::string out;
    for (std::size_t i = 0; i < length; ++i) {
        auto const byte = static_cast<unsigned char>(text[i]);
        if (byte == '"' || byte == '\\') {
            out += '\\';
            out += text[i];
        } else if (byte < 0x20 || byte == 0x7F) {
            out += "\\u00" + hex_byte(byte);
        } else {
            out += text[i];
        }
    }
    if (cut) {
        out += "...";
    }
    return out;
}

inline std::string quoted(std::string_view text) {
    return '"' + excerpt(text) + '"';
}

inline problem make_problem(std::string code, std::string message, std::string field = {}) {
    return problem{std::move(code), std::move(message), std::move(field)};
}

//----------------------------------------------------------------------------------------------
// UTF-8

struct utf8_error {
    std::size_t offset;
    char const* reason;
};

// Finds the first byte that starts an ill-formed sequence. The well-formed sequences are 00-7F,
// C2-DF 80-BF, E0 A0-BF 80-BF, E1-EC 80-BF 80-BF, ED 80-9F 80-BF, EE-EF 80-BF 80-BF,
// F0 90-BF 80-BF 80-BF, F1-F3 80-BF 80-BF 80-BF and F4 80-8F 80-BF 80-BF. These ranges leave
// out overlong forms, surrogates (U+D800 to U+DFFF) and code points above U+10FFFF.
inline std::optional<utf8_error> find_invalid_utf8(std::string_view text) noexcept {
    auto const* bytes = reinterpret_cast<unsigned char const*>(text.data());
    std::size_t const size = text.size();
    char const* const truncated = "an incomplete multi-byte sequence";
    std::size_t i = 0;
    while (i < size) {
        unsigned char const lead = bytes[i];
        if (lead < 0x80) {
            ++i;
            continue;
        }
        if (lead < 0xC0) {
            return utf8_error{i, "a continuation byte without a lead byte"};
        }
        if (lead < 0xC2) {
            return utf8_error{i, "an overlong encoding"};
        }
        if (lead > 0xF4) {
            return utf8_error{i, lead < 0xF8 ? "a code point above U+10FFFF"
                                             : "a byte that never occurs in UTF-8"};
        }
        std::size_t const length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
        // The second byte has a narrower range after these four lead bytes.
        unsigned char second_min = 0x80;
        unsigned char second_max = 0xBF;
        char const* narrow_reason = nullptr;
        if (lead == 0xE0 || lead == 0xF0) {
            second_min = lead == 0xE0 ? 0xA0 : 0x90;
            narrow_reason = "an overlong encoding";
        } else if (lead == 0xED) {
            second_max = 0x9F;
            narrow_reason = "a UTF-16 surrogate (U+D800 to U+DFFF) encoded in UTF-8";
        } else if (lead == 0xF4) {
            second_max = 0x8F;
            narrow_reason = "a code point above U+10FFFF";
        }
        for (std::size_t k = 1; k < length; ++k) {
            if (i + k >= size) {
                return utf8_error{i, truncated};
            }
            unsigned char const next = bytes[i + k];
            if (next < 0x80 || next > 0xBF) {
                return utf8_error{i, truncated};
            }
            if (k == 1 && (next < second_min || next > second_max)) {
                return utf8_error{i, narrow_reason};
            }
        }
        i += length;
    }
    return std::nullopt;
}

//----------------------------------------------------------------------------------------------
// Strings and escapes

inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Reads the four hexadecimal digits at text[pos].
inline std::optional<unsigned> read_hex4(std::string_view text, std::size_t pos) noexcept {
    if (pos > text.size() || text.size() - pos < 4) {
        return std::nullopt;
    }
    unsigned result = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        int const digit = hex_value(text[pos + k]);
        if (digit < 0) {
            return std::nullopt;
        }
        result = result * 16 + static_cast<unsigned>(digit);
    }
    return result;
}

constexpr bool is_high_surrogate(unsigned u) noexcept {
    return u >= 0xD800 && u <= 0xDBFF;
}
constexpr bool is_low_surrogate(unsigned u) noexcept {
    return u >= 0xDC00 && u <= 0xDFFF;
}

inline void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Returns the index just past the closing quote of the string whose opening quote is at
// text[start], or npos when the string is not closed.
inline std::size_t skip_string(std::string_view text, std::size_t start) noexcept {
    for (std::size_t i = start + 1; i < text.size(); ++i) {
        if (text[i] == '\\') {
            ++i;
        } else if (text[i] == '"') {
            return i + 1;
        }
    }
    return npos;
}

// Unescapes the content of a JSON string (the bytes between the quotes). Returns false on an
// unescaped control character, an unknown escape or an unpaired surrogate escape. The content
// is assumed to be valid UTF-8.
inline bool unescape(std::string_view content, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < content.size(); ++i) {
        char const c = content[i];
        if (static_cast<unsigned char>(c) < 0x20) {
            return false;
        }
        if (c != '\\') {
            out += c;
            continue;
        }
        if (++i >= content.size()) {
            return false;
        }
        switch (content[i]) {
        case '"':
        case '\\':
        case '/':
            out += content[i];
            break;
        case 'b':
            out += '\b';
            break;
        case 'f':
            out += '\f';
            break;
        case 'n':
            out += '\n';
            break;
        case 'r':
            out += '\r';
            break;
        case 't':
            out += '\t';
            break;
        case 'u': {
            auto const unit = read_hex4(content, i + 1);
            if (!unit || is_low_surrogate(*unit)) {
                return false;
            }
            i += 4;
            unsigned code_point = *unit;
            if (is_high_surrogate(*unit)) {
                bool const escape_follows =
                    i + 2 < content.size() && content[i + 1] == '\\' && content[i + 2] == 'u';
                auto const low = escape_follows ? read_hex4(content, i + 3) : std::nullopt;
                if (!low || !is_low_surrogate(*low)) {
                    return false;
                }
                i += 6;
                code_point = 0x10000 + ((*unit - 0xD800) << 10) + (*low - 0xDC00);
            }
            append_utf8(out, code_point);
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

// Finds the first \u escape that is an unpaired UTF-16 surrogate among the escapes starting at
// or before `limit`. String boundaries are found by scanning from the start of `text`, which is
// exact only while the text is valid JSON, so callers pass a limit up to which Boost.JSON
// already accepted the text.
inline std::optional<std::size_t> find_lone_surrogate(std::string_view text,
                                                      std::size_t limit) noexcept {
    bool in_string = false;
    for (std::size_t i = 0; i < text.size() && i <= limit; ++i) {
        char const c = text[i];
        if (c == '"') {
            in_string = !in_string;
            continue;
        }
        if (!in_string || c != '\\') {
            continue;
        }
        if (i + 1 >= text.size() || text[i + 1] != 'u') {
            ++i;
            continue;
        }
        auto const unit = read_hex4(text, i + 2);
        if (!unit) {
            return std::nullopt;
        }
        if (is_low_surrogate(*unit)) {
            return i;
        }
        if (is_high_surrogate(*unit)) {
            bool const escape_follows =
                i + 7 < text.size() && text[i + 6] == '\\' && text[i + 7] == 'u';
            auto const low = escape_follows ? read_hex4(text, i + 8) : std::nullopt;
            if (!low || !is_low_surrogate(*low)) {
                return i;
            }
            i += 6;
        }
        i += 5;
    }
    return std::nullopt;
}

// Returns the offset of the opening quote of the string whose closing quote is text[end - 1].
// Inside a string every quote is escaped, that is preceded by an odd run of backslashes.
inline std::size_t find_string_start(std::string_view text, std::size_t end) noexcept {
    if (end < 2 || end > text.size()) {
        return end;
    }
    for (std::size_t j = end - 1; j-- > 0;) {
        if (text[j] != '"') {
            continue;
        }
        std::size_t backslashes = 0;
        while (backslashes < j && text[j - 1 - backslashes] == '\\') {
            ++backslashes;
        }
        if (backslashes % 2 == 0) {
            return j;
        }
    }
    return end;
}

constexpr bool is_number_character(char c) noexcept {
    return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// Returns the number token around text[offset], which the parser stopped at or just after.
inline std::string_view number_around(std::string_view text, std::size_t offset) noexcept {
    std::size_t start = offset > text.size() ? text.size() : offset;
    while (start > 0 && is_number_character(text[start - 1])) {
        --start;
    }
    std::size_t end = start;
    while (end < text.size() && is_number_character(text[end])) {
        ++end;
    }
    return text.substr(start, end - start);
}

//----------------------------------------------------------------------------------------------
// Parser handler

// A basic_parser handler that builds the value with boost::json::value_stack, as
// boost::json::parser does, and additionally rejects repeated member names and numbers that
// overflow a double. Both checks need the member path, so the handler tracks open containers.
class strict_handler {
public:
    static constexpr std::size_t max_object_size = boost::json::object::max_size();
    static constexpr std::size_t max_array_size = boost::json::array::max_size();
    static constexpr std::size_t max_key_size = boost::json::string::max_size();
    static constexpr std::size_t max_string_size = boost::json::string::max_size();

    enum class failure { none, duplicate_member, number_out_of_range };

    bool on_document_begin(boost::json::error_code&) {
        stack_.reset();
        return true;
    }
    bool on_document_end(boost::json::error_code&) { return true; }

    bool on_array_begin(boost::json::error_code&) {
        containers_.push_back(container{false, name_set(&names_memory_), nullptr, 0});
        return true;
    }
    bool on_array_end(std::size_t n, boost::json::error_code&) {
        stack_.push_array(n);
        containers_.pop_back();
        end_value();
        return true;
    }
    bool on_object_begin(boost::json::error_code&) {
        containers_.push_back(container{true, name_set(&names_memory_), nullptr, 0});
        return true;
    }
    bool on_object_end(std::size_t n, boost::json::error_code&) {
        stack_.push_object(n);
        containers_.pop_back();
        end_value();
        return true;
    }

    bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        key_.append(s.data(), s.size());
        stack_.push_chars(s);
        return true;
    }
    bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code& ec) {
        key_.append(s.data(), s.size());
        container& object = containers_.back();
        auto const [position, inserted] = object.names.emplace(std::string_view(key_));
        object.current_name = &*position;
        key_.clear();
        if (!inserted) {
            return fail(failure::duplicate_member, *position, ec);
        }
        stack_.push_key(s);
        return true;
    }

    bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        stack_.push_chars(s);
        return true;
    }
    bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code&) {
        stack_.push_string(s);
        end_value();
        return true;
    }

    bool on_number_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_int64(std::int64_t i, boost::json::string_view, boost::json::error_code&) {
        stack_.push_int64(i);
        end_value();
        return true;
    }
    bool on_uint64(std::uint64_t u, boost::json::string_view, boost::json::error_code&) {
        stack_.push_uint64(u);
        end_value();
        return true;
    }
    bool on_double(double d, boost::json::string_view, boost::json::error_code& ec) {
        // Boost.JSON 1.81 turns a finite literal beyond the double range, such as 1e400, into
        // an infinity, which boost::json::serialize writes as the non-JSON token "Infinity".
        if (!std::isfinite(d)) {
            return fail(failure::number_out_of_range, {}, ec);
        }
        stack_.push_double(d);
        end_value();
        return true;
    }

    bool on_bool(bool b, boost::json::error_code&) {
        stack_.push_bool(b);
        end_value();
        return true;
    }
    bool on_null(boost::json::error_code&) {
        stack_.push_null();
        end_value();
        return true;
    }

    // Comments are disabled in the parse options, so these are never called.
    bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
    bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

    failure failed() const noexcept { return failure_; }
    // The repeated member name.
    std::string const& failed_text() const noexcept { return failed_text_; }
    // The member path of the failure; for a repeated name it ends with that name.
    std::string const& failed_path() const noexcept { return failed_path_; }

    boost::json::value release() { return stack_.release(); }

private:
    // An ordered set, so that crafted names cannot force quadratic hash collisions.
    using name_set = std::pmr::set<std::pmr::string, std::less<>>;

    struct container {
        bool is_object;
        name_set names;
        std::pmr::string const* current_name; // Points into `names`.
        std::size_t index;                    // Completed elements of an array.
    };

    void end_value() {
        if (!containers_.empty() && !containers_.back().is_object) {
            ++containers_.back().index;
        }
    }

    std::string path() const {
        std::string result;
        for (container const& c : containers_) {
            if (!c.is_object) {
                result += '[' + std::to_string(c.index) + ']';
                continue;
            }
            if (c.current_name == nullptr) {
                break;
            }
            if (!result.empty()) {
                result += '.';
            }
            result += *c.current_name;
        }
        return result;
    }

    bool fail(failure kind, std::string_view name, boost::json::error_code& ec) {
        failure_ = kind;
        failed_text_ = name;
        failed_path_ = path();
        // basic_parser only needs a non-zero code to stop; parse_strict reads failed().
        ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
        return false;
    }

    boost::json::value_stack stack_;
    // Stores the member names of every object until the parse ends, which avoids one heap
    // allocation per name. Closed objects give nothing back, so this grows with the total size of
    // all names, which the body size bounds.
    std::pmr::monotonic_buffer_resource names_memory_;
    std::vector<container> containers_;
    std::string key_;
    failure failure_ = failure::none;
    std::string failed_text_;
    std::string failed_path_;
};

//----------------------------------------------------------------------------------------------
// Problems found by parse_strict

inline bool starts_with_comment(std::string_view rest) noexcept {
    return rest.starts_with("//") || rest.starts_with("/*");
}

inline std::string_view comment_hint() noexcept {
    return "comments are not allowed in JSON; remove them";
}

// Explains a syntax error that Boost.JSON reported at `offset`.
inline std::string syntax_hint(std::string_view text, std::size_t offset) {
    if (offset >= text.size()) {
        return "the body ends before the JSON value is complete; close every string, array and "
               "object";
    }
    std::string_view const rest = text.substr(offset);
    auto const byte = static_cast<unsigned char>(rest[0]);
    if (starts_with_comment(rest)) {
        return std::string(comment_hint());
    }
    if (rest.starts_with("NaN") || rest.starts_with("Infinity")) {
        return "NaN and Infinity are not JSON numbers; send the value as a string or null";
    }
    if (rest[0] == ']' || rest[0] == '}') {
        std::size_t previous = offset;
        while (previous > 0 && is_json_whitespace(text[previous - 1])) {
            --previous;
        }
        if (previous > 0 && text[previous - 1] == ',') {
            return std::string("a trailing comma before '") + rest[0] +
                   "' is not allowed; remove the comma";
        }
    }
    if (rest[0] == '\'') {
        return "strings and member names must use double quotes, not single quotes";
    }
    if (byte < 0x20) {
        return "control character U+00" + hex_byte(byte) +
               " is not allowed here; inside a string write it as the escape \\u00" +
               hex_byte(byte);
    }
    if (offset > 0 && text[offset - 1] == '\\') {
        return "\\" + excerpt(rest.substr(0, 1)) +
               " is not a JSON escape; the escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and "
               "\\u followed by four hexadecimal digits";
    }
    if (is_digit(rest[0]) && offset > 0 && text[offset - 1] == '0') {
        return "numbers must not have leading zeros";
    }
    if (byte >= 0x20 && byte < 0x7F) {
        return std::string("unexpected character '") + rest[0] + "'";
    }
    return "unexpected byte 0x" + hex_byte(byte);
}

inline problem invalid_json(std::string_view text, std::size_t offset, std::string_view hint) {
    return make_problem("invalid_json", "Invalid JSON at " + describe_position(text, offset) +
                                            ": " + std::string(hint) + ".");
}

inline problem lone_surrogate(std::string_view text, std::size_t offset) {
    return make_problem(
        "lone_surrogate",
        "Invalid JSON at " + describe_position(text, offset) + ": the escape " +
            std::string(text.substr(offset, 6)) +
            " is an unpaired UTF-16 surrogate. Write a character above U+FFFF as a high "
            "surrogate escape (\\uD800 to \\uDBFF) followed by a low one (\\uDC00 to \\uDFFF).");
}

// `number` is a view into `text`.
inline problem number_out_of_range(std::string_view text, std::string_view number,
                                   std::string field) {
    return make_problem("number_out_of_range",
                        "The number " + excerpt(number, 40) + " at " +
                            describe_position(text, number.data() - text.data()) +
                            " is outside the range of a double; send it as a string.",
                        std::move(field));
}

inline problem handler_problem(std::string_view text, std::size_t end,
                               strict_handler const& handler) {
    if (handler.failed() == strict_handler::failure::number_out_of_range) {
        // The parser stops right after the number.
        return number_out_of_range(text, number_around(text, end), handler.failed_path());
    }
    // The parser stops right after the closing quote of the repeated name.
    std::string const& path = handler.failed_path();
    std::size_t const parent_length = path.size() > handler.failed_text().size()
                                          ? path.size() - handler.failed_text().size() - 1
                                          : 0;
    std::string const where = parent_length == 0 ? std::string("the top-level object")
                                                 : "the object at " + path.substr(0, parent_length);
    return make_problem("duplicate_member",
                        "Duplicate member name " + quoted(handler.failed_text()) + " at " +
                            describe_position(text, find_string_start(text, end)) + " in " + where +
                            "; each name may appear only once in an object.",
                        path);
}

inline problem parser_problem(std::string_view text, std::size_t offset,
                              boost::json::error_code const& ec, std::size_t max_depth) {
    namespace json = boost::json;
    if (auto const escape = find_lone_surrogate(text, offset)) {
        return lone_surrogate(text, *escape);
    }
    if (ec == json::error::too_deep) {
        return make_problem("too_deep", "Arrays and objects are nested deeper than " +
                                            std::to_string(max_depth) + " levels at " +
                                            describe_position(text, offset) +
                                            "; send a flatter document.");
    }
    if (ec == json::error::exponent_overflow) {
        return number_out_of_range(text, number_around(text, offset), {});
    }
    if (ec == json::error::expected_hex_digit) {
        return invalid_json(text, offset, "a \\u escape needs four hexadecimal digits");
    }
    if (ec == json::error::incomplete) {
        return invalid_json(text, text.size(),
                            "the body ends before the JSON value is complete; close every "
                            "string, array and object");
    }
    return invalid_json(text, offset, syntax_hint(text, offset));
}

inline problem trailing_problem(std::string_view text, std::size_t offset) {
    std::string_view const rest = text.substr(offset);
    if (starts_with_comment(rest)) {
        return invalid_json(text, offset, comment_hint());
    }
    // Boost.JSON reads "012" as the number 0 followed by more text.
    if (is_digit(rest[0]) && offset > 0 && text[offset - 1] == '0') {
        return invalid_json(text, offset, "numbers must not have leading zeros");
    }
    return make_problem("trailing_data", "Unexpected data after the JSON value at " +
                                             describe_position(text, offset) +
                                             "; send exactly one JSON value.");
}

inline char const* kind_name(boost::json::kind k) noexcept {
    switch (k) {
    case boost::json::kind::null:
        return "null";
    case boost::json::kind::bool_:
        return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
        return "a number";
    case boost::json::kind::string:
        return "a string";
    case boost::json::kind::array:
        return "an array";
    case boost::json::kind::object:
        return "an object";
    }
    return "a value";
}

//----------------------------------------------------------------------------------------------
// Skipping values in accepted text

// Returns the index just past the JSON value starting at text[start], or npos when the text is
// malformed there. Containers are skipped by counting brackets, without recursion.
inline std::size_t skip_value(std::string_view text, std::size_t start) noexcept {
    if (start >= text.size()) {
        return npos;
    }
    char const first = text[start];
    if (first == '"') {
        return skip_string(text, start);
    }
    std::size_t i = start;
    if (first == '{' || first == '[') {
        std::size_t depth = 0;
        while (i < text.size()) {
            char const c = text[i];
            if (c == '"') {
                i = skip_string(text, i);
                if (i == npos) {
                    return npos;
                }
                continue;
            }
            if (c == '{' || c == '[') {
                ++depth;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    return i + 1;
                }
            }
            ++i;
        }
        return npos;
    }
    // A number or a literal ends at the next structural character or whitespace.
    while (i < text.size() && !is_json_whitespace(text[i]) && text[i] != ',' && text[i] != '}' &&
           text[i] != ']') {
        ++i;
    }
    return i == start ? npos : i;
}

inline bool member_name_equals(std::string_view content, std::string_view name) {
    if (content.find('\\') == npos) {
        return content == name;
    }
    std::string unescaped;
    return unescape(content, unescaped) && unescaped == name;
}

//----------------------------------------------------------------------------------------------
// Identifiers

inline problem identifier_problem(std::string_view field, std::string const& what) {
    std::string const subject = field.empty() ? "The identifier" : std::string(field);
    return make_problem("invalid_identifier", subject + " " + what, std::string(field));
}

inline std::variant<identifier, problem> read_string_identifier(std::string_view raw,
                                                                std::string_view field) {
    std::string text;
    if (skip_string(raw, 0) != raw.size() || !unescape(raw.substr(1, raw.size() - 2), text)) {
        return identifier_problem(field, "is not a valid JSON string; send a string of 1 to " +
                                             std::to_string(max_identifier_length) +
                                             " printable ASCII characters.");
    }
    if (text.empty()) {
        return identifier_problem(field, "is empty; send 1 to " +
                                             std::to_string(max_identifier_length) +
                                             " printable ASCII characters.");
    }
    for (char const c : text) {
        auto const byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7F) {
            return identifier_problem(field, "contains the control character U+00" +
                                                 hex_byte(byte) +
                                                 "; use printable ASCII characters only.");
        }
        if (byte >= 0x80) {
            return identifier_problem(field, "contains a non-ASCII character; use printable "
                                             "ASCII characters (U+0020 to U+007E) only.");
        }
    }
    if (text.size() > max_identifier_length) {
        return identifier_problem(field, "is " + std::to_string(text.size()) +
                                             " characters long, over the maximum of " +
                                             std::to_string(max_identifier_length) + ".");
    }
    return identifier{std::move(text), false};
}

inline std::variant<identifier, problem> read_integer_identifier(std::string_view raw,
                                                                 std::string_view field) {
    std::size_t digits = 0;
    while (digits < raw.size() && is_digit(raw[digits])) {
        ++digits;
    }
    if (digits < raw.size()) {
        char const next = raw[digits];
        if (next == '.' || next == 'e' || next == 'E') {
            return identifier_problem(field, "is " + excerpt(raw, 40) + ", which has a" +
                                                 (next == '.' ? " fraction" : "n exponent") +
                                                 "; send an integer of plain digits or a "
                                                 "string.");
        }
        return identifier_problem(field, "is not a valid JSON value; send a string or an "
                                         "integer.");
    }
    if (raw[0] == '0' && digits > 1) {
        return identifier_problem(field, "has leading zeros, which JSON numbers do not allow; "
                                         "send it as a string to keep them.");
    }
    static constexpr std::string_view int64_max = "9223372036854775807";
    if (digits > int64_max.size() || (digits == int64_max.size() && raw > int64_max)) {
        std::string const subject = field.empty() ? "The identifier" : std::string(field);
        return make_problem("identifier_out_of_range",
                            subject + " is " + excerpt(raw, 40) +
                                ", which does not fit a signed 64-bit integer (maximum " +
                                std::string(int64_max) + "); send it as a string.",
                            std::string(field));
    }
    return identifier{std::string(raw), true};
}

} // namespace detail

inline std::variant<boost::json::value, problem> parse_strict(std::string_view text, options o) {
    using detail::make_problem;
    if (text.size() > o.max_size) {
        return make_problem("body_too_large", "The request body is " + std::to_string(text.size()) +
                                                  " bytes, over the limit of " +
                                                  std::to_string(o.max_size) +
                                                  " bytes; send a smaller body.");
    }
    if (detail::skip_whitespace(text, 0) == text.size()) {
        return make_problem("empty_body", text.empty()
                                              ? "The request body is empty; send one JSON value."
                                              : "The request body contains only whitespace; "
                                                "send one JSON value.");
    }
    if (text.starts_with("\xEF\xBB\xBF")) {
        return detail::invalid_json(text, 0,
                                    "the body starts with a UTF-8 byte order mark (EF BB BF), "
                                    "which JSON texts must not have; send the body without it");
    }
    if (auto const bad = detail::find_invalid_utf8(text)) {
        return make_problem("invalid_utf8", "The request body is not valid UTF-8 at " +
                                                detail::describe_position(text, bad->offset) +
                                                ": " + bad->reason +
                                                ". Send the body encoded as UTF-8.");
    }

    boost::json::parse_options parse_options;
    parse_options.max_depth = o.max_depth;
    parse_options.allow_comments = false;
    parse_options.allow_trailing_commas = false;
    parse_options.allow_invalid_utf8 = false;
    boost::json::basic_parser<detail::strict_handler> parser(parse_options);
    boost::json::error_code ec;
    // With more == false the parser consumes trailing whitespace and returns the offset just
    // past it, or the offset where it stopped on an error.
    std::size_t const end = parser.write_some(false, text.data(), text.size(), ec);
    if (parser.handler().failed() != detail::strict_handler::failure::none) {
        return detail::handler_problem(text, end, parser.handler());
    }
    if (ec) {
        return detail::parser_problem(text, end, ec, o.max_depth);
    }
    if (end < text.size()) {
        return detail::trailing_problem(text, end);
    }
    boost::json::value value = parser.handler().release();
    if (o.require_object && !value.is_object()) {
        return make_problem("not_an_object", std::string("The request body is ") +
                                                 detail::kind_name(value.kind()) +
                                                 ", but a JSON object is required; send an "
                                                 "object.");
    }
    return value;
}

inline std::optional<std::string_view> raw_member(std::string_view text, std::string_view name) {
    using detail::npos;
    using detail::skip_whitespace;
    std::size_t i = skip_whitespace(text, 0);
    if (i >= text.size() || text[i] != '{') {
        return std::nullopt;
    }
    i = skip_whitespace(text, i + 1);
    if (i < text.size() && text[i] == '}') {
        return std::nullopt;
    }
    while (i < text.size() && text[i] == '"') {
        std::size_t const name_end = detail::skip_string(text, i);
        if (name_end == npos) {
            return std::nullopt;
        }
        std::string_view const content = text.substr(i + 1, name_end - i - 2);
        i = skip_whitespace(text, name_end);
        if (i >= text.size() || text[i] != ':') {
            return std::nullopt;
        }
        std::size_t const value_start = skip_whitespace(text, i + 1);
        std::size_t const value_end = detail::skip_value(text, value_start);
        if (value_end == npos) {
            return std::nullopt;
        }
        if (detail::member_name_equals(content, name)) {
            return text.substr(value_start, value_end - value_start);
        }
        i = skip_whitespace(text, value_end);
        if (i >= text.size() || text[i] != ',') {
            return std::nullopt;
        }
        i = skip_whitespace(text, i + 1);
    }
    return std::nullopt;
}

inline std::variant<identifier, problem> read_identifier(std::string_view raw_value,
                                                         std::string_view field) {
    std::string_view const raw = detail::trim_whitespace(raw_value);
    if (raw.empty()) {
        return detail::identifier_problem(field, "has no value; send a string or an integer.");
    }
    char const first = raw[0];
    if (first == '"') {
        return detail::read_string_identifier(raw, field);
    }
    if (detail::is_digit(first)) {
        return detail::read_integer_identifier(raw, field);
    }
    if (first == '-' && raw.size() > 1 && detail::is_digit(raw[1])) {
        return detail::identifier_problem(field, "is " + detail::excerpt(raw, 40) +
                                                     ", but negative numbers are not "
                                                     "identifiers; send a non-negative integer "
                                                     "or a string.");
    }
    char const* kind = nullptr;
    if (raw == "true" || raw == "false") {
        kind = "a boolean";
    } else if (raw == "null") {
        kind = "null";
    } else if (first == '{') {
        kind = "an object";
    } else if (first == '[') {
        kind = "an array";
    }
    if (kind == nullptr) {
        return detail::identifier_problem(field, "is not a valid JSON value; send a string or "
                                                 "an integer.");
    }
    return detail::identifier_problem(field, std::string("must be a string or an integer, not ") +
                                                 kind + ".");
}

} // namespace revdesk::json_input
