// Global data and subprograms: counters in .bss, an initialised .data, a const volatile
// .rodata verdict set before load, a BTF-defined HASH map, a static and a global
// subprogram in .text, and an ingress and an egress program sharing them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} sizes SEC(".maps");

__u64 egress_packets;		/* .bss */
__u64 ingress_packets;		/* .bss */
__u64 weighed;			/* .bss: the sum of what weigh() returned */
__u32 step = 3;			/* .data: added to weighed per packet */
char tag[8] = "cgbpf";		/* .data: not an integer: bytes */
const volatile __u32 allow = 1;	/* .rodata: the egress verdict */
const volatile __s32 bias = -1;	/* .rodata: a signed constant */

/* A static subprogram: counted per size in the HASH map. */
static __noinline void record(__u32 len)
{
	__u64 one = 1, *n = bpf_map_lookup_elem(&sizes, &len);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&sizes, &len, &one, BPF_NOEXIST);
}

/* A global subprogram: verified on its own (it only sees scalars). */
__noinline int weigh(int len)
{
	return len > 0 ? (int)step + bias + 1 : 0;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&egress_packets, 1);
	__sync_fetch_and_add(&weighed, weigh(skb->len));
	record(skb->len);
	return allow;
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&ingress_packets, 1);
	record(skb->len);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
