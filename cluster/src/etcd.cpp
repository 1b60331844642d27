#include "etcd.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "twin/api/transport.hpp"
#include "twin/cluster/errc.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/runtime/thread_name.hpp"

namespace twin::cluster::etcd {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using api::transport;

namespace {

// -- encoding -----------------------------------------------------------------------

constexpr char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string b64(const std::string& in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6)
      out += b64_chars[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size())
      v |= uint8_t(in[i + 1]) << 8;
    out += b64_chars[(v >> 18) & 63];
    out += b64_chars[(v >> 12) & 63];
    out += i + 1 < in.size() ? b64_chars[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string unb64(const std::string& in) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = std::strchr(b64_chars, c);
    if (c == '=' || c == '\0' || p == nullptr)
      continue;
    v = (v << 6) | static_cast<uint32_t>(p - b64_chars);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xff);
    }
  }
  return out;
}

/// A 64-bit field of an answer: a string on the wire, absent when 0.
int64_t num(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end())
    return 0;
  if (i->is_string())
    return std::stoll(i->get<std::string>());
  return i->get<int64_t>();
}

std::string bytes(const json& j, const char* key) {
  auto i = j.find(key);
  return i == j.end() ? std::string{} : unb64(i->get<std::string>());
}

key_value kv_of(const json& j) {
  return {bytes(j, "key"),   bytes(j, "value"), num(j, "create_revision"),
          num(j, "mod_revision"), num(j, "version"), num(j, "lease")};
}

range_result range_of(const json& j) {
  range_result r;
  r.revision = num(j.value("header", json::object()), "revision");
  for (const auto& kv : j.value("kvs", json::array()))
    r.kvs.push_back(kv_of(kv));
  return r;
}

json op_json(const op& o) {
  json body{{"key", b64(o.key)}};
  switch (o.what) {
    case op::kind::put:
      body["value"] = b64(o.value);
      if (o.lease != 0)
        body["lease"] = std::to_string(o.lease);
      return {{"request_put", body}};
    case op::kind::del:
      if (!o.range_end.empty())
        body["range_end"] = b64(o.range_end);
      return {{"request_delete_range", body}};
    case op::kind::get:
      if (!o.range_end.empty())
        body["range_end"] = b64(o.range_end);
      return {{"request_range", body}};
  }
  return {};
}

json compare_json(const compare& c) {
  static constexpr const char* targets[] = {"VERSION", "CREATE", "MOD", "VALUE"};
  static constexpr const char* results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  json j{{"key", b64(c.key)},
         {"target", targets[static_cast<int>(c.what)]},
         {"result", results[static_cast<int>(c.is)]}};
  switch (c.what) {
    case compare::target::version: j["version"] = std::to_string(c.number); break;
    case compare::target::create: j["create_revision"] = std::to_string(c.number); break;
    case compare::target::mod: j["mod_revision"] = std::to_string(c.number); break;
    case compare::target::value: j["value"] = b64(c.value); break;
  }
  return j;
}

// -- endpoints ----------------------------------------------------------------------

struct endpoint {
  std::string host;
  std::string port;
  bool tls = false;  ///< https
};

caf::expected<std::vector<endpoint>> parse_endpoints(const std::string& text) {
  std::vector<endpoint> out;
  size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto url = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    bool tls = url.rfind("https://", 0) == 0;
    if (url.rfind("http://", 0) != 0 && !tls)
      return make_error(cluster_errc::config_mismatch,
                        "etcd endpoint '" + url + "' is not an http(s)://host:port URL");
    auto hostport = url.substr(tls ? 8 : 7);
    if (!hostport.empty() && hostport.back() == '/')
      hostport.pop_back();
    auto colon = hostport.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == hostport.size()
        || hostport.find('/') != std::string::npos)
      return make_error(cluster_errc::config_mismatch,
                        "etcd endpoint '" + url + "' is not an http(s)://host:port URL");
    out.push_back({hostport.substr(0, colon), hostport.substr(colon + 1), tls});
  }
  return out;
}

/// The TLS context of `where` (for its https endpoints): its CA, or the system's, and the
/// client's certificate if it has one. The reason if a file cannot be used.
caf::expected<std::shared_ptr<ssl::context>> tls_context(const endpoints& where) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_tlsv1
                   | ssl::context::no_tlsv1_1);
  beast::error_code ec;
  auto fail = [&](const std::string& what) {
    return make_error(cluster_errc::config_mismatch,
                      "etcd TLS: cannot use " + what + ": " + ec.message());
  };
  if (where.ca_file.empty())
    ctx->set_default_verify_paths(ec);
  else
    ctx->load_verify_file(where.ca_file, ec);
  if (ec)
    return fail("the CA " + where.ca_file);
  if (!where.cert_file.empty()) {
    ctx->use_certificate_chain_file(where.cert_file, ec);
    if (ec)
      return fail("the certificate " + where.cert_file);
    auto key = where.key_file.empty() ? where.cert_file : where.key_file;
    ctx->use_private_key_file(key, ssl::context::pem, ec);
    if (ec)
      return fail("the key " + key);
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

/// A stream to `ep` on `ioc` (TLS with `tls` for https, checking etcd's certificate and
/// name), connected and its handshake done, or the error; runs `ioc` until then.
beast::error_code open_stream(asio::io_context& ioc, const endpoint& ep, ssl::context* tls,
                              std::chrono::milliseconds timeout,
                              std::unique_ptr<transport>& out) {
  beast::error_code ec;
  tcp::resolver resolver{ioc};
  auto results = resolver.resolve(ep.host, ep.port, ec);
  if (ec)
    return ec;
  if (ep.tls && tls == nullptr)
    return make_error_code(asio::error::operation_not_supported);  // its files failed
  out = ep.tls ? std::make_unique<transport>(tcp::socket{ioc}, *tls)
               : std::make_unique<transport>(tcp::socket{ioc});
  if (ep.tls) {
    out->tls().set_verify_callback(ssl::host_name_verification(ep.host));
    SSL_set_tlsext_host_name(out->tls().native_handle(), ep.host.c_str());
  }
  out->tcp().expires_after(timeout);
  out->tcp().async_connect(results, [&](beast::error_code e, const tcp::endpoint&) {
    ec = e;
    if (!e && ep.tls)
      out->tls().async_handshake(ssl::stream_base::client, [&](beast::error_code h) { ec = h; });
  });
  ioc.restart();
  ioc.run();
  return ec;
}

} // namespace

compare compare::mod_is(std::string key, int64_t revision) {
  compare c;
  c.key = std::move(key);
  c.what = target::mod;
  c.number = revision;
  return c;
}

compare compare::value_is(std::string key, std::string value) {
  compare c;
  c.key = std::move(key);
  c.what = target::value;
  c.value = std::move(value);
  return c;
}

op op::put(std::string key, std::string value, int64_t lease) {
  return op{kind::put, std::move(key), std::move(value), {}, lease};
}

op op::del(std::string key, std::string range_end) {
  return op{kind::del, std::move(key), {}, std::move(range_end), 0};
}

op op::get(std::string key, std::string range_end) {
  return op{kind::get, std::move(key), {}, std::move(range_end), 0};
}

std::string prefix_end(const std::string& prefix) {
  auto end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// -- client ---------------------------------------------------------------------------

struct client::impl {
  std::vector<endpoint> endpoints;
  std::shared_ptr<ssl::context> tls;  ///< for https endpoints
  std::string tls_error;              ///< why there is none for https endpoints
  std::chrono::milliseconds timeout;
  std::mutex mtx;
  size_t current = 0;  ///< the endpoint that answered last
  asio::io_context ioc;
  std::unique_ptr<transport> stream;  ///< kept between calls
  beast::flat_buffer buffer;
  std::atomic<uint64_t> round_trips{0};
  std::atomic<uint64_t> failures{0};

  /// One POST on the open connection (opening it first if needed), within the timeout.
  /// `sent`: the request may have reached etcd (it was connected when it failed).
  beast::error_code exchange(const endpoint& ep, const std::string& target,
                             const std::string& body, http::response<http::string_body>& res,
                             bool& sent) {
    beast::error_code ec;
    sent = false;
    if (!stream) {
      ec = open_stream(ioc, ep, tls.get(), timeout, stream);
      if (ec)
        return ec;
    }
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, ep.host + ":" + ep.port);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    sent = true;
    stream->tcp().expires_after(timeout);
    http::async_write(*stream, req, [&](beast::error_code e, size_t) {
      ec = e;
      if (!e)
        http::async_read(*stream, buffer, res, [&](beast::error_code e2, size_t) { ec = e2; });
    });
    ioc.restart();
    ioc.run();
    return ec;
  }

  caf::expected<json> call(const std::string& target, const json& body) {
    std::lock_guard<std::mutex> guard{mtx};
    if (!tls_error.empty())
      return make_error(cluster_errc::config_mismatch, tls_error);
    auto text = body.dump();
    std::string why;
    // The endpoint that answered last, then the others; a call that reached one and
    // failed there is not sent again (it may have been applied).
    for (size_t k = 0; k < endpoints.size(); ++k) {
      auto& ep = endpoints[(current + k) % endpoints.size()];
      round_trips.fetch_add(1, std::memory_order_relaxed);
      bool sent = false;
      http::response<http::string_body> res;
      auto ec = exchange(ep, target, text, res, sent);
      if (ec || !res.keep_alive()) {
        beast::error_code ignored;
        if (stream)
          stream->tcp().socket().close(ignored);
        stream.reset();
        buffer.clear();
      }
      if (ec) {
        failures.fetch_add(1, std::memory_order_relaxed);
        why = ep.host + ":" + ep.port + ": " + ec.message();
        if (!sent)
          continue;  // never connected: the next endpoint
        return make_error(cluster_errc::etcd_unavailable, "etcd at " + why);
      }
      current = (current + k) % endpoints.size();
      auto answer = json::parse(res.body(), nullptr, false);
      if (res.result() != http::status::ok || answer.is_discarded()) {
        failures.fetch_add(1, std::memory_order_relaxed);
        std::string msg = answer.is_object() ? answer.value("message", answer.value("error", ""))
                                             : res.body().substr(0, 200);
        return make_error(cluster_errc::etcd_failure, "etcd answered " + target + " with "
                                                        + std::to_string(res.result_int())
                                                        + ": " + msg);
      }
      return answer;
    }
    return make_error(cluster_errc::etcd_unavailable, "no etcd endpoint answered: " + why);
  }
};

client::client(const endpoints& where, std::chrono::milliseconds timeout)
  : impl_(std::make_unique<impl>()) {
  auto eps = parse_endpoints(where.urls);
  if (eps)
    impl_->endpoints = std::move(*eps);
  if (std::any_of(impl_->endpoints.begin(), impl_->endpoints.end(),
                  [](const endpoint& e) { return e.tls; })) {
    auto tls = tls_context(where);
    if (tls)
      impl_->tls = std::move(*tls);
    else
      impl_->tls_error = runtime::error_message(tls.error());
  }
  impl_->timeout = timeout;
}

client::~client() = default;

caf::error client::check_endpoints(const endpoints& where) {
  auto eps = parse_endpoints(where.urls);
  if (!eps)
    return eps.error();
  if (std::any_of(eps->begin(), eps->end(), [](const endpoint& e) { return e.tls; }))
    if (auto tls = tls_context(where); !tls)
      return tls.error();
  return {};
}

caf::expected<int64_t> client::put(const std::string& key, const std::string& value,
                                   int64_t lease) {
  json body{{"key", b64(key)}, {"value", b64(value)}};
  if (lease != 0)
    body["lease"] = std::to_string(lease);
  auto r = impl_->call("/v3/kv/put", body);
  if (!r)
    return r.error();
  return num(r->value("header", json::object()), "revision");
}

caf::expected<range_result> client::get(const std::string& key, const std::string& range_end) {
  json body{{"key", b64(key)}};
  if (!range_end.empty())
    body["range_end"] = b64(range_end);
  auto r = impl_->call("/v3/kv/range", body);
  if (!r)
    return r.error();
  return range_of(*r);
}

caf::expected<range_result> client::get_prefix(const std::string& prefix) {
  return get(prefix, prefix_end(prefix));
}

caf::expected<int64_t> client::del(const std::string& key, const std::string& range_end) {
  json body{{"key", b64(key)}};
  if (!range_end.empty())
    body["range_end"] = b64(range_end);
  auto r = impl_->call("/v3/kv/deleterange", body);
  if (!r)
    return r.error();
  return num(*r, "deleted");
}

caf::expected<txn_result> client::txn(const std::vector<compare>& when,
                                      const std::vector<op>& then,
                                      const std::vector<op>& otherwise) {
  json body{{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : when)
    body["compare"].push_back(compare_json(c));
  for (const auto& o : then)
    body["success"].push_back(op_json(o));
  for (const auto& o : otherwise)
    body["failure"].push_back(op_json(o));
  auto r = impl_->call("/v3/kv/txn", body);
  if (!r)
    return r.error();
  txn_result out;
  out.succeeded = r->value("succeeded", false);
  out.revision = num(r->value("header", json::object()), "revision");
  for (const auto& resp : r->value("responses", json::array()))
    if (auto i = resp.find("response_range"); i != resp.end())
      out.reads.push_back(range_of(*i));
  return out;
}

caf::expected<lease_grant> client::grant(int64_t ttl_seconds) {
  auto r = impl_->call("/v3/lease/grant", json{{"TTL", std::to_string(ttl_seconds)}});
  if (!r)
    return r.error();
  return lease_grant{num(*r, "ID"), num(*r, "TTL")};
}

caf::expected<int64_t> client::keep_alive(int64_t id) {
  auto r = impl_->call("/v3/lease/keepalive", json{{"ID", std::to_string(id)}});
  if (!r)
    return r.error();
  return num(r->value("result", json::object()), "TTL");
}

caf::error client::revoke(int64_t id) {
  auto r = impl_->call("/v3/lease/revoke", json{{"ID", std::to_string(id)}});
  return r ? caf::error{} : r.error();
}

uint64_t client::round_trips() const {
  return impl_->round_trips.load(std::memory_order_relaxed);
}

uint64_t client::failures() const {
  return impl_->failures.load(std::memory_order_relaxed);
}

// -- watch ----------------------------------------------------------------------------

struct watch::impl {
  std::vector<endpoint> endpoints;
  std::shared_ptr<ssl::context> tls;  ///< for https endpoints
  std::string prefix;
  int64_t next_revision;  ///< the first revision not delivered yet
  events_fn on_events;
  std::function<void()> on_reset;
  asio::io_context ioc;
  std::mutex mtx;
  std::condition_variable cv;
  bool stopping = false;
  bool ended = false;  ///< the session's stream said it is over
  std::thread thread;

  void run() {
    auto backoff = std::chrono::milliseconds{100};
    for (size_t k = 0;; ++k) {
      {
        std::lock_guard<std::mutex> guard{mtx};
        if (stopping)
          return;
      }
      if (session(endpoints[k % endpoints.size()]))
        backoff = std::chrono::milliseconds{100};  // it had worked: retry soon
      std::unique_lock<std::mutex> guard{mtx};
      if (cv.wait_for(guard, backoff, [&] { return stopping; }))
        return;
      backoff = std::min(backoff * 2, std::chrono::milliseconds{2000});
    }
  }

  /// One connection: streams events until it breaks or the watch stops. True if it
  /// delivered anything.
  bool session(const endpoint& ep) {
    ended = false;
    bool delivered = false;
    std::unique_ptr<transport> stream;
    std::string lines;
    http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
    req.set(http::field::host, ep.host + ":" + ep.port);
    req.set(http::field::content_type, "application/json");
    req.body() = json{{"create_request",
                       {{"key", b64(prefix)},
                        {"range_end", b64(prefix_end(prefix))},
                        {"start_revision", std::to_string(next_revision)},
                        {"progress_notify", true}}}}
                   .dump();
    req.prepare_payload();
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    parser.body_limit(boost::none);
    auto on_chunk = [&](uint64_t, beast::string_view data, beast::error_code&) -> size_t {
      lines.append(data.data(), data.size());
      size_t nl;
      while ((nl = lines.find('\n')) != std::string::npos) {
        delivered |= handle(lines.substr(0, nl));
        lines.erase(0, nl + 1);
      }
      return data.size();
    };
    parser.on_chunk_body(on_chunk);
    // A quiet prefix and a silent etcd look alike: a session that reads nothing for 30 s
    // is made again (it resumes after the last revision delivered).
    std::function<void(beast::error_code, size_t)> read_more = [&](beast::error_code e, size_t) {
      if (e || parser.is_done() || ended)
        return;
      stream->tcp().expires_after(std::chrono::seconds{30});
      http::async_read_some(*stream, buffer, parser, read_more);
    };
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (stopping)
        return false;
    }
    if (open_stream(ioc, ep, tls.get(), std::chrono::seconds{5}, stream))
      return false;
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (stopping)
        return false;
      ioc.restart();
    }
    http::async_write(*stream, req, [&](beast::error_code e, size_t) {
      if (e)
        return;
      http::async_read_header(*stream, buffer, parser, read_more);
    });
    ioc.run();
    return delivered;
  }

  /// One message of the stream; true if it delivered events. A canceled watch ends the
  /// session (`ended`).
  bool handle(const std::string& line) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("result")) {
      ended = true;  // an error: make the watch again
      return false;
    }
    const auto& r = j["result"];
    if (r.value("canceled", false)) {
      ended = true;
      return false;
    }
    auto revision = num(r.value("header", json::object()), "revision");
    if (num(r, "compact_revision") > 0) {
      next_revision = revision + 1;
      on_reset();
      return false;
    }
    std::vector<event> events;
    for (const auto& e : r.value("events", json::array()))
      events.push_back({e.value("type", "PUT") == "DELETE", kv_of(e.value("kv", json::object()))});
    if (events.empty())
      return false;
    next_revision = events.back().kv.mod_revision + 1;
    on_events(std::move(events), next_revision - 1);
    return true;
  }
};

watch::watch(const endpoints& where, std::string prefix, int64_t start_revision,
             events_fn on_events, std::function<void()> on_reset)
  : impl_(std::make_unique<impl>()) {
  auto eps = parse_endpoints(where.urls);
  if (eps)
    impl_->endpoints = std::move(*eps);
  if (auto tls = tls_context(where))  // without it, https sessions fail and are made again
    impl_->tls = std::move(*tls);
  impl_->prefix = std::move(prefix);
  impl_->next_revision = start_revision;
  impl_->on_events = std::move(on_events);
  impl_->on_reset = std::move(on_reset);
  if (!impl_->endpoints.empty())
    impl_->thread = std::thread{[this] {
      runtime::name_thread("twin.etcd.watch");
      impl_->run();
    }};
}

watch::~watch() {
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->stopping = true;
    impl_->ioc.stop();
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable())
    impl_->thread.join();
}

} // namespace twin::cluster::etcd
