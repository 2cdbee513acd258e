// BTF-defined maps of every shape libbpf's parse_btf_map_def reads: __uint, __type,
// __array of inner maps and of programs; and static (local) globals.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, __u64);
};

struct inner first SEC(".maps"), second SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, int);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { &first, &second },
};

int tail(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int (struct __sk_buff *));
} jumps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(numa_node, 0);
	__type(key, struct bpf_sock_tuple);
	__type(value, const volatile int);
} tuples SEC(".maps");

static __u32 seen;
static volatile const __u32 mask = 3;

SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
	int zero = 0;
	__u64 *v = bpf_map_lookup_elem(&first, &zero);

	bpf_tail_call(skb, &jumps, 0);
	seen += skb->len & mask;
	return v ? 1 : seen & 1;
}

char LICENSE[] SEC("license") = "GPL";
