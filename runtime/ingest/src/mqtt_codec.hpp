#pragma once

// MQTT 3.1.1 and 5.0 packets: what the node's client sends and receives, written into and
// read from flat byte buffers, with no I/O. Every decoder checks lengths against the bytes
// it is given: a malformed packet is an error, never a read past its end.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twin::ingest::mqtt {

constexpr uint8_t v311 = 4;  ///< protocol level of MQTT 3.1.1
constexpr uint8_t v5 = 5;    ///< protocol level of MQTT 5.0

enum class packet_type : uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
  auth = 15,
};

/// The largest remaining length MQTT can express (four length bytes).
constexpr size_t max_remaining_length = 268'435'455;

struct connect_fields {
  uint8_t version = v311;
  std::string client_id;
  bool clean_start = false;
  uint16_t keep_alive_s = 20;
  std::string username;  ///< empty: none
  std::string password;  ///< empty: none
  // MQTT 5 only.
  uint32_t session_expiry_s = 0;  ///< how long the broker keeps the session once we go
  uint16_t receive_maximum = 65535;  ///< QoS 1 messages the broker may send unacknowledged
  uint32_t maximum_packet_size = 0;  ///< 0: not sent (no limit)
};

struct connack_fields {
  bool session_present = false;
  uint8_t code = 0;  ///< 0: accepted; else the return (3.1.1) or reason (5) code
  // MQTT 5 only.
  uint16_t receive_maximum = 65535;  ///< QoS 1 messages we may send unacknowledged
  uint16_t server_keep_alive_s = 0;  ///< 0: none (ours stands)
  uint32_t maximum_packet_size = 0;  ///< 0: no limit
  std::string reason;                ///< the broker's reason string, if any
};

/// A PUBLISH as it was received: views into the packet's bytes.
struct publish_view {
  std::string_view topic;
  std::string_view payload;
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  uint16_t packet_id = 0;  ///< QoS > 0 only
};

/// One packet framed out of a byte stream: its first byte and the bytes after the length.
struct frame {
  uint8_t header = 0;
  std::string_view body;
  size_t size = 0;  ///< bytes of the whole packet

  packet_type type() const { return static_cast<packet_type>(header >> 4); }
};

enum class frame_status { complete, incomplete, malformed, too_large };

/// Frames the packet at the start of `bytes`: `complete` (and `out` set), `incomplete`
/// (more bytes are needed), `malformed` (a length of more than four bytes) or `too_large`
/// (more than `max_packet` bytes).
frame_status next_frame(std::string_view bytes, size_t max_packet, frame& out);

// Writers: each appends one whole packet to `out`.
void write_connect(std::string& out, const connect_fields& c);
/// `packet_id` is used for QoS 1 only.
void write_publish(std::string& out, uint8_t version, std::string_view topic,
                   std::string_view payload, uint8_t qos, bool retain, bool dup,
                   uint16_t packet_id);
void write_puback(std::string& out, uint16_t packet_id);
/// Subscribes to each (filter, QoS).
void write_subscribe(std::string& out, uint8_t version, uint16_t packet_id,
                     const std::vector<std::pair<std::string, uint8_t>>& filters);
void write_pingreq(std::string& out);
void write_disconnect(std::string& out);

// Readers: false for a body that is not a valid packet of that type.
bool read_connack(uint8_t version, std::string_view body, connack_fields& out);
bool read_publish(uint8_t version, uint8_t header, std::string_view body, publish_view& out);
/// PUBACK (and SUBACK, UNSUBACK): the packet id.
bool read_packet_id(std::string_view body, uint16_t& out);
/// SUBACK: the packet id and one code per filter (0-2: granted QoS; ≥ 0x80: refused).
bool read_suback(uint8_t version, std::string_view body, uint16_t& packet_id,
                 std::vector<uint8_t>& codes);

/// What a CONNACK's code means, for logs.
std::string connack_text(uint8_t version, uint8_t code);

} // namespace twin::ingest::mqtt
