#pragma once

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace twin::runtime {

/// Errors of the runtime module. Registered with CAF under the category "twin";
/// each error carries a human-readable message as its context (see `error_message`).
enum class runtime_errc : uint8_t {
  none = 0,
  invalid_id,        ///< a twin id does not match namespace:name
  invalid_argument,  ///< malformed request (bad JSON, bad shape)
  not_found,         ///< no twin with that id
  unknown_type,      ///< no twin type with that name
  unknown_property,  ///< the type declares no such property
  type_mismatch,     ///< a value of the wrong type for a property
  out_of_range,      ///< a value outside the declared range of a property
  read_only,         ///< a computed property or a non-writable desired property
  version_conflict,  ///< compare-and-set failed: the twin has another version
  invalid_parent,    ///< a parent link that breaks component < asset < system < process
  invalid_model,     ///< a model file or type definition is wrong
  store_failure,     ///< the store could not read or write
  store_locked,      ///< the data directory is used by another process
  store_corrupt,     ///< the data directory cannot be read
  shutting_down,     ///< the runtime is stopping and takes no new work
  timeout,           ///< no answer in time
  unavailable,       ///< a service the node needs (e.g. the MQTT broker) cannot be reached
  conflict,          ///< the request conflicts with the current state (a cycle, another type)
  future_timestamp,  ///< a device sample stamped further ahead of the node's clock than allowed
  insufficient_storage,  ///< the store's disk is (nearly) full: writes are refused for now
  not_owner,         ///< this node does not serve the twin's shard (now): ask its owner
};

/// Returns the enum name, e.g. "not_found".
std::string to_string(runtime_errc x);

/// Makes an error of this module with a message for users.
caf::error make_error(runtime_errc code, std::string message);

/// Returns the code of `err` if it belongs to this module, `runtime_errc::none` otherwise.
runtime_errc error_code(const caf::error& err);

/// Returns the message of an error of any category, for logs and API answers.
std::string error_message(const caf::error& err);

} // namespace twin::runtime

CAF_ERROR_CODE_ENUM(twin::runtime::runtime_errc, "twin")
