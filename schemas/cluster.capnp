# What members send each other beside requests: the pages of a shard being handed off.
# Evolvable as twin.capnp: fields are only ever added.
@0xc893469f82c88c42;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("twin::schema");

struct StoredRecord {
  id @0 :Text;
  record @1 :Data;        # packed TwinRecord, as the store keeps it
}

struct IndexEntry {
  byParent @0 :Bool;      # false: by type
  key @1 :Text;           # the type name or the parent id
  id @2 :Text;
}

struct HistorySample {
  id @0 :Text;
  property @1 :Text;
  ts @2 :Int64;
  value @3 :Data;         # encoded sample, as the store keeps it
}

struct MetaEntry {
  key @0 :Text;
  value @1 :Data;
}

# A page of one shard's entries, in the order a store reads them; or of the changes made to
# a shard since its copy began (deletions first, as a store batch applies them).
struct ShardPage {
  shard @0 :UInt32;
  records @1 :List(StoredRecord);
  index @2 :List(IndexEntry);
  history @3 :List(HistorySample);
  meta @4 :List(MetaEntry);
  next @5 :Data;          # where the next page starts; empty: this was the last
  deletes @6 :List(Text);              # twins whose record goes
  indexRemoves @7 :List(IndexEntry);
  historyDeletes @8 :List(Text);       # twins whose every sample goes
}

# A member's answer to a query over its own shards: the matching records in id order, and
# the id where it stopped examining candidates (empty: it has no more).
struct QueryPage {
  records @0 :List(Data);  # packed TwinRecords
  cursor @1 :Text;
}

# A primary's group commit, for one shard's follower: the shard's part of the write, as the
# batches that made it (applied in order, in one write), tagged with the primary's epoch and
# the batch's place in the shard's sequence (from 1 in each epoch).
struct ReplicaBatch {
  shard @0 :UInt32;
  epoch @1 :Int64;
  seq @2 :UInt64;
  changes @3 :List(ShardPage);
}

# What a primary ships to one follower at once.
struct ReplicaBatches {
  batches @0 :List(ReplicaBatch);
}

# A follower's word on a shard: every batch up to `seq` of `epoch` is durable, or (with a
# reason in `refused`) the follower takes no more of that epoch's batches until it copied
# the shard anew.
struct ReplicaAck {
  shard @0 :UInt32;
  epoch @1 :Int64;
  seq @2 :UInt64;
  refused @3 :Text;
  caughtUp @4 :Bool;      # the follower's first word after its copy
  generation @5 :UInt64;  # the follow it belongs to (a copy from the start); 0: none
}

struct ReplicaAcks {
  acks @0 :List(ReplicaAck);
}
