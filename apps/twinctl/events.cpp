#include "events.hpp"

#include <array>
#include <functional>
#include <iostream>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>

#include "output.hpp"

namespace twinctl {

int follow_events(const server_address& addr, const std::string& token, const std::string& target,
                  std::chrono::seconds timeout, bool as_json, size_t count) {
  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  std::optional<asio::ssl::context> tls;
  std::optional<transport> made;
  try {
    made.emplace(make_stream(ioc, addr, tls));
  } catch (const std::exception& e) {
    std::cerr << "twinctl: cannot speak TLS to the node: " << e.what() << '\n';
    return unreachable;
  }
  auto& stream = *made;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  address(req, addr, token);
  req.set(http::field::accept, "text/event-stream");
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  std::array<char, 16384> chunk;
  std::string text;  // of the body, not yet a whole event
  size_t printed = 0;
  int code = ok;
  beast::error_code failure;
  std::string error_body;

  // Takes the whole events out of `text`; returns false once done.
  auto take_events = [&] {
    size_t end;
    while ((end = text.find("\n\n")) != std::string::npos) {
      std::string name = "message";
      std::string data;
      std::string block = text.substr(0, end);
      text.erase(0, end + 2);
      size_t pos = 0;
      while (pos <= block.size()) {
        auto nl = block.find('\n', pos);
        auto line = block.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? block.size() + 1 : nl + 1;
        if (line.rfind("event: ", 0) == 0)
          name = line.substr(7);
        else if (line.rfind("data: ", 0) == 0)
          data += line.substr(6);
      }
      if (data.empty())
        continue;  // a comment (heartbeat)
      print_event(name, data, as_json);
      if (name == "lagged") {
        std::cerr << "twinctl: the stream fell too far behind and the node ended it\n";
        code = server_error;
        return false;
      }
      if (count > 0 && ++printed == count)
        return false;
    }
    return true;
  };
  std::function<void()> read_body = [&] {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    stream.tcp().expires_after(std::chrono::seconds{45});
    http::async_read_some(stream, buffer, parser, [&](beast::error_code ec, size_t) {
      auto n = chunk.size() - parser.get().body().size;
      if (ec == http::error::need_buffer)
        ec = {};
      if (parser.get().result_int() != 200) {
        error_body.append(chunk.data(), n);
        if (!ec && !parser.is_done())
          return read_body();
        code = exit_code_of(parser.get().result_int());
        return;
      }
      text.append(chunk.data(), n);
      if (!take_events())
        return stream.tcp().close();
      if (ec || parser.is_done()) {
        std::cerr << "twinctl: the node ended the stream" << (ec ? ": " + ec.message() : "")
                  << '\n';
        code = unreachable;
        return;
      }
      read_body();
    });
  };
  stream.tcp().expires_after(timeout);
  connect(stream, resolver, addr, [&](beast::error_code ec) {
    if (ec)
      return void(failure = ec);
    http::async_write(stream, req, [&](beast::error_code ec, size_t) {
      if (ec)
        return void(failure = ec);
      http::async_read_header(stream, buffer, parser, [&](beast::error_code ec, size_t) {
        if (ec)
          return void(failure = ec);
        read_body();
      });
    });
  });
  ioc.run();
  if (failure) {
    std::cerr << "twinctl: no answer from the node at " << addr.host << ':' << addr.port << ": "
              << failure.message() << '\n';
    return unreachable;
  }
  if (parser.is_header_done() && parser.get().result_int() != 200)
    std::cerr << "twinctl: " << error_text(reply_of(parser.get().result_int(), error_body))
              << '\n';
  return code;
}

} // namespace twinctl
