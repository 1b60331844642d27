#pragma once

// The twinctl commands over relationships: `relationships` lists a twin's (or with
// --incoming, the ones to it), `relate` and `unrelate` add and remove one.

#include <string>

#include <CLI/CLI.hpp>

#include "client.hpp"

namespace twinctl {

class relationship_commands {
public:
  void add_to(CLI::App& app);
  bool parsed() const { return list_->parsed() || relate_->parsed() || unrelate_->parsed(); }
  /// Runs the command given; returns the exit code.
  int run(client& c, bool as_json) const;

private:
  int list(client& c, bool as_json) const;
  /// Adds (or, for unrelate, removes) the relationship: reads the twin's list and patches
  /// it with If-Match, again if another change came between (a few times).
  int change(client& c, bool as_json) const;

  CLI::App* list_ = nullptr;
  CLI::App* relate_ = nullptr;
  CLI::App* unrelate_ = nullptr;
  std::string id_, name_, target_, cursor_;
  bool incoming_ = false;
  size_t limit_ = 0;
};

} // namespace twinctl
