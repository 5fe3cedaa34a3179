# PGXS build: make, make install, make installcheck.
# Sources come from sources.mk, shared with CMakeLists.txt.
include sources.mk

EXTENSION = cdp
MODULE_big = cdp
OBJS = $(CORE_SOURCES:.cpp=.o) $(PG_SOURCES:.cpp=.o)
DATA = $(wildcard sql/cdp--*.sql)

# pg_regress suites: sql/<name>.sql against expected/<name>.out, in this order.
REGRESS = schema sources ingest validation dedup typed partitions identity segments computed audience_repair privacy
REGRESS_OPTS = --load-extension=cdp
# Isolation specs (specs/<name>.spec): concurrent sessions racing.
ISOLATION = processor_order

PG_CONFIG ?= pg_config
# C++20; -Werror unless CDP_WERROR=0. No LLVM bitcode: it would need clang to
# compile C++20 for the JIT, which buys nothing for this extension.
CDP_WERROR ?= 1
PG_CXXFLAGS = -MMD -MP -std=c++20 -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-register -Isrc $(if $(filter 1,$(CDP_WERROR)),-Werror)
PG_CPPFLAGS = -Isrc
SHLIB_LINK = -lstdc++ -lmicrohttpd -lcurl -lz -lcrypto -lre2

override with_llvm = no
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Rebuild an object when a header it includes changes (PGXS does not track it:
# a stale object against a changed class layout crashes at run time). -MMD -MP
# are in PG_CXXFLAGS above.
-include $(OBJS:.o=.d)
EXTRA_CLEAN = $(OBJS:.o=.d)
