#include <revdesk/json_input.hpp>

#define BOOST_TEST_MODULE json_input
#include <boost/test/unit_test.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace json_input = revdesk::json_input;

namespace {

std::string repeat(std::string_view piece, std::size_t count) {
    std::string out;
    out.reserve(piece.size() * count);
    for (std::size_t i = 0; i < count; ++i) {
        out += piece;
    }
    return out;
}

std::string nested_arrays(std::size_t depth) {
    return repeat("[", depth) + repeat("]", depth);
}

std::string nested_objects(std::size_t depth) {
    return repeat(R"({"a":)", depth) + "1" + repeat("}", depth);
}

boost::json::value json_string(std::string_view text) {
    return boost::json::string(text.data(), text.size());
}

// Returns the problem message of a result, or an empty string when it contains a value.
template <class Value>
std::string message_of(std::variant<Value, json_input::problem> const& result) {
    auto const* found = std::get_if<json_input::problem>(&result);
    return found ? found->message : std::string();
}

std::optional<json_input::problem> problem_of(std::string_view text, json_input::options o = {}) {
    auto result = json_input::parse_strict(text, o);
    if (auto const* found = std::get_if<json_input::problem>(&result)) {
        return *found;
    }
    return std::nullopt;
}

struct rejected_body {
    std::string_view name;
    std::string text;
    std::string_view code;
    std::string_view field;       // Expected problem::field.
    std::string_view message_has; // A fragment the message must contain.
};

std::vector<rejected_body> const rejected_bodies = {
    // Duplicate member names, which Boost.JSON 1.81 accepts with the last value winning.
    {"duplicate top level", R"({"a":1,"a":2})", "duplicate_member", "a",
     R"(name "a" at line 1, column 8 (byte 7) in the top-level object)"},
    {"duplicate nested", R"({"payload":{"id":1,"id":2}})", "duplicate_member", "payload.id",
     "in the object at payload"},
    {"duplicate in array element", R"({"items":[{"id":1},{"id":1,"id":2}]})", "duplicate_member",
     "items[1].id", "in the object at items[1]"},
    {"duplicate after unescaping", R"({"id":1,"\u0069d":2})", "duplicate_member", "id",
     R"("id" at line 1, column 9 (byte 8))"},
    {"duplicate with other value types", R"({"a":[1],"b":true,"a":{"x":null}})", "duplicate_member",
     "a", "byte 18"},
    {"duplicate deep", R"([[{"k":{"m":1,"m":1}}]])", "duplicate_member", "[0][0].k.m",
     "in the object at [0][0].k"},

    // Data after the value.
    {"letter after object", R"({"a":1}x)", "trailing_data", "", "byte 7"},
    {"second object", R"({"a":1}{"b":2})", "trailing_data", "", "exactly one JSON value"},
    {"second number", "1 2", "trailing_data", "", "byte 2"},
    {"NUL after value", std::string("1\0", 2), "trailing_data", "", "byte 1"},

    // Syntax outside RFC 8259.
    {"trailing comma in array", "[1,]", "invalid_json", "", "trailing comma before ']'"},
    {"trailing comma in object", R"({"a":1,})", "invalid_json", "", "trailing comma before '}'"},
    {"NaN member", R"({"a":NaN})", "invalid_json", "", "NaN and Infinity"},
    {"Infinity", "Infinity", "invalid_json", "", "NaN and Infinity"},
    {"negative Infinity", "-Infinity", "invalid_json", "", "NaN and Infinity"},
    {"line comment only", "// c", "invalid_json", "", "comments are not allowed"},
    {"block comment before value", "/* c */ 1", "invalid_json", "", "comments are not allowed"},
    {"line comment after value", "1 // c", "invalid_json", "", "comments are not allowed"},
    {"single quotes", "{'a':1}", "invalid_json", "", "double quotes"},
    {"unquoted name", "{a:1}", "invalid_json", "", "unexpected character 'a'"},
    {"raw control character in string", "\"a\x01\"", "invalid_json", "", "U+0001"},
    {"raw tab in string", "\"a\tb\"", "invalid_json", "", "U+0009"},
    {"unknown escape", R"("\x")", "invalid_json", "", "\\x is not a JSON escape"},
    {"short unicode escape", R"("\u12")", "invalid_json", "", "four hexadecimal digits"},
    {"leading zero", "01", "invalid_json", "", "leading zeros"},
    {"leading zero in array", "[01]", "invalid_json", "", "leading zeros"},
    {"plus sign", "+1", "invalid_json", "", "unexpected character '+'"},
    {"fraction without digits", "1.", "invalid_json", "", "ends before"},
    {"fraction without integer", ".5", "invalid_json", "", "unexpected character '.'"},
    {"missing colon", R"({"a" 1})", "invalid_json", "", "byte 5"},
    {"unclosed array", "[1", "invalid_json", "", "ends before"},
    {"truncated literal", "tru", "invalid_json", "", "ends before"},
    {"form feed is not whitespace", "\f1", "invalid_json", "", "U+000C"},
    {"byte order mark", "\xEF\xBB\xBF{}", "invalid_json", "", "byte order mark"},

    // Invalid UTF-8, inside and outside strings.
    {"overlong two bytes", "\"\xC0\xAF\"", "invalid_utf8", "", "byte 1): an overlong encoding"},
    {"overlong three bytes", "\"\xE0\x80\xAF\"", "invalid_utf8", "", "overlong"},
    {"overlong four bytes", "\"\xF0\x80\x80\xAF\"", "invalid_utf8", "", "overlong"},
    {"surrogate encoded in UTF-8", "\"\xED\xA0\x80\"", "invalid_utf8", "",
     "UTF-16 surrogate (U+D800 to U+DFFF) encoded in UTF-8"},
    {"truncated sequence inside string", "\"\xE2\x82\"", "invalid_utf8", "", "incomplete"},
    {"truncated sequence at end", "\"\xE2\x82", "invalid_utf8", "", "incomplete"},
    {"above U+10FFFF", "\"\xF4\x90\x80\x80\"", "invalid_utf8", "", "above U+10FFFF"},
    {"lead byte F5", "\"\xF5\x80\x80\x80\"", "invalid_utf8", "", "above U+10FFFF"},
    {"byte FF", "\"\xFF\"", "invalid_utf8", "", "never occurs"},
    {"lone continuation byte", "\"\x80\"", "invalid_utf8", "", "continuation byte"},
    {"invalid byte in member name", "{\"a\xC3\":1}", "invalid_utf8", "", "byte 3"},
    {"invalid byte outside strings", "[1,\xC3]", "invalid_utf8", "", "byte 3"},

    // Unpaired UTF-16 surrogate escapes.
    {"lone high surrogate", R"("\ud800")", "lone_surrogate", "", R"(the escape \ud800 )"},
    {"low surrogate first", R"("\udc00\ud800")", "lone_surrogate", "", R"(the escape \udc00 )"},
    {"high surrogate then letter", R"("\ud800x")", "lone_surrogate", "", "byte 1"},
    {"high surrogate then non-surrogate escape", R"("\ud800\u0041")", "lone_surrogate", "",
     "byte 1"},
    {"two high surrogates", R"("\udbff\udbff")", "lone_surrogate", "", R"(\udbff)"},
    {"lone surrogate in member name", R"({"a\udfff":1})", "lone_surrogate", "", "byte 3"},
    {"lone surrogate after valid pair", R"(["\ud83d\ude00","\ud800"])", "lone_surrogate", "",
     "byte 17"},

    // Numbers beyond the range of a double.
    {"huge exponent", "1e400", "number_out_of_range", "", "number 1e400 at line 1, column 1"},
    {"huge negative", "-1e400", "number_out_of_range", "", "number -1e400"},
    {"huge number in array member", R"({"a":[0, 1e400]})", "number_out_of_range", "a[1]", "byte 9"},
    {"exponent overflow", "[1e999999999999]", "number_out_of_range", "", "1e999999999999"},

    // Nothing to parse.
    {"empty body", "", "empty_body", "", "is empty"},
    {"only whitespace", " \t\r\n ", "empty_body", "", "only whitespace"},

    // Nesting deeper than the default max_depth of 32.
    {"33 nested arrays", nested_arrays(33), "too_deep", "", "deeper than 32 levels"},
    {"33 nested objects", nested_objects(33), "too_deep", "", "deeper than 32 levels"},
    {"100000 open brackets", repeat("[", 100000), "too_deep", "", "byte 32"},
};

} // namespace

BOOST_AUTO_TEST_CASE(parse_strict_rejects_invalid_bodies) {
    for (rejected_body const& c : rejected_bodies) {
        BOOST_TEST_CONTEXT(c.name) {
            auto const found = problem_of(c.text);
            BOOST_TEST(found.has_value());
            if (!found) {
                continue;
            }
            BOOST_TEST(found->code == c.code);
            BOOST_TEST(found->field == c.field);
            BOOST_TEST(found->message.find(c.message_has) != std::string::npos,
                       "message: " << found->message);
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_strict_rejects_deep_nesting_iteratively) {
    // Each body nests far deeper than the limit. A recursive parser could overflow the stack on
    // them, so a crash here means the depth check no longer runs before the recursion.
    struct deep_case {
        std::string_view name;
        std::string text;
    };
    std::vector<deep_case> const cases = {
        {"arrays", repeat("[", 100000)},
        {"objects", repeat(R"({"a":)", 100000)},
        {"mixed", repeat(R"([{"a":)", 50000)},
        {"closed arrays", nested_arrays(100000)},
    };
    for (deep_case const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            auto const found = problem_of(c.text, {32, 4 * 1024 * 1024});
            BOOST_TEST(found.has_value());
            if (found) {
                BOOST_TEST(found->code == "too_deep");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_strict_enforces_max_depth_option) {
    struct depth_case {
        std::size_t max_depth;
        std::string text;
        bool accepted;
    };
    std::vector<depth_case> const cases = {
        {32, nested_arrays(32), true},
        {32, nested_objects(32), true},
        {2, "[[1]]", true},
        {2, "[[[1]]]", false},
        {2, R"({"a":[1]})", true},
        {2, R"({"a":[{}]})", false},
        {0, "1", true},
        {0, "[]", false},
    };
    for (depth_case const& c : cases) {
        BOOST_TEST_CONTEXT("max_depth " << c.max_depth << ", body " << c.text.substr(0, 40)) {
            auto const found = problem_of(c.text, {c.max_depth, 1024});
            BOOST_TEST(found.has_value() == !c.accepted);
            if (found) {
                BOOST_TEST(found->code == "too_deep");
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_strict_enforces_max_size) {
    std::string const body = R"({"a":"xxxx"})"; // 12 bytes
    BOOST_TEST(!problem_of(body, {32, 12}).has_value());

    auto const found = problem_of(body, {32, 11});
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->code == "body_too_large");
    BOOST_TEST(found->message.find("12 bytes, over the limit of 11 bytes") != std::string::npos);

    // The size check comes first, so even an invalid oversized body gets body_too_large.
    auto const invalid = problem_of(repeat("[", 2000), {32, 1000});
    BOOST_TEST_REQUIRE(invalid.has_value());
    BOOST_TEST(invalid->code == "body_too_large");
}

BOOST_AUTO_TEST_CASE(parse_strict_requires_object_when_asked) {
    json_input::options const object_only{32, 1024, true};
    struct kind_case {
        std::string_view text;
        std::string_view kind_in_message; // Empty when the body is accepted.
    };
    std::vector<kind_case> const cases = {
        {R"({"a":1})", ""},     {"[1]", "an array"},   {"1", "a number"},
        {R"("s")", "a string"}, {"true", "a boolean"}, {"null", "null"},
    };
    for (kind_case const& c : cases) {
        BOOST_TEST_CONTEXT(c.text) {
            auto const found = problem_of(c.text, object_only);
            BOOST_TEST(found.has_value() == !c.kind_in_message.empty());
            if (found) {
                BOOST_TEST(found->code == "not_an_object");
                BOOST_TEST(found->message.find(c.kind_in_message) != std::string::npos);
            }
            // Without require_object every one of them is a valid body.
            BOOST_TEST(!problem_of(c.text).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(parse_strict_reports_line_and_column) {
    auto const found = problem_of("{\n  \"a\": 1,\n  \"a\": 2\n}");
    BOOST_TEST_REQUIRE(found.has_value());
    BOOST_TEST(found->code == "duplicate_member");
    BOOST_TEST(found->message.find("line 3, column 3 (byte 14)") != std::string::npos,
               "message: " << found->message);

    auto const comma = problem_of("[\n  1,\n  2,\n]");
    BOOST_TEST_REQUIRE(comma.has_value());
    BOOST_TEST(comma->code == "invalid_json");
    BOOST_TEST(comma->message.find("line 4, column 1") != std::string::npos,
               "message: " << comma->message);
}

BOOST_AUTO_TEST_CASE(parse_strict_accepts_valid_bodies) {
    struct accepted_body {
        std::string_view name;
        std::string text;
        boost::json::value expected;
    };
    std::vector<accepted_body> const cases = {
        {"surrogate pair escape", R"("\ud83d\ude00")", json_string("\xF0\x9F\x98\x80")},
        {"upper-case surrogate pair escape", R"("\uD83D\uDE00")", json_string("\xF0\x9F\x98\x80")},
        {"line separator escape", R"("\u2028")", json_string("\xE2\x80\xA8")},
        {"raw line separator", "\"\xE2\x80\xA8\"", json_string("\xE2\x80\xA8")},
        {"raw four-byte character", "\"\xF4\x8F\xBF\xBF\"", json_string("\xF4\x8F\xBF\xBF")},
        {"DEL is not a control character in JSON", "\"a\x7F\"", json_string("a\x7F")},
        {"escapes", R"("\"\\\/\b\f\n\r\t\u0000")",
         json_string(std::string_view("\"\\/\b\f\n\r\t\0", 9))},
        {"same name in different objects", R"({"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]})",
         boost::json::parse(R"({"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]})")},
        {"names differing only in case", R"({"a":1,"A":2})",
         boost::json::parse(R"({"a":1,"A":2})")},
        {"escaped name", R"({"\u00e9":1})", boost::json::parse("{\"\xC3\xA9\":1}")},
        {"whitespace everywhere", " \t\r\n{ \"a\" :\n[ 1 ,\t2 ] }\r\n ",
         boost::json::parse(R"({"a":[1,2]})")},
        {"uint64 maximum", "18446744073709551615", std::uint64_t{18446744073709551615u}},
        {"integer beyond uint64 becomes a double", "12345678901234567890123",
         1.2345678901234568e22},
        {"negative zero", "-0", std::int64_t{0}},
        {"exponent forms", "[1e-5,1E+2,0.5]", boost::json::parse("[1e-5,100.0,0.5]")},
        {"literals", "[true,false,null]", boost::json::parse("[true,false,null]")},
        {"32 nested arrays", nested_arrays(32), boost::json::parse(nested_arrays(32))},
        {"empty containers", R"({"a":{},"b":[]})", boost::json::parse(R"({"a":{},"b":[]})")},
    };
    for (accepted_body const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            auto const result = json_input::parse_strict(c.text);
            auto const* value = std::get_if<boost::json::value>(&result);
            BOOST_TEST(value != nullptr, "problem: " << message_of(result));
            if (value != nullptr) {
                BOOST_TEST(*value == c.expected, boost::json::serialize(*value));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(raw_member_returns_exact_bytes) {
    struct member_case {
        std::string_view name;
        std::string_view text;
        std::string_view member;
        std::optional<std::string_view> expected;
    };
    std::vector<member_case> const cases = {
        {"spacing preserved", R"({"payload" :  { "b" : [ 1 ,2 ] }  })", "payload",
         R"({ "b" : [ 1 ,2 ] })"},
        {"string with escaped quote and backslash", R"({"a":"x\"}\\","payload":"y"})", "a",
         R"("x\"}\\")"},
        {"member after tricky string", R"({"a":"x\"}\\","payload":"y"})", "payload", R"("y")"},
        {"brackets inside strings", R"({"a":"{[","b":"]}","c":3})", "c", "3"},
        {"same name nested before top level", R"({"meta":{"payload":1},"payload":2})", "payload",
         "2"},
        {"same name inside array", R"({"list":[{"payload":1}],"payload":[3]})", "payload", "[3]"},
        {"only nested", R"({"x":{"payload":1}})", "payload", std::nullopt},
        {"absent", R"({"a":1})", "payload", std::nullopt},
        {"empty object", "{ }", "payload", std::nullopt},
        {"array body", R"([{"payload":1}])", "payload", std::nullopt},
        {"string body", R"("payload")", "payload", std::nullopt},
        {"escaped member name", R"({"p\u0061yload":5})", "payload", "5"},
        {"member name with escaped quote", R"({"a\"b":1})", "a\"b", "1"},
        {"big integer as written", R"({"id": 12345678901234567890123 })", "id",
         "12345678901234567890123"},
        {"number with exponent", R"({"a":-1.5e3})", "a", "-1.5e3"},
        {"literal at end", R"({"a":1,"b":null})", "b", "null"},
        {"whitespace everywhere", "\n\t{\r\n\"a\"\n:\n1\n,\n\"b\"\t:\t\"x\"\n}\n", "b", R"("x")"},
        {"empty string value", R"({"a":""})", "a", R"("")"},
        {"nested empty containers", R"({"a":[[],{}],"b":{}})", "b", "{}"},
    };
    for (member_case const& c : cases) {
        BOOST_TEST_CONTEXT(c.name) {
            // The contract covers bodies that parse_strict accepted.
            BOOST_TEST(!problem_of(c.text).has_value());
            auto const raw = json_input::raw_member(c.text, c.member);
            BOOST_TEST(raw.has_value() == c.expected.has_value());
            if (raw && c.expected) {
                BOOST_TEST(*raw == *c.expected);
                // The view points into the body rather than into a copy.
                BOOST_TEST((raw->data() >= c.text.data() &&
                            raw->data() + raw->size() <= c.text.data() + c.text.size()));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(raw_member_tolerates_malformed_text) {
    // Outside the contract the result is unspecified, but the scan must stay inside the text;
    // the sanitizer build checks that.
    std::vector<std::string_view> const texts = {
        "",
        "{",
        R"({")",
        R"({"a)",
        R"({"a":)",
        R"({"a":"x)",
        "{\"a\\",
        R"({"a":[1,2)",
        R"({"a":{"b":)",
        R"({"a" 1})",
        R"({"a":1 "b":2})",
        "}",
    };
    for (std::string_view const text : texts) {
        BOOST_TEST_CONTEXT(text) {
            BOOST_TEST(!json_input::raw_member(text, "b").has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(read_identifier_accepts_strings_and_integers) {
    struct accepted_identifier {
        std::string_view raw;
        std::string_view text;
        bool is_number;
    };
    std::string const longest = '"' + std::string(128, 'x') + '"';
    std::vector<accepted_identifier> const cases = {
        {R"("12345678901234567890")", "12345678901234567890", false},
        {"42", "42", true},
        {"0", "0", true},
        {"9223372036854775807", "9223372036854775807", true},
        {R"("wf_01-AB.c")", "wf_01-AB.c", false},
        {R"("a\"b\\c")", R"(a"b\c)", false},
        {R"("\u0041\/")", "A/", false},
        {R"(" x ")", " x ", false},
        {" \n42\t", "42", true},
        {longest, std::string_view(longest).substr(1, 128), false},
    };
    for (accepted_identifier const& c : cases) {
        BOOST_TEST_CONTEXT(c.raw) {
            auto const result = json_input::read_identifier(c.raw, "workflow_id");
            auto const* id = std::get_if<json_input::identifier>(&result);
            BOOST_TEST(id != nullptr, "problem: " << message_of(result));
            if (id == nullptr) {
                continue;
            }
            BOOST_TEST(id->text == c.text);
            BOOST_TEST(id->is_number == c.is_number);
        }
    }
}

BOOST_AUTO_TEST_CASE(read_identifier_rejects_other_values) {
    struct rejected_identifier {
        std::string raw;
        std::string_view code;
        std::string_view message_has;
    };
    std::vector<rejected_identifier> const cases = {
        {"12345678901234567890", "identifier_out_of_range", "does not fit a signed 64-bit"},
        {"9223372036854775808", "identifier_out_of_range", "maximum 9223372036854775807"},
        {"1.0", "invalid_identifier", "fraction"},
        {"1e3", "invalid_identifier", "exponent"},
        {"1E3", "invalid_identifier", "exponent"},
        {"-1", "invalid_identifier", "negative"},
        {"-0", "invalid_identifier", "negative"},
        {"007", "invalid_identifier", "leading zeros"},
        {"true", "invalid_identifier", "not a boolean"},
        {"false", "invalid_identifier", "not a boolean"},
        {"null", "invalid_identifier", "not null"},
        {"{}", "invalid_identifier", "not an object"},
        {R"({"id":1})", "invalid_identifier", "not an object"},
        {"[1]", "invalid_identifier", "not an array"},
        {R"("")", "invalid_identifier", "is empty"},
        {'"' + std::string(129, 'x') + '"', "invalid_identifier", "129 characters long"},
        {R"("a\u0001")", "invalid_identifier", "control character U+0001"},
        {R"("a\n")", "invalid_identifier", "control character U+000A"},
        {"\"a\x7F\"", "invalid_identifier", "control character U+007F"},
        {"\"a\tb\"", "invalid_identifier", "not a valid JSON string"},
        {"\"caf\xC3\xA9\"", "invalid_identifier", "non-ASCII"},
        {R"("\u00e9")", "invalid_identifier", "non-ASCII"},
        {R"("\ud800")", "invalid_identifier", "not a valid JSON string"},
        {R"("abc)", "invalid_identifier", "not a valid JSON string"},
        {R"("a"x)", "invalid_identifier", "not a valid JSON string"},
        {"42x", "invalid_identifier", "not a valid JSON value"},
        {"abc", "invalid_identifier", "not a valid JSON value"},
        {"", "invalid_identifier", "has no value"},
        {"  ", "invalid_identifier", "has no value"},
    };
    for (rejected_identifier const& c : cases) {
        BOOST_TEST_CONTEXT(c.raw) {
            auto const result = json_input::read_identifier(c.raw, "workflow_id");
            auto const* found = std::get_if<json_input::problem>(&result);
            BOOST_TEST(found != nullptr);
            if (found == nullptr) {
                continue;
            }
            BOOST_TEST(found->code == c.code);
            BOOST_TEST(found->field == "workflow_id");
            BOOST_TEST(found->message.starts_with("workflow_id "), "message: " << found->message);
            BOOST_TEST(found->message.find(c.message_has) != std::string::npos,
                       "message: " << found->message);
        }
    }
}

BOOST_AUTO_TEST_CASE(read_identifier_keeps_digits_that_a_double_rounds) {
    // 123456789012345678901234 exceeds uint64, so Boost.JSON stores a double that has lost
    // digits, while raw_member and read_identifier see the digits as sent.
    std::string_view const beyond_uint64 = R"({"workflow_id": 123456789012345678901234})";
    auto const parsed = json_input::parse_strict(beyond_uint64);
    auto const* value = std::get_if<boost::json::value>(&parsed);
    BOOST_TEST_REQUIRE(value != nullptr);
    BOOST_TEST(value->as_object().at("workflow_id").is_double());
    auto const raw_big = json_input::raw_member(beyond_uint64, "workflow_id");
    BOOST_TEST_REQUIRE(raw_big.has_value());
    BOOST_TEST(*raw_big == "123456789012345678901234");

    // 12345678901234567890 fits uint64 but not int64, so it is rejected as a number and kept as a
    // string.
    std::string_view const as_number = R"({"workflow_id": 12345678901234567890})";
    std::string_view const as_string = R"({"workflow_id": "12345678901234567890"})";
    BOOST_TEST_REQUIRE(!problem_of(as_number).has_value());
    BOOST_TEST_REQUIRE(!problem_of(as_string).has_value());

    auto const raw_number = json_input::raw_member(as_number, "workflow_id");
    BOOST_TEST_REQUIRE(raw_number.has_value());
    auto const from_number = json_input::read_identifier(*raw_number, "workflow_id");
    auto const* rejected = std::get_if<json_input::problem>(&from_number);
    BOOST_TEST_REQUIRE(rejected != nullptr);
    BOOST_TEST(rejected->code == "identifier_out_of_range");

    auto const raw_string = json_input::raw_member(as_string, "workflow_id");
    BOOST_TEST_REQUIRE(raw_string.has_value());
    auto const from_string = json_input::read_identifier(*raw_string, "workflow_id");
    auto const* id = std::get_if<json_input::identifier>(&from_string);
    BOOST_TEST_REQUIRE(id != nullptr);
    BOOST_TEST(id->text == "12345678901234567890");
    BOOST_TEST(!id->is_number);
}
