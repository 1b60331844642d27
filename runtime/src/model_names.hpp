#pragma once

// What the files of the type builder (model.cpp, model_predictions.cpp) share. Internal to
// the runtime.

#include <string_view>

namespace twin::runtime {

/// Whether `s` may name a property, command or alert: a letter or '_', then letters,
/// digits and '_', 64 characters at most.
bool valid_name(std::string_view s);

} // namespace twin::runtime
