// A hash for unordered containers keyed by std::string that also accepts std::string_view, so
// that a lookup by view builds no string.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace revdesk::detail {

/// Use with `std::equal_to<>` as the key equality.
struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
        return std::hash<std::string_view>{}(text);
    }
};

} // namespace revdesk::detail
