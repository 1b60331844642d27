#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace twin::runtime {

/// The name of `known` nearest to `name` (by edit distance, ignoring case), if it is near
/// enough to be what was meant: at most 2 edits, and fewer than half of `name`'s
/// characters. "" if none is.
std::string nearest_name(std::string_view name, const std::vector<std::string>& known);

/// What an error about the unknown `name` adds: " (did you mean 'x'?)" when one of
/// `known` is near it, else " (known: a, b, c)" with up to `listed` of them (none: ""),
/// else "".
std::string suggestion(std::string_view name, const std::vector<std::string>& known,
                       size_t listed = 20);

} // namespace twin::runtime
