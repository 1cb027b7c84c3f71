/* Compiles the drop vocabulary as plain C (the BPF program's language), so a C++-only construct
 * in the lists (drop reasons, XDP outcomes) breaks the build here and not only in the BPF object; and hands C's view of it to
 * drop_reasons_test.cpp. */
#include "syngate/bpf/xdp_abi.h"
#include "syngate/spec/drop_reasons.h"

int drop_reasons_count_from_c(void);
int drop_reasons_syn_count_from_c(void);
const char* drop_reason_label_from_c(int r);
int drop_reason_is_work_from_c(int r);
int xdp_outcome_count_from_c(void);

int drop_reasons_count_from_c(void) { return SG_R_COUNT_; }
int drop_reasons_syn_count_from_c(void) { return SG_R_SYN_COUNT_; }
const char* drop_reason_label_from_c(int r) { return sg_reason_label((enum sg_reason)r); }
int drop_reason_is_work_from_c(int r) { return sg_reason_kind_of((enum sg_reason)r) == SG_REASON_KIND_WORK; }

/* The XDP program's outcome counters, as the BPF C sees them. */
#define OUTCOME_ONE_(e, label, reason) 1 +
int xdp_outcome_count_from_c(void) { return SG_XDP_OUTCOMES(OUTCOME_ONE_) 0; }
