# PGXS build: make, make install, make installcheck.
# Sources come from sources.mk, shared with CMakeLists.txt.
include sources.mk

EXTENSION = cdp
MODULE_big = cdp
OBJS = $(CORE_SOURCES:.cpp=.o) $(PG_SOURCES:.cpp=.o)
# 0.1.0 is frozen; each later version adds an upgrade script from the one
# before. The current version (cdp.control's default_version) installs fresh
# from sql/cdp--$(EXTVERSION).sql, built from the pieces sql/install/*.sql:
# a schema change edits its piece and appends to the next upgrade script, and
# test/e2e/upgrade.sh checks that a fresh and an upgraded install are the same.
EXTVERSION := $(shell sed -nE "s/^default_version = '([^']+)'/\1/p" cdp.control)
ifeq ($(EXTVERSION),)
$(error cdp.control has no default_version)
endif
INSTALL_PIECES := $(sort $(wildcard sql/install/*.sql))
DATA = sql/cdp--0.1.0.sql $(wildcard sql/cdp--*--*.sql)
DATA_built = sql/cdp--$(EXTVERSION).sql

# pg_regress suites: test/regress/sql/<name>.sql against
# test/regress/expected/<name>.out, in this order.
REGRESS = schema sources ingest validation dedup typed partitions identity segments computed audience_repair privacy poison profile_api tracking_plans
REGRESS_OPTS = --inputdir=test/regress --load-extension=cdp
# Isolation specs (test/regress/specs/<name>.spec): concurrent sessions racing.
ISOLATION = processor_order
ISOLATION_OPTS = --inputdir=test/regress

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

# The fresh install script: the pieces in name order, a blank line between.
sql/cdp--$(EXTVERSION).sql: $(INSTALL_PIECES) cdp.control
	for f in $(INSTALL_PIECES); do cat "$$f" && echo || exit 1; done > $@.tmp && mv $@.tmp $@
