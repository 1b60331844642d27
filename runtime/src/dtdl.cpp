#include "dtdl.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace twin::runtime::dtdl {

namespace {

/// How deep `extends` and complex schemas may nest (DTDL v3's limits).
constexpr int max_extends_depth = 10;
constexpr int max_schema_depth = 8;

bool segment_ok(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s.front())) || s.back() == '_')
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

/// The DTMIs an "extends" names (a DTMI, an inline Interface, or a list of them); inline
/// interfaces are read into `out`.
std::vector<std::string> extends_of(const json& doc, const std::string& origin,
                                    const std::string& where, std::vector<interface>& out,
                                    std::map<std::string, json>& schemas);

void read_interface(const json& doc, const std::string& origin, std::vector<interface>& out,
                    std::map<std::string, json>& schemas) {
  if (!doc.is_object())
    fail("an Interface must be a JSON object");
  auto id = doc.find("@id");
  if (id == doc.end() || !id->is_string())
    fail("an Interface has no \"@id\" (its DTMI)");
  auto where = "interface " + in_quotes(id->get<std::string>());
  if (!has_class(doc, "Interface"))
    fail(where + ": \"@type\" must be \"Interface\"");
  interface i;
  i.id = dtmi::parse(id->get<std::string>(), where);
  i.origin = origin;
  i.doc = doc;
  if (auto e = doc.find("extends"); e != doc.end())
    i.extends = extends_of(*e, origin, where, out, schemas);
  if (auto c = doc.find("contents"); c != doc.end()) {
    if (!c->is_array())
      fail(where + ": \"contents\" must be a list");
    for (const auto& item : *c)
      if (item.is_object() && has_class(item, "Component"))
        if (auto s = item.find("schema"); s != item.end() && s->is_object())
          read_interface(*s, origin, out, schemas);
  }
  if (auto s = doc.find("schemas"); s != doc.end()) {
    if (!s->is_array())
      fail(where + ": \"schemas\" must be a list");
    for (const auto& named : *s) {
      auto sid = named.is_object() ? named.find("@id") : named.end();
      if (sid == named.end() || !sid->is_string())
        fail(where + ": every entry of \"schemas\" needs an \"@id\"");
      schemas[dtmi::parse(sid->get<std::string>(), where).text()] = named;
    }
  }
  out.push_back(std::move(i));
}

std::vector<std::string> extends_of(const json& e, const std::string& origin,
                                    const std::string& where, std::vector<interface>& out,
                                    std::map<std::string, json>& schemas) {
  std::vector<std::string> ids;
  auto one = [&](const json& x) {
    if (x.is_string()) {
      ids.push_back(dtmi::parse(x.get<std::string>(), where + ": extends").text());
    } else if (x.is_object()) {
      read_interface(x, origin, out, schemas);
      ids.push_back(out.back().id.text());
    } else {
      fail(where + ": \"extends\" must name interfaces (DTMIs) or hold them");
    }
  };
  if (e.is_array()) {
    for (const auto& x : e)
      one(x);
  } else {
    one(e);
  }
  if (ids.size() > 2 * max_extends_depth)
    fail(where + ": extends more interfaces than a model may");
  return ids;
}

/// Whether two contents are of the same class (both Properties, both Relationships, ...).
bool same_class(const json& a, const json& b) {
  for (auto cls : {"Property", "Telemetry", "Command", "Relationship", "Component"})
    if (has_class(a, cls) != has_class(b, cls))
      return false;
  return true;
}

void flatten_into(const interface& i, const library& lib, flattened& out,
                  std::set<const interface*>& visiting, int depth) {
  auto where = "interface " + in_quotes(i.id.text());
  if (depth > max_extends_depth)
    fail(where + ": \"extends\" nests deeper than " + std::to_string(max_extends_depth)
         + " levels");
  visiting.insert(&i);
  for (const auto& base_id : i.extends) {
    const auto* base = lib.find(base_id);
    if (base == nullptr)
      fail(where + " extends " + in_quotes(base_id) + ", which no model defines");
    if (visiting.count(base) > 0)
      fail(where + " extends " + in_quotes(base_id) + ", which extends it: a cycle");
    if (std::find(out.bases.begin(), out.bases.end(), base) != out.bases.end())
      continue;  // a diamond: that base's contents are in already
    flatten_into(*base, lib, out, visiting, depth + 1);
    out.bases.push_back(base);
  }
  visiting.erase(&i);
  if (auto c = i.doc.find("contents"); c != i.doc.end())
    for (const auto& item : *c) {
      if (!item.is_object())
        fail(where + ": every entry of \"contents\" must be an object");
      auto name = item.find("name");
      if (name == item.end() || !name->is_string())
        fail(where + ": an entry of \"contents\" has no \"name\"");
      auto other = std::find_if(out.contents.begin(), out.contents.end(),
                                [&](const content& c) { return (*c.element)["name"] == *name; });
      if (other == out.contents.end()) {
        out.contents.push_back({&item, &i});
        continue;
      }
      // An interface may declare again what it inherits, as the same class (ontologies
      // do, to narrow a schema or give another initial value): the nearest holds.
      if (!same_class(*other->element, item))
        fail(where + ": " + in_quotes(name->get<std::string>()) + " is declared by both "
             + in_quotes(other->owner->id.text()) + " and " + in_quotes(i.id.text())
             + " as different kinds of content");
      *other = {&item, &i};
    }
}

schema_ptr complex_schema(const json& s, const library& lib, const std::string& where,
                          int depth) {
  auto out = std::make_shared<value_schema>();
  if (auto id = s.find("@id"); id != s.end() && id->is_string())
    out->id = id->get<std::string>();
  auto member = [&](const char* key) -> const json& {
    auto m = s.find(key);
    if (m == s.end())
      fail(where + ": its schema has no \"" + key + "\"");
    return *m;
  };
  if (has_class(s, "Array")) {
    out->k = value_schema::kind::array;
    out->element = schema_of(member("elementSchema"), lib, where + "[]", depth + 1);
  } else if (has_class(s, "Map")) {
    out->k = value_schema::kind::map;
    const auto& key = member("mapKey");
    if (!key.is_object() || key.value("schema", json{}) != "string")
      fail(where + ": a Map's \"mapKey\" must have the schema \"string\"");
    const auto& v = member("mapValue");
    if (!v.is_object() || !v.contains("schema"))
      fail(where + ": a Map's \"mapValue\" must have a \"schema\"");
    out->element = schema_of(v["schema"], lib, where + ".*", depth + 1);
  } else if (has_class(s, "Object")) {
    out->k = value_schema::kind::object;
    const auto& fields = member("fields");
    if (!fields.is_array())
      fail(where + ": an Object's \"fields\" must be a list");
    for (const auto& f : fields) {
      if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("schema"))
        fail(where + ": every field of an Object needs a \"name\" and a \"schema\"");
      auto name = f["name"].get<std::string>();
      for (const auto& [other, x] : out->fields)
        if (other == name)
          fail(where + ": field " + in_quotes(name) + " is declared twice");
      out->fields.emplace_back(name, schema_of(f["schema"], lib, where + "." + name, depth + 1));
    }
  } else if (has_class(s, "Enum")) {
    out->k = value_schema::kind::enumeration;
    auto vs = member("valueSchema");
    if (vs == "integer")
      out->enum_kind = value_schema::kind::integer;
    else if (vs != "string")
      fail(where + ": an Enum's \"valueSchema\" must be \"integer\" or \"string\"");
    const auto& values = member("enumValues");
    if (!values.is_array())
      fail(where + ": an Enum's \"enumValues\" must be a list");
    for (const auto& v : values) {
      auto x = v.is_object() ? v.find("enumValue") : v.end();
      bool fits = x != v.end()
                  && (out->enum_kind == value_schema::kind::integer ? x->is_number_integer()
                                                                    : x->is_string());
      if (!fits || !v.contains("name") || !v["name"].is_string())
        fail(where + ": every enum value needs a \"name\" and an \"enumValue\" of its "
                     "valueSchema");
      out->enum_values.emplace_back(v["name"].get<std::string>(),
                                    x->is_string() ? value{x->get<std::string>()}
                                                   : value{x->get<int64_t>()});
    }
  } else {
    fail(where + ": unsupported schema (a primitive's name, a DTMI, or an Array, Enum, Map "
                 "or Object)");
  }
  return out;
}

} // namespace

void fail(std::string why) {
  throw model_error{std::move(why)};
}

dtmi dtmi::parse(std::string_view text, const std::string& where) {
  auto bad = [&] {
    fail(where + ": " + in_quotes(std::string{text})
         + " is not a DTMI (dtmi:segment:...;version, segments of letters, digits and _)");
  };
  if (text.rfind("dtmi:", 0) != 0 || text.size() > 2048)
    bad();
  auto semi = text.find(';');
  dtmi out;
  out.path = std::string{text.substr(0, semi)};
  size_t at = 5;
  while (at <= out.path.size()) {
    auto colon = std::min(out.path.find(':', at), out.path.size());
    if (!segment_ok(std::string_view{out.path}.substr(at, colon - at)))
      bad();
    at = colon + 1;
  }
  if (semi != std::string_view::npos) {
    auto v = text.substr(semi + 1);
    auto dot = v.find('.');
    auto major = v.substr(0, dot);
    if (major.empty() || major.size() > 9
        || !std::all_of(major.begin(), major.end(), [](char c) { return std::isdigit(c); }))
      bad();
    if (dot != std::string_view::npos) {
      auto minor = v.substr(dot + 1);
      if (minor.empty() || minor.size() > 6
          || !std::all_of(minor.begin(), minor.end(), [](char c) { return std::isdigit(c); }))
        bad();
    }
    out.version = std::stoi(std::string{major});
    out.version_text = std::string{v};
  }
  return out;
}

std::string dtmi::text() const {
  return version_text.empty() ? path : path + ";" + version_text;
}

std::string dtmi::short_name() const {
  return path.substr(path.rfind(':') + 1);
}

void read_document(const json& doc, const std::string& origin, std::vector<interface>& out,
                   std::map<std::string, json>& schemas) {
  if (doc.is_array()) {
    for (const auto& i : doc)
      read_interface(i, origin, out, schemas);
  } else {
    read_interface(doc, origin, out, schemas);
  }
}

const interface* library::find(const std::string& id) const {
  auto i = interfaces.find(id);
  return i == interfaces.end() ? nullptr : i->second;
}

flattened flatten(const interface& i, const library& lib) {
  flattened out;
  std::set<const interface*> visiting;
  flatten_into(i, lib, out, visiting, 0);
  return out;
}

schema_ptr schema_of(const json& s, const library& lib, const std::string& where, int depth) {
  if (depth > max_schema_depth)
    fail(where + ": its schema nests deeper than " + std::to_string(max_schema_depth)
         + " levels");
  if (s.is_string()) {
    auto name = s.get<std::string>();
    if (auto p = value_schema::primitive(name))
      return p;
    if (name.rfind("dtmi:", 0) == 0) {
      auto named = lib.schemas.find(dtmi::parse(name, where).text());
      if (named == lib.schemas.end())
        fail(where + ": schema " + in_quotes(name) + " is not defined");
      return complex_schema(named->second, lib, where, depth);
    }
    fail(where + ": unsupported schema " + in_quotes(name)
         + " (boolean, integer, long, double, string, date, dateTime, time, duration, ...)");
  }
  if (!s.is_object())
    fail(where + ": \"schema\" must be a name or an object");
  return complex_schema(s, lib, where, depth);
}

bool has_class(const json& element, std::string_view cls) {
  auto i = element.find("@type");
  if (i == element.end())
    return false;
  if (i->is_string())
    return i->get<std::string>() == cls;
  if (i->is_array())
    return std::any_of(i->begin(), i->end(),
                       [&](const json& x) { return x.is_string() && x.get<std::string>() == cls; });
  return false;
}

std::string semantic_type(const json& element) {
  auto i = element.find("@type");
  if (i == element.end() || !i->is_array())
    return {};
  for (const auto& x : *i)
    if (x.is_string()) {
      auto t = x.get<std::string>();
      if (t != "Property" && t != "Telemetry" && t != "Initialized" && t != "Historized")
        return t;
    }
  return {};
}

std::string text_of(const json& element, const char* key) {
  auto i = element.find(key);
  if (i == element.end())
    return {};
  if (i->is_string())
    return i->get<std::string>();
  if (i->is_object() && !i->empty()) {
    if (auto en = i->find("en"); en != i->end() && en->is_string())
      return en->get<std::string>();
    if (i->begin()->is_string())
      return i->begin()->get<std::string>();
  }
  return {};
}

} // namespace twin::runtime::dtdl
