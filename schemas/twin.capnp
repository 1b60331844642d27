# Twin state as it is stored in RocksDB and sent between nodes.
# Evolvable: fields are only ever added, with the next ordinal; none is renamed or removed.
@0x8ad724abd4d1e981;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("twin::schema");

struct Value {
  union {
    null @0 :Void;
    bool @1 :Bool;
    int @2 :Int64;
    double @3 :Float64;
    string @4 :Text;
    list @5 :List(Value);
    map @6 :List(Entry);
  }
}

struct Entry {
  key @0 :Text;
  value @1 :Value;
}

enum Kind {
  component @0;
  asset @1;
  system @2;
  process @3;
}

enum Severity {
  ok @0;
  warning @1;
  critical @2;
}

# When and by what a reported property was last set, in the form that records carry
# since `reportedMeta` was added: entry i describes reported entry i.
struct ReportedMeta {
  updatedMs @0 :Int64;   # ms since the Unix epoch
  source @1 :UInt32;     # index into TwinRecord.sources; 0xffffffff: no metadata
}

struct PropertyMeta {
  name @0 :Text;
  updatedMs @1 :Int64;   # ms since the Unix epoch
  source @2 :Text;       # "telemetry", "api", "computed", a device id, ...
}

struct Relationship {
  name @0 :Text;
  target @1 :Text;       # twin id
}

# What a parent keeps of each child: the child's last reported numbers and
# booleans (the inputs of the parent's aggregates) and the child's health.
struct ChildState {
  id @0 :Text;
  values @1 :List(Entry);
  health @2 :Severity;
  type @3 :Text;
}

struct Alert {
  name @0 :Text;
  severity @1 :Severity;
  sinceMs @2 :Int64;
}

struct TwinRecord {
  id @0 :Text;
  type @1 :Text;
  kind @2 :Kind;
  parent @3 :Text;       # empty: no parent
  children @4 :List(ChildState);
  relationships @5 :List(Relationship);
  reported @6 :List(Entry);
  desired @7 :List(Entry);
  metadata @8 :List(PropertyMeta);  # read from older records; written empty
  version @9 :UInt64;    # +1 per accepted change
  createdMs @10 :Int64;
  updatedMs @11 :Int64;
  alerts @12 :List(Alert);  # active alerts of this twin (not of its children)
  reportedMeta @13 :List(ReportedMeta);  # parallel to `reported`; replaces `metadata`
  sources @14 :List(Text);  # the distinct sources that reportedMeta names
}

# One device sample: values of properties of one twin at one time.
struct Telemetry {
  twin @0 :Text;
  ts @1 :Int64;
  values @2 :List(Entry);
  source @3 :Text;
}

# A remaining-useful-life model of a twin type, learned from its run-to-failure twins.
struct RulModel {
  type @0 :Text;
  version @1 :UInt64;       # 1 for the type's first model, +1 per fit
  fittedMs @2 :Int64;
  inputs @3 :List(Text);
  capS @4 :Float64;
  halfLife @5 :Float64;     # samples
  folds @6 :UInt32;
  selectionPrefix @7 :Text;
  selectionType @8 :Text;
  twins @9 :UInt32;
  samples @10 :UInt64;
  cvRmseS @11 :Float64;
  cvMaeS @12 :Float64;
  cvBiasS @13 :Float64;
  mean @14 :List(Float64);   # per feature
  scale @15 :List(Float64);  # 1 / the standard deviation
  weights @16 :List(Float64);
  low @17 :List(Float64);    # per band of the estimate
  high @18 :List(Float64);
  retired @19 :Bool;         # removed: kept only for its version
}

# A token of the API: who may call it, with what role, on which twins. Its secret is kept
# only as its SHA-256.
struct AccessToken {
  id @0 :Text;               # public: 16 hex digits
  name @1 :Text;
  role @2 :Text;             # reader, operator, writer, admin or device
  namespaces @3 :List(Text); # empty: every namespace
  twins @4 :List(Text);      # a device's own twins
  secretHash @5 :Data;
  createdMs @6 :Int64;
  expiresMs @7 :Int64;       # 0: never
  revokedMs @8 :Int64;       # 0: not revoked
  createdBy @9 :Text;        # the id of the token that created it; empty: the node
}

# One entry of a node's audit log: a request that changed something or was refused.
struct AuditEntry {
  tsMs @0 :Int64;
  tokenId @1 :Text;     # empty: none
  tokenName @2 :Text;
  peer @3 :Text;        # the client's address
  method @4 :Text;
  path @5 :Text;        # without the query
  twin @6 :Text;        # the twin of the path, if any
  status @7 :UInt16;
  outcome @8 :Text;     # "ok", or the error's code
}
