// A JSON Schema (draft-07) validator for tracking plans: compiled once per
// plan version, then run against every message of the sources the plan is
// attached to, in the HTTP worker's request threads and in cdp.ingest.
// Postgres-free (the core). Regexes (pattern, patternProperties) run on RE2:
// linear time whatever the pattern or the value.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

namespace cdp::schema {

// One broken rule.
struct Violation {
  std::string keyword;        // the draft-07 keyword: "required", "type", "additionalProperties", "enum", ...
  std::string instance_path;  // where in the instance, as a dotted path: "properties.items[2].price";
                              // "" for the root; a key that is not [A-Za-z_$][A-Za-z0-9_$]* is
                              // written ["like this"] (JSON-escaped)
  std::string schema_path;    // the keyword in the schema, a JSON Pointer fragment: "#/properties/properties/required"
  std::string message;        // what the rule asks, for people: "must be number", "\"revenue\" is required",
                              // "must be one of the enum values", "must not have property \"x\""
  std::string value_type;     // the JSON type of the offending value: "string", "integer" (a number with no
                              // fractional part), "number", "object", "array", "boolean", "null"; for
                              // required: "" (the value is missing)
};

class Schema {
 public:
  // Compiles a draft-07 schema. Throws cdp::Error(ErrorKind::InvalidInput, field, rule) for a schema
  // that is not valid draft-07, uses an unsupported keyword or format, a pattern RE2 cannot run, a
  // $ref that is not local or points nowhere, or a $ref cycle that would loop without consuming the
  // instance; `field` is the JSON path of the offending keyword below `where` ("events[\"Order Completed\"].properties.x.pattern").
  static std::shared_ptr<const Schema> compile(const rapidjson::Value& schema, const std::string& where = "");

  // True when `instance` satisfies the schema. Appends the violations found to `out` (if not null),
  // at most `max_violations` in total; it stops looking once it has that many.
  bool validate(const rapidjson::Value& instance, std::vector<Violation>* out = nullptr,
                size_t max_violations = 32) const;

  // Whether the root's properties[member] schema (after following $refs) declares `key`: names it
  // under "properties" or matches one of its "patternProperties". Used to tell planned from
  // unplanned properties ("properties" of a track, "traits" of an identify). False when the root
  // does not describe `member` at all.
  bool declares(std::string_view member, std::string_view key) const;

  ~Schema();
  struct Impl;

 private:
  explicit Schema(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cdp::schema
