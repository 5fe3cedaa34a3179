// The official JSON-Schema-Test-Suite (Debian package json-schema-test-suite),
// its draft-07 files, against the tracking-plan validator (core/json_schema.hpp).
// Every case of every file below runs, schemas and data parsed as ingestion
// parses them (exact numbers). A group that needs what the validator refuses
// (remote references, $id-based resolution, keywords it does not know) is in
// kRefused with its reason, and the test checks that compile() refuses it:
// a skip here is a documented refusal, never silence. A missing suite folder
// fails the test.
#include <dirent.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/json_schema.hpp"
#include "core/json_util.hpp"

namespace cdp {
namespace {

const std::string kSuite = "/usr/share/json-schema-test-suite/tests/draft7/";

// The files run: every draft-07 keyword file, and the optional formats cdp supports.
const char* kFiles[] = {
    "additionalItems.json", "additionalProperties.json", "allOf.json", "anyOf.json", "boolean_schema.json",
    "const.json", "contains.json", "default.json", "definitions.json", "dependencies.json", "enum.json",
    "exclusiveMaximum.json", "exclusiveMinimum.json", "if-then-else.json", "items.json", "maxItems.json",
    "maxLength.json", "maxProperties.json", "maximum.json", "minItems.json", "minLength.json",
    "minProperties.json", "minimum.json", "multipleOf.json", "not.json", "oneOf.json", "pattern.json",
    "patternProperties.json", "properties.json", "propertyNames.json", "ref.json", "refRemote.json",
    "required.json", "type.json", "uniqueItems.json", "optional/bignum.json", "optional/zeroTerminatedFloats.json",
    "optional/format/date-time.json", "optional/format/date.json", "optional/format/time.json",
    "optional/format/email.json", "optional/format/uri.json", "optional/format/ipv4.json",
    "optional/format/ipv6.json", "optional/format/hostname.json",
};

// file/group description -> why compile() refuses its schema.
const std::map<std::string, std::string> kRefused = {
    {"definitions.json/valid definition", "a remote $ref (the draft-07 meta-schema)"},
    {"definitions.json/invalid definition", "a remote $ref (the draft-07 meta-schema)"},
    {"ref.json/escaped pointer ref", "its $ref targets are members of the root that are not keywords"},
    {"ref.json/remote ref, containing refs itself", "a remote $ref (the draft-07 meta-schema)"},
    {"ref.json/Recursive references between schemas", "resolution by $id, below the root"},
    {"refRemote.json/*", "remote references and $id below the root"},
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool refused_expected(const std::string& file, const std::string& group, std::string* why) {
  for (const std::string& key : {file + "/" + group, file + "/*"})
    if (auto it = kRefused.find(key); it != kRefused.end()) return *why = it->second, true;
  return false;
}

TEST(JsonSchemaSuite, TheSuiteIsInstalled) {
  DIR* d = opendir(kSuite.c_str());
  ASSERT_NE(d, nullptr) << kSuite << " is missing: apt-get install json-schema-test-suite (./dev deps does)";
  closedir(d);
}

class SuiteFile : public ::testing::TestWithParam<const char*> {};

TEST_P(SuiteFile, EveryCasePassesOrItsSchemaIsRefusedAsDocumented) {
  const std::string file = GetParam();
  std::string text = read_file(kSuite + file);
  ASSERT_FALSE(text.empty()) << "cannot read " << kSuite + file;
  rapidjson::Document doc;
  ASSERT_FALSE(parse_json(doc, text, Numbers::Exact).IsError()) << file << " is not JSON";
  ASSERT_TRUE(doc.IsArray());
  int passed = 0, refused = 0;
  std::vector<std::pair<std::string, std::string>> refused_groups;
  for (auto& group : doc.GetArray()) {
    std::string desc = group["description"].GetString();
    std::string why;
    bool refusal_expected = refused_expected(file, desc, &why);
    std::shared_ptr<const schema::Schema> s;
    try {
      s = schema::Schema::compile(group["schema"]);
    } catch (const Error& e) {
      EXPECT_TRUE(refusal_expected) << file << " / " << desc << ": refused, but it should compile: " << e.what();
      refused++;
      refused_groups.emplace_back(desc, e.what());
      continue;
    }
    if (refusal_expected) {
      // Listed as refused but it compiled: fine only if every case then passes; say so.
      ADD_FAILURE() << file << " / " << desc << " is listed as refused (" << why << ") but compiles: remove it from kRefused";
    }
    for (auto& t : group["tests"].GetArray()) {
      bool want = t["valid"].GetBool();
      std::vector<schema::Violation> found;
      bool got = s->validate(t["data"], &found);
      EXPECT_EQ(got, want) << file << " / " << desc << " / " << t["description"].GetString()
                           << (found.empty() ? "" : ": " + found[0].keyword + " at \"" + found[0].instance_path + "\": " + found[0].message);
      EXPECT_EQ(got, found.empty()) << file << " / " << desc << ": the answer and the violations disagree";
      EXPECT_EQ(s->validate(t["data"]), want) << file << " / " << desc << ": quiet and full runs disagree";
      passed += got == want;
    }
  }
  EXPECT_GT(passed + refused, 0) << file << " holds no case";
  std::printf("    %s: %d cases passed, %d groups refused as documented\n", file.c_str(), passed, refused);
  for (auto& [key, why] : refused_groups) std::printf("      refused: %s (%s)\n", key.c_str(), why.c_str());
}

INSTANTIATE_TEST_SUITE_P(Draft7, SuiteFile, ::testing::ValuesIn(kFiles), [](const auto& info) {
  std::string name = info.param;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name.substr(0, name.size() - 5);  // without "_json"
});

}  // namespace
}  // namespace cdp
