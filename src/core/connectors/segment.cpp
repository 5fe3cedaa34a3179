// kind "segment": any Segment-compatible collector's POST /v1/batch
// (Segment, RudderStack, Jitsu, another cdp). Messages go as they are, with
// their messageId; segment changes become "Audience Entered"/"Audience
// Exited" track calls, as Segment Engage sends them. docs/connectors/segment.md.
#include "core/connectors/connector.hpp"
#include "core/json_util.hpp"

namespace cdp::connectors {
namespace {

using rapidjson::Value;

class Segment final : public Connector {
 public:
  std::string_view kind() const override { return "segment"; }
  std::string_view default_url() const override { return "https://api.segment.io"; }
  // 500 KB a batch, 32 KB a message (Segment's HTTP Tracking API limits).
  Caps caps() const override { return {2500, 500 * 1024, 32 * 1024, 0}; }
  Config check_config(const Value& config) const override {
    return string_config(config, {"write_key"}, {"write_key"});
  }
  std::vector<std::string> secrets(const Config& c) const override { return {c.at("write_key")}; }

  Mapping map(const Value& m, const Config&, Micros) const override {
    std::string type = type_of(m);
    if (type == "delete")
      return Mapping::skip("a deletion notice: /v1/batch has no deletion (use the collector's own deletion API)");
    if (text(m, "userId").empty() && text(m, "anonymousId").empty())
      return Mapping::reject("userId: a message needs a userId or an anonymousId");
    if (type != "segment_enter" && type != "segment_exit") return Mapping::one({to_json(m), "", "", ""});
    return Mapping::one({to_json(audience_track(m, type == "segment_enter")), "", "", ""});
  }

  Request build(const std::vector<const Item*>& items, const Config& c, Micros now) const override {
    Request r;
    r.path = "/v1/batch";
    r.headers = {"Content-Type: application/json", "Authorization: Basic " + base64(c.at("write_key") + ":")};
    r.body = "{\"batch\":[";
    for (size_t i = 0; i < items.size(); i++) r.body += (i ? "," : "") + items[i]->json;
    r.body += "],\"sentAt\":\"" + format_iso8601(now) + "\"}";
    return r;
  }

  // 200 for the batch. A 400 refuses the whole batch (a message the collector
  // cannot read): split it to find the message.
  Answer read(const Response& r, const std::vector<const Item*>& items, Micros) const override {
    Answer a = by_status(r);
    if (r.status == 400 && items.size() > 1) a.split = true;
    return a;
  }

 private:
  static rapidjson::Document audience_track(const Value& m, bool enter) {
    rapidjson::Document d(rapidjson::kObjectType);
    auto& al = d.GetAllocator();
    d.AddMember("type", "track", al);
    d.AddMember("event", rapidjson::StringRef(enter ? "Audience Entered" : "Audience Exited"), al);
    Value props(rapidjson::kObjectType);
    if (const Value* s = at(m, "segment")) props.AddMember("audience_key", Value(*s, al), al);
    if (const Value* s = at(m, "segment_id")) props.AddMember("segment_id", Value(*s, al), al);
    props.AddMember(rapidjson::StringRef(enter ? "entered" : "exited"), true, al);
    d.AddMember("properties", props, al);
    for (const char* key : {"userId", "messageId"})
      if (const Value* v = at(m, key)) d.AddMember(Value(key, al), Value(*v, al), al);
    if (const Value* t = at(m, "at")) d.AddMember("timestamp", Value(*t, al), al);
    Value context(rapidjson::kObjectType);
    if (const Value* t = at(m, "traits")) context.AddMember("traits", Value(*t, al), al);
    Value personas(rapidjson::kObjectType);
    if (const Value* s = at(m, "segment")) personas.AddMember("computation_key", Value(*s, al), al);
    personas.AddMember("computation_class", "audience", al);
    context.AddMember("personas", personas, al);
    d.AddMember("context", context, al);
    return d;
  }
};

}  // namespace

const Connector& segment_connector() {
  static const Segment c;
  return c;
}

}  // namespace cdp::connectors
