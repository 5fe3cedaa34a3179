// Errors the core raises. The glue maps each kind to a SQLSTATE (src/pg) or
// an HTTP status (the HTTP worker); the core itself knows neither.
#pragma once
#include <stdexcept>
#include <string>

namespace cdp {

enum class ErrorKind {
  InvalidInput,  // a field breaks a rule: 22023 / HTTP 400
  MalformedJson, // the text is not JSON: 22P02 / HTTP 400
  TooLarge,      // a size or count limit: 54000 / HTTP 413
  Unauthorized,  // unknown or revoked write key: 28000 / HTTP 401
  Internal,      // a bug: XX000 / HTTP 500
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string field, const std::string& rule)
      : std::runtime_error(field.empty() ? rule : field + ": " + rule),
        kind_(kind),
        field_(std::move(field)),
        rule_(rule) {}
  ErrorKind kind() const noexcept { return kind_; }
  const std::string& field() const noexcept { return field_; }
  // The rule alone: what() without its "field: " prefix. Kept apart rather
  // than cut out of what(), which stops at a NUL a field name may hold.
  const std::string& rule() const noexcept { return rule_; }
  // The same error seen from one level up: field "and[0].op" under "rule"
  // becomes "rule.and[0].op"; an empty field becomes `prefix`.
  Error under(const std::string& prefix) const {
    return Error(kind_, field_.empty() ? prefix : prefix + "." + field_, rule());
  }
  // The same rule, reported on `field` instead.
  Error on(std::string field) const { return Error(kind_, std::move(field), rule()); }

 private:
  ErrorKind kind_;
  std::string field_;
  std::string rule_;
};

}  // namespace cdp
