// Tracking plans as ingestion uses them: the version attached to a source,
// compiled once per plan version and kept for the backend's life (versions
// never change; a new one is a new key). The caller holds an SPI connection.
#pragma once
#include <memory>
#include <unordered_map>

#include "core/tracking_plan.hpp"

namespace cdp::pg {

// The plan attached to one source now, or nullptr (cdp.ingest).
std::shared_ptr<const plans::Attached> attached_plan(int source_id);

// Every source's attached plan (the HTTP worker's key snapshot).
std::unordered_map<int, std::shared_ptr<const plans::Attached>> attached_plans();

}  // namespace cdp::pg
