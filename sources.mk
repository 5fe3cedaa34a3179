# The one list of sources, read by both builds. PGXS (Makefile) builds
# CORE_SOURCES and PG_SOURCES into cdp.so; CMake (CMakeLists.txt) builds
# CORE_SOURCES into the Postgres-free core library for unit tests, fuzzers and
# microbenchmarks, and TEST_SUPPORT_SOURCES into cdp_test_support. Add a file
# here once, one path per tab-indented line (that is how CMake reads a list).

# Plain C++: must never include a Postgres header (CMake compiles these
# without the server include path, so such an include fails to build).
CORE_SOURCES = \
	src/core/json_util.cpp \
	src/core/timestamp.cpp \
	src/core/message.cpp \
	src/core/json_schema.cpp \
	src/core/tracking_plan.cpp \
	src/core/payload.cpp \
	src/core/gzip.cpp \
	src/core/http_protocol.cpp \
	src/core/sdk_settings.cpp \
	src/core/profile_api.cpp \
	src/core/http_metrics.cpp \
	src/core/http_server.cpp \
	src/core/identity.cpp \
	src/core/traits.cpp \
	src/core/batch_writes.cpp \
	src/core/segments.cpp \
	src/core/computed.cpp \
	src/core/computed_state.cpp \
	src/core/audience.cpp \
	src/core/delivery.cpp \
	src/core/delivery_round.cpp \
	src/core/connectors/connector.cpp \
	src/core/connectors/segment.cpp \
	src/core/connectors/ga4.cpp \
	src/core/connectors/meta_capi.cpp \
	src/core/connectors/mixpanel.cpp \
	src/core/connectors/amplitude.cpp \
	src/core/connectors/braze.cpp

# Glue between Postgres and the core, by pipeline stage over a shared runtime.
PG_SOURCES = \
	src/pg/module.cpp \
	src/pg/runtime/guard.cpp \
	src/pg/runtime/index_scan.cpp \
	src/pg/runtime/shared.cpp \
	src/pg/runtime/spi.cpp \
	src/pg/runtime/worker.cpp \
	src/pg/ingest/plans.cpp \
	src/pg/ingest/store.cpp \
	src/pg/ingest/ingest.cpp \
	src/pg/ingest/http_worker.cpp \
	src/pg/profiles/profile_api.cpp \
	src/pg/profiles/profile_read.cpp \
	src/pg/processor/rules.cpp \
	src/pg/processor/batch.cpp \
	src/pg/processor/identity.cpp \
	src/pg/processor/worker.cpp \
	src/pg/audience/profile_scan.cpp \
	src/pg/audience/audience.cpp \
	src/pg/delivery/queue.cpp \
	src/pg/delivery/destinations.cpp \
	src/pg/delivery/transform.cpp \
	src/pg/delivery/test_destination.cpp \
	src/pg/delivery/worker.cpp \
	src/pg/privacy/suppression.cpp \
	src/pg/privacy/consent.cpp \
	src/pg/privacy/json_mentions.cpp

# Code only benchmarks and tests use (the event generator behind
# build/cdp-eventgen). Plain C++ like the core; never linked into cdp.so.
TEST_SUPPORT_SOURCES = \
	src/testing/event_generator.cpp
