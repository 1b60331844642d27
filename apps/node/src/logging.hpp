#pragma once

#include <string>

namespace twin::node {

/// Sends the default logger to stderr (stdout carries answers with --stdin) in `format`:
/// "text" (a time, the level and the message a line) or "json" (one object a line:
/// {"ts","level","logger","thread","msg"}, times in UTC). Called again, it
/// changes the format. Before any other thread logs.
void setup_logging(const std::string& format);

} // namespace twin::node
