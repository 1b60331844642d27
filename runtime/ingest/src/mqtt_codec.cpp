#include "mqtt_codec.hpp"

namespace twin::ingest::mqtt {

namespace {

void put_u8(std::string& out, uint8_t x) {
  out.push_back(static_cast<char>(x));
}

void put_u16(std::string& out, uint16_t x) {
  put_u8(out, static_cast<uint8_t>(x >> 8));
  put_u8(out, static_cast<uint8_t>(x & 0xff));
}

void put_u32(std::string& out, uint32_t x) {
  put_u16(out, static_cast<uint16_t>(x >> 16));
  put_u16(out, static_cast<uint16_t>(x & 0xffff));
}

void put_varint(std::string& out, size_t x) {
  do {
    uint8_t b = x % 128;
    x /= 128;
    put_u8(out, x > 0 ? (b | 0x80) : b);
  } while (x > 0);
}

size_t varint_size(size_t x) {
  return x < 128 ? 1 : x < 16384 ? 2 : x < 2'097'152 ? 3 : 4;
}

void put_string(std::string& out, std::string_view s) {
  put_u16(out, static_cast<uint16_t>(s.size()));
  out.append(s);
}

/// Reads big-endian fields from a packet's body; every read checks what is left.
class reader {
public:
  explicit reader(std::string_view bytes) : rest_(bytes) {}

  bool u8(uint8_t& x) {
    if (rest_.empty())
      return false;
    x = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return true;
  }
  bool u16(uint16_t& x) {
    uint8_t hi = 0;
    uint8_t lo = 0;
    if (!u8(hi) || !u8(lo))
      return false;
    x = static_cast<uint16_t>(hi << 8 | lo);
    return true;
  }
  bool u32(uint32_t& x) {
    uint16_t hi = 0;
    uint16_t lo = 0;
    if (!u16(hi) || !u16(lo))
      return false;
    x = static_cast<uint32_t>(hi) << 16 | lo;
    return true;
  }
  bool varint(size_t& x) {
    x = 0;
    for (int i = 0; i < 4; ++i) {
      uint8_t b = 0;
      if (!u8(b))
        return false;
      x |= static_cast<size_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0)
        return true;
    }
    return false;
  }
  bool bytes(size_t n, std::string_view& x) {
    if (rest_.size() < n)
      return false;
    x = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  bool string(std::string_view& x) {
    uint16_t n = 0;
    return u16(n) && bytes(n, x);
  }
  std::string_view rest() const { return rest_; }

private:
  std::string_view rest_;
};

/// Properties of MQTT 5 (section 2.2.2.2) that the client reads; the rest are skipped.
struct properties {
  uint16_t receive_maximum = 65535;
  uint16_t server_keep_alive = 0;
  uint32_t maximum_packet_size = 0;
  std::string_view reason;
};

/// Reads a property list (its length first); false if it is malformed or has an id that
/// MQTT 5 does not define.
bool read_properties(reader& r, properties& p) {
  size_t length = 0;
  std::string_view list;
  if (!r.varint(length) || !r.bytes(length, list))
    return false;
  reader in{list};
  while (!in.rest().empty()) {
    size_t id = 0;
    if (!in.varint(id))
      return false;
    uint8_t b = 0;
    uint16_t s = 0;
    uint32_t w = 0;
    size_t v = 0;
    std::string_view text;
    switch (id) {
      case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a:
        if (!in.u8(b))
          return false;
        break;
      case 0x13:
        if (!in.u16(p.server_keep_alive))
          return false;
        break;
      case 0x21:
        if (!in.u16(p.receive_maximum) || p.receive_maximum == 0)
          return false;
        break;
      case 0x22: case 0x23:
        if (!in.u16(s))
          return false;
        break;
      case 0x27:
        if (!in.u32(p.maximum_packet_size))
          return false;
        break;
      case 0x02: case 0x11: case 0x18:
        if (!in.u32(w))
          return false;
        break;
      case 0x0b:
        if (!in.varint(v))
          return false;
        break;
      case 0x1f:
        if (!in.string(p.reason))
          return false;
        break;
      case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1a: case 0x1c:
        if (!in.string(text))
          return false;
        break;
      case 0x26:
        if (!in.string(text) || !in.string(text))
          return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

void put_header(std::string& out, uint8_t first, size_t remaining) {
  put_u8(out, first);
  put_varint(out, remaining);
}

} // namespace

frame_status next_frame(std::string_view bytes, size_t max_packet, frame& out) {
  if (bytes.size() < 2)
    return frame_status::incomplete;
  size_t remaining = 0;
  size_t i = 1;
  for (;; ++i) {
    if (i > 4)
      return frame_status::malformed;
    if (i >= bytes.size())
      return frame_status::incomplete;
    auto b = static_cast<uint8_t>(bytes[i]);
    remaining |= static_cast<size_t>(b & 0x7f) << (7 * (i - 1));
    if ((b & 0x80) == 0)
      break;
  }
  size_t size = i + 1 + remaining;
  if (size > max_packet)
    return frame_status::too_large;
  if (bytes.size() < size)
    return frame_status::incomplete;
  out.header = static_cast<uint8_t>(bytes[0]);
  out.body = bytes.substr(i + 1, remaining);
  out.size = size;
  return frame_status::complete;
}

void write_connect(std::string& out, const connect_fields& c) {
  std::string body;
  put_string(body, "MQTT");
  put_u8(body, c.version);
  uint8_t flags = c.clean_start ? 0x02 : 0;
  if (!c.username.empty())
    flags |= 0x80;
  if (!c.password.empty() && !c.username.empty())  // 3.1.1: no password without a name
    flags |= 0x40;
  put_u8(body, flags);
  put_u16(body, c.keep_alive_s);
  if (c.version == v5) {
    std::string props;
    if (c.session_expiry_s > 0) {
      put_u8(props, 0x11);
      put_u32(props, c.session_expiry_s);
    }
    if (c.receive_maximum != 65535) {
      put_u8(props, 0x21);
      put_u16(props, c.receive_maximum);
    }
    if (c.maximum_packet_size > 0) {
      put_u8(props, 0x27);
      put_u32(props, c.maximum_packet_size);
    }
    put_varint(body, props.size());
    body += props;
  }
  put_string(body, c.client_id);
  if (!c.username.empty())
    put_string(body, c.username);
  if ((flags & 0x40) != 0)
    put_string(body, c.password);
  put_header(out, 0x10, body.size());
  out += body;
}

void write_publish(std::string& out, uint8_t version, std::string_view topic,
                   std::string_view payload, uint8_t qos, bool retain, bool dup,
                   uint16_t packet_id) {
  size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + (version == v5 ? 1 : 0)
                     + payload.size();
  uint8_t first = 0x30 | (dup ? 0x08 : 0) | static_cast<uint8_t>(qos << 1) | (retain ? 1 : 0);
  out.reserve(out.size() + 1 + varint_size(remaining) + remaining);
  put_header(out, first, remaining);
  put_string(out, topic);
  if (qos > 0)
    put_u16(out, packet_id);
  if (version == v5)
    put_u8(out, 0);  // no properties
  out.append(payload);
}

void write_puback(std::string& out, uint16_t packet_id) {
  put_u8(out, 0x40);
  put_u8(out, 2);
  put_u16(out, packet_id);
}

void write_subscribe(std::string& out, uint8_t version, uint16_t packet_id,
                     const std::vector<std::pair<std::string, uint8_t>>& filters) {
  std::string body;
  put_u16(body, packet_id);
  if (version == v5)
    put_u8(body, 0);  // no properties
  for (const auto& [filter, qos] : filters) {
    put_string(body, filter);
    put_u8(body, qos);
  }
  put_header(out, 0x82, body.size());
  out += body;
}

void write_pingreq(std::string& out) {
  put_u8(out, 0xc0);
  put_u8(out, 0);
}

void write_disconnect(std::string& out) {
  put_u8(out, 0xe0);
  put_u8(out, 0);
}

bool read_connack(uint8_t version, std::string_view body, connack_fields& out) {
  reader r{body};
  uint8_t flags = 0;
  if (!r.u8(flags) || !r.u8(out.code) || (flags & 0xfe) != 0)
    return false;
  out.session_present = (flags & 1) != 0;
  if (version == v5) {
    properties p;
    if (!r.rest().empty() && !read_properties(r, p))
      return false;
    out.receive_maximum = p.receive_maximum;
    out.server_keep_alive_s = p.server_keep_alive;
    out.maximum_packet_size = p.maximum_packet_size;
    out.reason = std::string{p.reason};
  }
  return r.rest().empty();
}

bool read_publish(uint8_t version, uint8_t header, std::string_view body, publish_view& out) {
  reader r{body};
  out.qos = (header >> 1) & 3;
  out.retain = (header & 1) != 0;
  out.dup = (header & 8) != 0;
  out.packet_id = 0;
  if (out.qos == 3 || !r.string(out.topic))
    return false;
  if (out.qos > 0 && (!r.u16(out.packet_id) || out.packet_id == 0))
    return false;
  if (version == v5) {
    properties p;
    if (!read_properties(r, p))
      return false;
  }
  out.payload = r.rest();
  return true;
}

bool read_packet_id(std::string_view body, uint16_t& out) {
  reader r{body};
  return r.u16(out);
}

bool read_suback(uint8_t version, std::string_view body, uint16_t& packet_id,
                 std::vector<uint8_t>& codes) {
  reader r{body};
  if (!r.u16(packet_id))
    return false;
  if (version == v5) {
    properties p;
    if (!read_properties(r, p))
      return false;
  }
  auto rest = r.rest();
  codes.assign(rest.begin(), rest.end());
  return !codes.empty();
}

std::string connack_text(uint8_t version, uint8_t code) {
  if (version == v311) {
    switch (code) {
      case 0: return "accepted";
      case 1: return "unacceptable protocol version";
      case 2: return "client identifier rejected";
      case 3: return "server unavailable";
      case 4: return "bad user name or password";
      case 5: return "not authorized";
      default: return "code " + std::to_string(code);
    }
  }
  switch (code) {
    case 0x00: return "success";
    case 0x80: return "unspecified error";
    case 0x81: return "malformed packet";
    case 0x82: return "protocol error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8a: return "banned";
    case 0x8c: return "bad authentication method";
    case 0x95: return "packet too large";
    case 0x97: return "quota exceeded";
    case 0x9f: return "connection rate exceeded";
    default: return "reason code " + std::to_string(code);
  }
}

} // namespace twin::ingest::mqtt
