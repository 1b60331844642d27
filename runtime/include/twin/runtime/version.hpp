#pragma once

namespace twin::runtime {

/// The version of this build (the project version of the top-level CMakeLists.txt).
extern const char* const version;

} // namespace twin::runtime
