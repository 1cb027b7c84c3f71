// Why a packet was dropped or a flow refused, in C++: the specification's list
// (syngate/spec/drop_reasons.h) as an enum class, with its labels. The SYN decision's verdicts, the
// engine's counters, the metrics and the fast path's per-reason counters all use these values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "syngate/spec/drop_reasons.h"

namespace syngate {

// The same values as enum sg_reason (None is SG_OK), so an sg_reason converts by value.
enum class DropReason : uint8_t {
  None = SG_OK,
#define SG_REASON_CXX_(e, cxx, label, kind) cxx = SG_R_##e,
  SG_DROP_REASONS(SG_REASON_CXX_)
#undef SG_REASON_CXX_
  Count_ = SG_R_COUNT_
};

inline constexpr size_t kDropReasonCount = SG_R_COUNT_;

constexpr DropReason drop_reason(sg_reason r) noexcept { return static_cast<DropReason>(r); }
constexpr size_t reason_index(DropReason r) noexcept { return static_cast<size_t>(r); }

// The SYN decision's reasons are the first ones, 1 .. kSynDropReasonEnd - 1 (the XDP program
// drops for these).
inline constexpr size_t kSynDropReasonEnd = SG_R_SYN_COUNT_;
constexpr bool is_syn_decision_reason(DropReason r) noexcept {
  return r != DropReason::None && reason_index(r) < kSynDropReasonEnd;
}

// Metrics label values, indexed by reason ("none" for None).
inline constexpr std::array<std::string_view, kDropReasonCount> kDropReasonLabels = {
    "none",
#define SG_REASON_LABEL_(e, cxx, label, kind) label,
    SG_DROP_REASONS(SG_REASON_LABEL_)
#undef SG_REASON_LABEL_
};

// Reasons that count normal work, not trouble (syn_answered, backend_synack_consumed).
inline constexpr std::array<bool, kDropReasonCount> kDropReasonIsWork = {
    false,
#define SG_REASON_WORK_(e, cxx, label, kind) SG_REASON_KIND_##kind == SG_REASON_KIND_WORK,
    SG_DROP_REASONS(SG_REASON_WORK_)
#undef SG_REASON_WORK_
};

// The label (metrics, logs); "unknown" past the list.
constexpr std::string_view to_string(DropReason r) noexcept {
  return reason_index(r) < kDropReasonCount ? kDropReasonLabels[reason_index(r)] : std::string_view("unknown");
}
constexpr bool is_normal_work(DropReason r) noexcept {
  return reason_index(r) < kDropReasonCount && kDropReasonIsWork[reason_index(r)];
}
// The reason a label names (as a scrape of the metrics shows it).
constexpr std::optional<DropReason> drop_reason_labelled(std::string_view label) noexcept {
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    if (kDropReasonLabels[i] == label) return static_cast<DropReason>(i);
  }
  return std::nullopt;
}

}  // namespace syngate
