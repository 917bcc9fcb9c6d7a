// Serialization of HTTP/1.1 requests and responses into their wire form (RFC 9112).
//
// The serializer writes what the message contains and adds the framing the message lacks. It
// rejects any message a strict parser would reject or read differently: a line break or control
// character in any part (header injection), a name that is not a token, or framing fields that
// contradict the body. Every function here is safe to call from several threads at once on
// distinct or shared `const` messages.
#pragma once

#include <revdesk/http/message.hpp>

#include <span>
#include <string>
#include <string_view>

namespace revdesk::http {

/// Returns the wire form of `r`: request line, fields in order, an empty line and the body.
///
/// Framing: with neither Content-Length nor Transfer-Encoding, a `Content-Length: <body size>`
/// field is added when the body is not empty or the method is POST, PUT or PATCH. With
/// `Transfer-Encoding` whose final coding is chunked, the body is written as one chunk (when not
/// empty) and the last chunk. Other codings in the list are taken as already applied to `body`.
///
/// Throws `std::invalid_argument`, naming the part, when the method or a field name is not a
/// token; the target is empty or has a byte outside 0x21..0x7E; a field value has a control
/// character other than HTAB; the version is not 10 or 11; Content-Length appears more than once
/// or differs from the body size; Transfer-Encoding appears with Content-Length, in HTTP/1.0 or
/// without chunked as its final coding.
std::string serialize(request const& r);

/// Returns the wire form of `r`: status line, fields in order, an empty line and the body. An
/// empty `reason` is replaced by the standard phrase for the status (RFC 9110 section 15), or
/// by nothing for a status without one.
///
/// Framing: for 1xx and 204 the body must be empty and there must be no Content-Length or
/// Transfer-Encoding; for 304 the body must be empty. Otherwise, with neither field, a
/// `Content-Length: <body size>` field is added, and Transfer-Encoding works as for requests.
/// A Content-Length that differs from a non-empty body throws. With an empty body it is kept,
/// since the response to a HEAD request announces the length of the body it does not carry.
///
/// Throws `std::invalid_argument`, naming the part, when the status is outside 100..599; the
/// reason has a control character other than HTAB; a field name is not a token or a value has a
/// control character; the version is not 10 or 11; or the framing rules above are broken.
std::string serialize(response const& r);

/// A field as two views, for a field that is written at once and not kept.
struct field_view {
    std::string_view name;
    std::string_view value;
};

/// The request line and the fields that many requests share, checked and written once, for a
/// sender that writes the same start again and again, such as the deliveries of one
/// subscription. Each finish() adds the fields that change, the framing and the body.
class request_prefix {
public:
    /// Checks and writes the request line (HTTP/1.1) and the fields of `fixed`, in order.
    /// Throws `std::invalid_argument` like serialize(request const&) for an invalid method,
    /// target, field name or value, and for a Content-Length or Transfer-Encoding field.
    request_prefix(std::string_view method, std::string_view target, fields const& fixed);

    /// Returns the wire form of a request: the prefix, the fields of `more` in order, a
    /// `Content-Length` field with the size of `body`, an empty line and `body`. Throws
    /// `std::invalid_argument` like the constructor for an invalid field of `more`. A field of
    /// `more` that is also among the fixed fields is written twice.
    std::string finish(std::span<field_view const> more, std::string_view body) const;

    /// Returns the request line and the fixed fields as written.
    std::string_view bytes() const noexcept { return bytes_; }

private:
    std::string bytes_;
};

/// Returns the standard reason phrase of `status` (RFC 9110 section 15), or an empty string for
/// a status without one.
std::string_view default_reason(int status) noexcept;

} // namespace revdesk::http

#include <revdesk/http/impl/serializer.ipp>
