// A map of the same name as pinned.c's, pinned by name, of another value size: it cannot
// reuse that pin.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared SEC(".maps");

SEC("cgroup_skb/egress")
int count_other(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u32 *n = bpf_map_lookup_elem(&shared, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
