// The flood lab's sink for the generator alone: bench/lab/run.sh sends the same forged-ACK flood
// into a veth inside the attacker's namespace whose far end runs this, so the download it measures
// meanwhile pays for the generator (and a veth's receive) but for no defence at all. The
// download's speed then, against its speed under the real flood, is what the defence itself costs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int lab_drop(struct xdp_md *ctx) {
  (void)ctx;
  return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
