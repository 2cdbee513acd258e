// A CO-RE relocation (preserve_access_index): cgbpf refuses it, naming it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct skb_view {
	__u32 len;
	__u32 pkt_type;
} __attribute__((preserve_access_index));

SEC("cgroup_skb/egress")
int relocated(struct __sk_buff *skb)
{
	return ((struct skb_view *)skb)->pkt_type < 8;
}

char LICENSE[] SEC("license") = "GPL";
