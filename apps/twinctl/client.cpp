// The HTTP client of twinctl: one request to the node, its answer and its exit code.

#include "client.hpp"

#include <cctype>
#include <cstdio>
#include <iostream>

#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>

#include "output.hpp"

namespace twinctl {

/// "http://host:port", "https://host:port" (or "host:port"); the port defaults to 8080.
bool parse_server(const std::string& url, server_address& out) {
  std::string rest = url;
  out.tls = rest.rfind("https://", 0) == 0;
  if (rest.rfind("http://", 0) == 0)
    rest = rest.substr(7);
  else if (out.tls)
    rest = rest.substr(8);
  else if (rest.find("://") != std::string::npos)
    return false;  // other schemes: not spoken here
  while (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  out.host = colon == std::string::npos ? rest : rest.substr(0, colon);
  out.port = colon == std::string::npos ? "8080" : rest.substr(colon + 1);
  return !out.host.empty() && !out.port.empty()
         && out.port.find_first_not_of("0123456789") == std::string::npos;
}

reply reply_of(unsigned status, std::string text) {
  reply out;
  out.status = status;
  out.text = std::move(text);
  out.body = json::parse(out.text, nullptr, false);
  if (out.body.is_discarded())
    out.body = nullptr;
  return out;
}

transport make_stream(asio::io_context& ioc, const server_address& addr,
                      std::optional<asio::ssl::context>& tls) {
  if (!addr.tls)
    return transport{tcp::socket{ioc}};
  tls.emplace(asio::ssl::context::tls_client);
  tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_tlsv1
                   | asio::ssl::context::no_tlsv1_1);
  if (addr.ca_file.empty())
    tls->set_default_verify_paths();
  else
    tls->load_verify_file(addr.ca_file);  // throws if it cannot be read
  tls->set_verify_mode(asio::ssl::verify_peer);
  if (!addr.cert_file.empty()) {
    tls->use_certificate_chain_file(addr.cert_file);
    tls->use_private_key_file(addr.key_file.empty() ? addr.cert_file : addr.key_file,
                              asio::ssl::context::pem);
  }
  transport out{tcp::socket{ioc}, *tls};
  out.tls().set_verify_callback(asio::ssl::host_name_verification(addr.host));
  SSL_set_tlsext_host_name(out.tls().native_handle(), addr.host.c_str());
  return out;
}

void connect(transport& stream, tcp::resolver& resolver, const server_address& addr,
             std::function<void(beast::error_code)> done) {
  resolver.async_resolve(addr.host, addr.port, [&stream, done](beast::error_code ec,
                                                               auto results) {
    if (ec)
      return done(ec);
    stream.tcp().async_connect(results, [&stream, done](beast::error_code ec,
                                                        const tcp::endpoint&) {
      if (ec || !stream.secure())
        return done(ec);
      stream.tls().async_handshake(asio::ssl::stream_base::client, done);
    });
  });
}

reply client::call(http::verb method, const std::string& target, const std::string& body,
                 const std::string& content_type,
                 const std::vector<std::pair<http::field, std::string>>& headers) {
  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  std::optional<asio::ssl::context> tls;
  auto stream = make_stream(ioc, addr_, tls);
  http::request<http::string_body> req{method, target, 11};
  address(req, addr_, token_);
  for (const auto& [name, value] : headers)
    req.set(name, value);
  // A request that changes something says its type even without a body: the node takes
  // no other (as no web page's form can send it).
  if (!body.empty() || method == http::verb::post || method == http::verb::put
      || method == http::verb::patch)
    req.set(http::field::content_type, content_type);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  // Asynchronous steps under one deadline for the whole call.
  beast::error_code failure;
  asio::steady_timer deadline{ioc, timeout_};
  deadline.async_wait([&](beast::error_code ec) {
    if (!ec) {
      failure = beast::error::timeout;
      resolver.cancel();
      stream.tcp().cancel();
    }
  });
  auto finish = [&](beast::error_code ec) {
    if (!failure)
      failure = ec;
    deadline.cancel();
  };
  connect(stream, resolver, addr_, [&](beast::error_code ec) {
    if (ec || failure)
      return finish(ec);
    http::async_write(stream, req, [&](beast::error_code ec, size_t) {
      if (ec || failure)
        return finish(ec);
      http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) { finish(ec); });
    });
  });
  ioc.run();
  if (failure)
    throw beast::system_error{failure};
  auto out = reply_of(parser.get().result_int(), std::move(parser.get().body()));
  beast::error_code ec;
  stream.tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
  return out;
}

std::optional<reply> call_checked(client& c, http::verb method, const std::string& target,
                                  int& code, const std::string& body) {
  reply r;
  try {
    r = c.call(method, target, body);
  } catch (const std::exception& e) {
    std::cerr << "twinctl: no answer from the node: " << e.what() << '\n';
    code = unreachable;
    return std::nullopt;
  }
  code = exit_code_of(r.status);
  if (code != ok) {
    std::cerr << "twinctl: " << error_text(r) << '\n';
    return std::nullopt;
  }
  return r;
}

int exit_code_of(unsigned status) {
  if (status < 300)
    return ok;
  if (status == 404)
    return not_found;
  if (status == 409 || status == 412)
    return conflict;
  if (status == 401 || status == 403)
    return denied;
  if (status < 500)
    return refused;
  return server_error;
}

/// The error of an answer, in the API's error shape or as the raw text.
std::string error_text(const reply& r) {
  if (r.body.is_object() && r.body.contains("error") && r.body["error"].is_object()) {
    const auto& e = r.body["error"];
    return text_of(e.value("code", json{})) + ": " + text_of(e.value("message", json{}));
  }
  return r.text.empty() ? "HTTP " + std::to_string(r.status) : r.text;
}

/// `text` with every byte outside [A-Za-z0-9._~:-] percent-encoded.
std::string percent_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [k, v] : params)
    if (!v.empty())
      out += (out.empty() ? "?" : "&") + k + '=' + percent_encode(v);
  return out;
}

} // namespace twinctl
