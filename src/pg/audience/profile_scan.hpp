// What evaluation reads of profiles, read by index scans from C and copied
// out into plain buffers: the traits the rules name (from jsonb's binary
// form, no text), the aggregate state's bytes, and the open memberships.
// Bulk passes walk every profile in profile_id order as one merge of three
// ordered index scans (cdp.profiles, cdp.profile_computed and the current
// memberships), a batch at a time; the processor probes the ids it touched.
// Every Postgres call runs inside pg::call over plain data; the documents
// are built from the buffers after it (audience.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

#include "core/timestamp.hpp"

namespace cdp::pg::audience {

// One batch of profiles, in profile_id order.
struct ProfileRows {
  struct Span {
    uint32_t at = 0, size = 0;
  };
  std::vector<int64_t> ids;
  std::vector<char> has_row;          // a cdp.profile_computed row exists
  std::vector<Micros> next_expiry;    // its next_expiry (0: null or no row)
  std::vector<int32_t> computed_keys; // members of its computed object (-1: no row)
  std::vector<Span> state, traits;    // into bytes: the state as stored; the trait values, encoded
  std::vector<uint32_t> members_at;   // profile i's segments: member_segments[members_at[i - 1] (0 for i = 0) .. members_at[i])
  std::vector<int64_t> member_segments;
  // Open memberships of profiles that no longer exist, met on the way (a
  // full pass only): (segment, profile) pairs to close.
  std::vector<int64_t> orphan_segments, orphan_profiles;
  std::string bytes;
  const std::vector<std::string>* keys = nullptr;  // the trait keys asked for (the scan's)

  size_t size() const { return ids.size(); }
  std::string_view state_of(size_t i) const { return std::string_view(bytes).substr(state[i].at, state[i].size); }
  bool member(size_t i, int64_t segment) const;
  // Profile i's traits, only the keys the scan was asked for, as an object
  // built in `doc` (its allocator).
  void traits_of(size_t i, rapidjson::Document& doc) const;
  void clear();
};

class ProfileScan {
 public:
  // keys: the top-level trait keys to copy (Audience::trait_keys()).
  explicit ProfileScan(const std::vector<std::string>& keys);
  ProfileScan(const ProfileScan&) = delete;
  ProfileScan& operator=(const ProfileScan&) = delete;
  // Needs SPI connected (the scans live in its memory) and ends with close().
  // traits_only: no state and no memberships are read (a rule with no event
  // condition, computed trait or stored membership to compare), and the
  // profiles come in heap order, by a sequential scan.
  void open(bool traits_only = false);
  // The next (up to) `max` profiles, in profile_id order unless
  // traits_only; false when done (the last call may still carry orphans).
  bool next(ProfileRows& rows, size_t max);
  // These profiles (sorted, distinct), those that exist.
  void read(const std::vector<int64_t>& ids, ProfileRows& rows);
  void close();

  struct Impl;  // the Postgres side (plain data)

 private:
  void open_impl(bool probe, bool traits_only);
  std::vector<std::string> keys_;
  std::vector<const char*> key_ptrs_;
  std::vector<int> key_lens_;
  Impl* impl_ = nullptr;
};

}  // namespace cdp::pg::audience
