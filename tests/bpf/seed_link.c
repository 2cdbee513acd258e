// The seed's own programs (SEED-TEST.md §3.1), in our words: two cgroup_skb/egress
// programs that count the packets they see into two global counters in .bss and let
// every packet through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int calls;
int alt_calls;

SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&calls, 1);
	return 1;
}

SEC("cgroup_skb/egress")
int egress_alt(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&alt_calls, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
