# Requests to twins and their replies, as they cross nodes: the payload of a request
# (never a callback; the sender keeps that and matches the reply by its token), and the
# answer its twin gave. Evolvable as twin.capnp: fields are only ever added.
@0xe5b82722a87931e7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("twin::schema");

using Twin = import "twin.capnp";

# A compare-and-set condition: `version` applies only if `set`.
struct IfVersion {
  set @0 :Bool;
  version @1 :UInt64;   # 0: the twin must not exist
}

struct Ingest {
  values @0 :List(Twin.Entry);
  ts @1 :Int64;          # ms since the Unix epoch; 0: when applied
  source @2 :Text;
}

struct Put {
  type @0 :Text;
  parent @1 :Text;       # empty: none
  properties @2 :List(Twin.Entry);
  desired @3 :List(Twin.Entry);
  relationships @4 :List(Twin.Relationship);
  ifVersion @5 :IfVersion;
  source @6 :Text;
}

struct Patch {
  properties @0 :List(Twin.Entry);
  desired @1 :List(Twin.Entry);
  ifVersion @2 :IfVersion;
  source @3 :Text;
  setParent @4 :Bool;    # the parent changes to `parent` (empty: none)
  parent @5 :Text;
  setRelationships @6 :Bool;  # the relationships are replaced by `relationships`
  relationships @7 :List(Twin.Relationship);
}

struct Command {
  name @0 :Text;
  args @1 :Twin.Value;
}

# A child's state for its parent (child updates and attach requests).
struct ChildLink {
  state @0 :Twin.ChildState;
  kind @1 :Twin.Kind;
}

struct AncestorQuery {
  candidate @0 :Text;
  kind @1 :Twin.Kind;
}

struct Request {
  twin @0 :Text;
  union {
    ingest @1 :Ingest;
    put @2 :Put;
    patch @3 :Patch;
    get @4 :Void;
    remove @5 :IfVersion;
    command @6 :Command;
    childUpdate @7 :ChildLink;
    attach @8 :ChildLink;
    detach @9 :Text;         # the child that leaves
    orphan @10 :Text;        # the parent that was deleted
    ancestorQuery @11 :AncestorQuery;
    childQuery @12 :Text;    # the parent that asks
  }
  refuseChildren @13 :Bool;  # remove: refused while the twin has children (else detached)
}

struct Error {
  category @0 :Text;     # "twin" for the runtime's own codes
  code @1 :UInt8;
  message @2 :Text;
}

struct Reply {
  union {
    error @0 :Error;
    version @1 :UInt64;       # ingest, patch, delete: the twin's version after the change
    put :group {
      version @2 :UInt64;
      created @3 :Bool;
    }
    record @4 :Data;          # get: the twin's record, packed as the store keeps it
    value @5 :Twin.Value;     # command: the handler's answer
    done @6 :Void;            # attach: accepted
    answer @7 :Bool;          # ancestor query: the candidate is an ancestor
  }
}

# A twin's durable change, or a command sent to its device, as a member streams it to the
# members whose clients watch it.
enum ChangeKind {
  changed @0;
  deleted @1;
  command @2;
}

struct ChangeEvent {
  kind @0 :ChangeKind;
  id @1 :Text;
  type @2 :Text;
  version @3 :UInt64;
  ts @4 :Int64;               # ms since the Unix epoch: when it became durable
  properties @5 :List(Twin.Entry);
  desired @6 :List(Twin.Entry);
  command @7 :Text;
  args @8 :Twin.Value;
}

# Events in the order their member published them.
struct ChangeEvents {
  events @0 :List(ChangeEvent);
}
