// libFuzzer target: request-body decompression (core/gzip.hpp). The first
// byte picks a limit, the rest is a "compressed" body:
// - inflate_body either returns at most the limit or throws cdp::Error
//   (InvalidInput for a corrupt or truncated stream, TooLarge past the limit);
// - the rest as plain text round-trips through gzip_compress and inflate_body,
//   at the exact limit; one byte under it is TooLarge; the compressed text cut
//   short by one byte is refused.
// Anything else aborts. Build and run: docs/testing.md, "Fuzzing".
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/gzip.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view text) {
  std::fprintf(stderr, "invariant broken: %s: [%.*s]\n", what, static_cast<int>(text.size()), text.data());
  std::abort();
}

// Inflates into *out and returns -1, or the kind of the error it threw.
int inflate_kind(std::string_view in, size_t limit, std::string* out) {
  try {
    *out = cdp::inflate_body(in, limit);
    return -1;
  } catch (const cdp::Error& e) {
    if (e.field() != "body" || e.rule().empty()) fail("error not on body", e.what());
    return static_cast<int>(e.kind());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Limits from 0 bytes to 1 MiB: small ones meet chunk edges (16 KiB).
  static const size_t kLimits[] = {0, 1, 100, 16383, 16384, 16385, 65536, 1 << 20};
  size_t limit = kLimits[data[0] % 8];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string out;
  int kind = inflate_kind(in, limit, &out);
  if (kind < 0 && out.size() > limit) fail("inflated past the limit", in);
  if (kind >= 0 && kind != static_cast<int>(cdp::ErrorKind::InvalidInput) &&
      kind != static_cast<int>(cdp::ErrorKind::TooLarge))
    fail("unexpected error kind", in);

  std::string packed = cdp::gzip_compress(in);
  if (inflate_kind(packed, in.size(), &out) != -1 || out != in) fail("gzip round trip", in);
  if (!in.empty() && inflate_kind(packed, in.size() - 1, &out) != static_cast<int>(cdp::ErrorKind::TooLarge))
    fail("one byte under the limit is not TooLarge", in);
  std::string_view cut(packed.data(), packed.size() - 1);
  if (inflate_kind(cut, in.size() + 1, &out) != static_cast<int>(cdp::ErrorKind::InvalidInput))
    fail("a truncated stream is not refused", in);
  return 0;
}
