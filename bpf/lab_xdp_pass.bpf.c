// The lab's stand-in for the far end of a wire. A veth delivers the frames its peer sends with
// native XDP_TX only when it runs an XDP program itself (the kernel wakes its NAPI only then);
// a NIC has no such condition. bench/lab/run.sh attaches this to the client's and the
// attacker's ends while it measures syngate in native XDP mode, and removes it afterwards.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int lab_pass(struct xdp_md *ctx) {
  (void)ctx;
  return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
