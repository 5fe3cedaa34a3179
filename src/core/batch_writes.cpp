#include "core/batch_writes.hpp"

#include <algorithm>
#include <climits>
#include <map>
#include <set>

namespace cdp {
namespace {

// At most `n` bytes of `s`, not cutting a UTF-8 character.
std::string cut(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) n--;
  return s.substr(0, n);
}

// The refused keys as one value of cdp.identity_refusals: the first few, comma-separated.
std::string key_list(const std::vector<std::string>& keys) {
  std::string out;
  for (auto& k : keys) {
    if (out.size() + k.size() > 200) return out + (out.empty() ? "" : ", ") + "...";
    out += out.empty() ? k : ", " + k;
  }
  return out;
}

std::string trait_limit_rule(const char* what, size_t max_traits, size_t refused) {
  return std::string("traits: the ") + what + " has " + std::to_string(max_traits) +
         " keys (cdp.max_traits_per_profile); " + std::to_string(refused) + " new keys refused";
}

bool joins_account(const EventFacts& e) {
  return e.type == MessageType::Group && !e.group_id.empty() && e.group_id.size() <= kMaxIdentifierBytes;
}

struct AccountAgg {
  TraitSet traits;
  Micros first_seen = INT64_MAX, last_seen = INT64_MIN;
  void seen(Micros first, Micros last) {
    first_seen = std::min(first_seen, first);
    last_seen = std::max(last_seen, last);
  }
};

class Folder {
 public:
  explicit Folder(const BatchInput& in) : in_(in), rules_(*in.rules), traits_(*in.traits) {}

  BatchWrites run() {
    fold_stored_profiles();
    const auto& events = *in_.events;
    out_.bound.assign(events.size(), 0);
    for (size_t i = 0; i < events.size(); i++) {
      tick();
      fold_event(i);
    }
    for (size_t k = 0; k < in_.fresh_ids.size(); k++) {  // made here, maybe merged away here too
      int64_t temp = -static_cast<int64_t>(k) - 1;
      out_.new_profiles.push_back({in_.fresh_ids[k], final_of(temp)});
    }
    for (auto& [id, a] : profiles_)
      out_.profiles.push_back({id, a.traits.traits_json(), a.traits.meta_json(),
                               a.first_seen == INT64_MAX ? 0 : a.first_seen,
                               a.last_seen == INT64_MIN ? 0 : a.last_seen, a.events, a.merges, a.flagged});
    fold_stored_accounts();
    for (auto& [group, a] : accounts_)
      out_.accounts.push_back({group, a.traits.traits_json(), a.traits.meta_json(), a.first_seen, a.last_seen});
    return std::move(out_);
  }

 private:
  void tick() const {
    if (in_.check_interrupts) in_.check_interrupts();
  }
  int64_t id_of(int64_t p) const { return p < 0 ? in_.fresh_ids.at(static_cast<size_t>(-p - 1)) : p; }
  int64_t final_of(int64_t p) const { return id_of(in_.canonical(p)); }
  const std::string& type_name(int type) const { return rules_.types()[type].name; }

  // Stored profiles fold into their survivors; those merged away are listed.
  void fold_stored_profiles() {
    for (auto& s : in_.profiles) {
      tick();
      int64_t survivor = final_of(s.id);
      ProfileAgg& a = profiles_[survivor];
      traits_.fold_set(a.traits, TraitSet::from_json(s.traits, s.sources));
      if (s.first_seen != 0) a.seen(s.first_seen);
      if (s.last_seen != 0) a.seen(s.last_seen);
      a.events += s.events;
      a.merges += s.merges;
      a.flagged |= s.flagged;
      if (survivor != s.id) out_.merged.push_back({s.id, survivor});
    }
  }

  void refuse(int64_t event, int64_t profile, std::string type, std::string value, std::string rule) {
    out_.refusals.push_back({event, profile, 0, std::move(type), std::move(value), std::move(rule)});
  }

  // One event: its merges and refusals, then (if bound) its profile's traits
  // and counters, its new identifiers and the account it joins.
  void fold_event(size_t i) {
    const EventFacts& e = (*in_.events)[i];
    const Decision& d = (*in_.decisions)[i];
    for (auto& m : d.merges) {
      out_.merges.push_back({id_of(m.from), id_of(m.into), e.id, rules_.to_json((*in_.identifiers)[i])});
      profiles_[final_of(m.into)].merges++;
    }
    for (auto& r : d.refusals)
      out_.refusals.push_back({e.id, id_of(r.profile), r.other_profile ? id_of(r.other_profile) : 0,
                               type_name(r.identifier.type), r.identifier.value, r.rule});
    if (d.profile == 0) return;  // every identifier blocked: bound to no one
    int64_t bound = id_of(d.profile), survivor = final_of(d.profile);
    out_.bound[i] = survivor;
    ProfileAgg& a = profiles_[survivor];
    a.events++;
    a.seen(e.timestamp);
    a.flagged |= d.flagged;
    traits_.fold_event(a.traits, e);
    if (!a.traits.refused.empty()) {  // the trait-key limit: the keys it refused, for review
      a.flagged = true;
      refuse(e.id, bound, "trait", key_list(a.traits.refused),
             trait_limit_rule("profile", traits_.max_traits(), a.traits.refused.size()));
    }
    out_.event_profiles.push_back({e.id, bound});
    for (auto& id : d.attached)
      out_.identities.push_back({type_name(id.type), id.value, survivor, bound, e.id, e.timestamp});
    if (e.type != MessageType::Group || e.group_id.empty()) return;
    if (!joins_account(e)) {
      refuse(e.id, bound, "group_id", cut(e.group_id, 64) + "...",
             "groupId: longer than " + std::to_string(kMaxIdentifierBytes) + " bytes (" +
                 std::to_string(e.group_id.size()) + "); the event joins no account");
      return;
    }
    AccountAgg& account = accounts_[e.group_id];
    traits_.fold_event(account.traits, e, true);
    if (!account.traits.refused.empty())
      refuse(e.id, bound, "trait", key_list(account.traits.refused),
             trait_limit_rule("account", traits_.max_traits(), account.traits.refused.size()));
    account.seen(e.timestamp, e.timestamp);
    out_.profile_accounts.push_back({bound, e.group_id, e.timestamp});
  }

  // Accounts already stored fold in too, so their traits merge by the same rules.
  void fold_stored_accounts() {
    for (auto& s : in_.accounts) {
      auto it = accounts_.find(s.group_id);
      if (it == accounts_.end()) continue;  // not one of batch_groups()
      traits_.fold_set(it->second.traits, TraitSet::from_json(s.traits, s.sources));
      it->second.seen(s.first_seen, s.last_seen);
    }
  }

  const BatchInput& in_;
  const IdentityRules& rules_;
  const TraitRules& traits_;
  BatchWrites out_;
  std::map<int64_t, ProfileAgg> profiles_;
  std::map<std::string, AccountAgg> accounts_;
};

}  // namespace

std::vector<std::string> batch_groups(const std::vector<EventFacts>& events, const std::vector<Decision>& decisions) {
  std::set<std::string> groups;
  for (size_t i = 0; i < events.size() && i < decisions.size(); i++)
    if (decisions[i].profile != 0 && joins_account(events[i])) groups.insert(events[i].group_id);
  return {groups.begin(), groups.end()};
}

BatchWrites fold_batch(const BatchInput& in) { return Folder(in).run(); }

}  // namespace cdp
