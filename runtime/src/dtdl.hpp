#pragma once

// DTDL (v2 and v3) as a twin runtime reads it: documents of Interfaces, their `extends`,
// their named and inline schemas, and their contents with the bases' merged in. Internal
// to the runtime: model_loader.cpp makes twin types of what this reads.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "twin/runtime/schema.hpp"

namespace twin::runtime::dtdl {

using json = nlohmann::json;

/// A model error: what is wrong, naming the element; `load` adds the file.
struct model_error {
  std::string why;
};

[[noreturn]] void fail(std::string why);

/// A DTMI ("dtmi:factory:motor;1"): its path ("dtmi:factory:motor") and version (1; 0 if
/// it has none). Throws `model_error` if `text` is not one.
struct dtmi {
  std::string path;
  int version = 0;
  std::string version_text;  ///< as written: "1", "2.1"; empty if none

  static dtmi parse(std::string_view text, const std::string& where);
  std::string text() const;
  /// The last segment of the path: "motor".
  std::string short_name() const;
};

/// One Interface as its document wrote it.
struct interface {
  dtmi id;
  std::string origin;  ///< the file (or "the body") it came from
  json doc;            ///< the Interface element itself
  std::vector<std::string> extends;  ///< the DTMIs it names in "extends", as written
};

/// The Interfaces of one document: a single Interface, or an array of them, with those
/// written inline in "extends" or as a Component's "schema" (each must have an "@id").
/// The named schemas of "schemas" go to `schemas`, by DTMI.
void read_document(const json& doc, const std::string& origin, std::vector<interface>& out,
                   std::map<std::string, json>& schemas);

/// Interfaces by DTMI (the full text, version included), and the named schemas.
struct library {
  std::map<std::string, const interface*> interfaces;
  std::map<std::string, json> schemas;

  /// The interface `id` names, nullptr if there is none.
  const interface* find(const std::string& id) const;
};

/// One element of an interface's contents, with the interface that declared it.
struct content {
  const json* element;
  const interface* owner;
};

/// An interface with what it inherits: its bases (nearest first, each once) and its
/// contents, the bases' first. Refuses cycles, more than 10 levels, a base that is not in
/// `lib`, and a name declared twice (in it or in two bases).
struct flattened {
  std::vector<const interface*> bases;
  std::vector<content> contents;
};
flattened flatten(const interface& i, const library& lib);

/// The schema `s` (a primitive's name, a DTMI of a named schema, or an inline Array, Enum,
/// Map or Object) as a value schema; `where` names it in errors.
schema_ptr schema_of(const json& s, const library& lib, const std::string& where, int depth = 0);

/// What @type says an element is ("Property", "Telemetry", ...), and its semantic type
/// (the other class of a list such as ["Telemetry", "Temperature"]; "" if none).
bool has_class(const json& element, std::string_view cls);
std::string semantic_type(const json& element);

/// A text of DTDL that may be a language map ({"en": "..."}): the English one, else the
/// first; "" if absent.
std::string text_of(const json& element, const char* key);

} // namespace twin::runtime::dtdl
