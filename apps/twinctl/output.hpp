#pragma once

// What twinctl prints: tables, twins, events, pages of history, anomalies, RUL models.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace twinctl {

using nlohmann::json;

/// A string as it is, a fractional number rounded for reading, other JSON as JSON text.
std::string text_of(const json& v);

/// A table with a header row, columns as wide as their widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows);

/// A page of twins (a query's answer) as a table, and where the next one starts.
void print_twins(const json& page);

/// A page of active alerts (GET /v1/alerts) as a table, and where the next one starts.
void print_alerts(const json& page);

/// The twin types (GET /v1/types) as a table.
void print_types(const json& page);

/// What a type declares (GET /v1/types/{type}): its properties, relationships, commands,
/// aggregates and alerts.
void print_type(const json& t);

/// The cluster's members and shards (GET /v1/cluster).
void print_cluster(const json& status);

/// A twin: its identity, then its properties reported and desired, its alerts.
void print_twin(const json& t);

/// A time in ms since the epoch as UTC, e.g. 2026-11-23T06:16:14.123Z; other JSON as is.
std::string time_of(const json& ms);

/// Prints one server-sent event: a line of text, or with `as_json` its data as one line
/// of JSON with the event's name in "event".
void print_event(const std::string& name, const std::string& data, bool as_json);

/// A page of history as a table, and where the next one starts.
void print_history(const json& page);

/// A page of anomalies as a table, and where the next one starts.
void print_anomalies(const json& page);

/// A type's RUL model: what it reads, what it was fitted on, and its cross-validated error.
void print_rul_model(const json& m);

} // namespace twinctl
