// A hash for unordered containers keyed by std::string that also accepts std::string_view, so
// that a lookup by view builds no string.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace revdesk::detail {

/// Use with `std::equal_to<>` as the key equality.
///
/// The call operator is deliberately not `noexcept`: libstdc++ then stores each node's hash, as
/// it does for std::hash<std::string>, and compares it before the key. Without it, every node of
/// a probed bucket has its key compared, which reads the key's separate heap block (a cache miss
/// in a large table), and a rehash computes every hash again.
struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const {
        return std::hash<std::string_view>{}(text);
    }
};

} // namespace revdesk::detail
