// Static variables (relocated against their section's symbol, at an offset given in the
// instruction) and bpf_printk (its format string a function-local static in .rodata).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __u64 seen;		/* .bss */

SEC("cgroup_skb/egress")
int traced(struct __sk_buff *skb)
{
	static __u32 calls;	/* .bss too: "traced.calls" */

	__sync_fetch_and_add(&seen, skb->len);
	__sync_fetch_and_add(&calls, 1);
	bpf_printk("cgbpf: packet of %u bytes", skb->len);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
