// cdp-eventgen: prints deterministic Segment Tracking-API messages, one JSON
// text per line, for benchmarks, load tests and end-to-end tests.
//
//   cdp-eventgen [--seed S] [--count N] [--batch B] [--users U]
//
// Without --batch: N lines, one message each. With --batch B: ceil(N/B) lines,
// each a {"batch":[...]} envelope of B messages (the last may hold fewer).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "testing/event_generator.hpp"

namespace {

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: cdp-eventgen [--seed S] [--count N] [--batch B] [--users U]\n");
  std::exit(2);
}

// Parses a whole decimal argument; anything else is a usage error.
uint64_t number(const char* text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-') usage();
  return v;
}

void put_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

int main(int argc, char** argv) {
  cdp::GeneratorOptions opts;
  uint64_t count = 1000, batch = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    const char* flag = argv[i];
    uint64_t v = number(argv[++i]);
    if (!std::strcmp(flag, "--seed")) opts.seed = v;
    else if (!std::strcmp(flag, "--count")) count = v;
    else if (!std::strcmp(flag, "--batch")) batch = v;
    else if (!std::strcmp(flag, "--users") && v > 0) opts.users = v;
    else usage();
  }
  cdp::EventGenerator gen(opts);
  if (batch == 0) {
    while (gen.count() < count) put_line(gen.next());
  } else {
    while (gen.count() < count) put_line(gen.batch(std::min(batch, count - gen.count())));
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
