// Request bodies compressed with gzip or deflate (RudderStack SDKs gzip by default).
#pragma once
#include <string>
#include <string_view>

namespace cdp {

// Inflates a gzip or zlib stream. Throws cdp::Error: TooLarge when the result
// would pass max_bytes (a zip bomb stops there), InvalidInput when corrupt.
std::string inflate_body(std::string_view compressed, size_t max_bytes);

// For tests and clients: gzip-compresses a string.
std::string gzip_compress(std::string_view plain);

}  // namespace cdp
