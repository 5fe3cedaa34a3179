#include "core/json_util.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdp {

int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest) deepest = depth;
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
  return deepest;
}

std::string to_json(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buf);
  v.Accept(writer);
  return std::string(buf.GetString(), buf.GetSize());
}

static bool has_nul(const rapidjson::Value& s) {
  return std::string_view(s.GetString(), s.GetStringLength()).find('\0') != std::string_view::npos;
}

std::optional<std::string> find_nul(const rapidjson::Value& v, const std::string& path) {
  if (v.IsString()) return has_nul(v) ? std::optional(path) : std::nullopt;
  if (v.IsObject()) {
    for (auto& m : v.GetObject()) {
      std::string key(m.name.GetString(), m.name.GetStringLength());
      bool bad = has_nul(m.name);
      for (size_t i = 0; bad && i < key.size(); i++)
        if (key[i] == '\0') key.replace(i, 1, "\\u0000");
      std::string sub = path.empty() ? key : path + "." + key;
      if (bad) return sub;
      if (auto p = find_nul(m.value, sub)) return p;
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); i++)
      if (auto p = find_nul(v[i], path + "[" + std::to_string(i) + "]")) return p;
  }
  return std::nullopt;
}

// Input is validated UTF-8, so the only bytes ED A0..ED BF (a surrogate's
// encoding) come from a decoded \u escape.
static bool surrogate_bytes(const rapidjson::Value& s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.GetString());
  for (rapidjson::SizeType i = 0; i + 1 < s.GetStringLength(); i++)
    if (p[i] == 0xED && p[i + 1] >= 0xA0) return true;
  return false;
}

bool has_lone_surrogate(const rapidjson::Value& v) {
  if (v.IsString()) return surrogate_bytes(v);
  if (v.IsObject()) {
    for (auto& m : v.GetObject())
      if (surrogate_bytes(m.name) || has_lone_surrogate(m.value)) return true;
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray())
      if (has_lone_surrogate(e)) return true;
  }
  return false;
}

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') return false;
  return true;
}

}  // namespace cdp
