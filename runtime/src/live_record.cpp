#include "live_record.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "record_codec.hpp"

namespace twin::runtime {

const std::string* intern_source(std::string_view source) {
  // Most calls repeat the thread's previous source.
  thread_local const std::string* last = nullptr;
  if (last != nullptr && *last == source)
    return last;
  static std::mutex mtx;
  static std::unordered_set<std::string> table;  // never shrinks: pointers stay valid
  std::lock_guard<std::mutex> guard{mtx};
  last = &*table.emplace(source).first;
  return last;
}

live_record::live_record(twin_record&& rec, const twin_type& type)
  : id(std::move(rec.id)),
    parent(std::move(rec.parent)),
    kind(rec.kind),
    version(rec.version),
    created_ms(rec.created_ms),
    updated_ms(rec.updated_ms) {
  set_type(type);
  for (auto& [name, v] : rec.reported) {
    auto m = rec.metadata.find(name);
    if (m == rec.metadata.end())
      set(name, std::move(v), 0, nullptr);
    else
      set(name, std::move(v), m->second.updated_ms, intern_source(m->second.source));
  }
  if (!rec.desired.empty())
    rare().desired = std::move(rec.desired);
  if (!rec.children.empty())
    rare().children = std::move(rec.children);
  if (!rec.relationships.empty())
    rare().relationships = std::move(rec.relationships);
  if (!rec.alerts.empty())
    rare().alerts = std::move(rec.alerts);
}

live_record::live_record(const live_record& other)
  : id(other.id),
    parent(other.parent),
    kind(other.kind),
    version(other.version),
    created_ms(other.created_ms),
    updated_ms(other.updated_ms),
    type_(other.type_) {
  if (type_ != nullptr) {
    auto n = type_->properties().size();
    slots_ = std::make_unique<property[]>(n);
    std::copy(other.slots_.get(), other.slots_.get() + n, slots_.get());
  }
  if (other.rare_)
    rare_ = std::make_unique<rare_part>(*other.rare_);
}

live_record& live_record::operator=(const live_record& other) {
  if (this != &other)
    *this = live_record{other};
  return *this;
}

const live_record::rare_part& live_record::empty() {
  static const rare_part none;
  return none;
}

void live_record::set_type(const twin_type& type) {
  if (type_ == &type)
    return;
  type_ = &type;
  slots_ = std::make_unique<property[]>(type.properties().size());
}

live_record::property* live_record::declared(std::string_view name) const {
  auto i = type_ == nullptr ? -1 : type_->index_of(name);
  return i < 0 ? nullptr : &slots_[static_cast<size_t>(i)];
}

const live_record::property* live_record::find(std::string_view name) const {
  if (auto* p = declared(name))
    return p->v.is_null() ? nullptr : p;
  if (rare_)
    if (auto i = rare_->undeclared.find(name); i != rare_->undeclared.end())
      return &i->second;
  return nullptr;
}

void live_record::set(std::string_view name, value v, int64_t updated_ms,
                      const std::string* source) {
  if (v.is_null()) {
    erase(name);
    return;
  }
  auto* p = declared(name);
  if (p == nullptr)
    p = &rare().undeclared[std::string{name}];
  p->v = std::move(v);
  p->updated_ms = updated_ms;
  p->source = source;
}

bool live_record::erase(std::string_view name) {
  if (auto* p = declared(name)) {
    bool was = !p->v.is_null();
    *p = property{};
    return was;
  }
  if (!rare_)
    return false;
  auto i = rare_->undeclared.find(name);
  if (i == rare_->undeclared.end())
    return false;
  rare_->undeclared.erase(i);
  trim();
  return true;
}

void live_record::erase_uncomputed() {
  if (type_ != nullptr) {
    const auto& specs = type_->properties();
    for (size_t i = 0; i < specs.size(); ++i)
      if (!specs[i].computed)
        slots_[i] = property{};
  }
  if (rare_) {
    rare_->undeclared.clear();
    trim();
  }
}

void live_record::trim() {
  if (rare_ && rare_->empty())
    rare_.reset();
}

value_map live_record::delta() const {
  value_map out;
  for (const auto& [k, v] : desired()) {
    auto* r = get(k);
    if (r == nullptr || *r != v)
      out.emplace(k, v);
  }
  return out;
}

twin_record live_record::to_record() const {
  twin_record r;
  r.id = id;
  r.type = type_ == nullptr ? std::string{} : type_->name();
  r.kind = kind;
  r.parent = parent;
  r.children = children();
  r.relationships = relationships();
  for_each([&](const std::string& name, const property& p) {
    r.reported.emplace(name, p.v);
    if (p.source != nullptr)
      r.metadata.emplace(name, property_meta{p.updated_ms, *p.source});
  });
  r.desired = desired();
  r.alerts = alerts();
  r.version = version;
  r.created_ms = created_ms;
  r.updated_ms = updated_ms;
  return r;
}

std::string live_record::encode() const {
  thread_local std::vector<reported_entry> entries;  // reused: no allocation per record
  entries.clear();
  if (type_ != nullptr) {
    const auto& specs = type_->properties();
    for (size_t i = 0; i < specs.size(); ++i)
      if (!slots_[i].v.is_null() && !specs[i].transient)
        entries.push_back(
          reported_entry{&specs[i].name, &slots_[i].v, slots_[i].updated_ms, slots_[i].source});
  }
  if (rare_)
    for (const auto& [name, p] : rare_->undeclared)
      entries.push_back(reported_entry{&name, &p.v, p.updated_ms, p.source});
  static const std::string no_type;
  record_frame f{id,         type_ == nullptr ? no_type : type_->name(),
                 kind,       parent,
                 children(), relationships(),
                 desired(),  alerts(),
                 version,    created_ms,
                 updated_ms};
  return runtime::encode(f, entries.data(), entries.size());
}

} // namespace twin::runtime
