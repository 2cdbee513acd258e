// A program the verifier refuses: it dereferences a map lookup without checking it for
// NULL.  With line_info loaded, the verifier's log quotes this source line.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("cgroup_skb/egress")
int unchecked(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *count = bpf_map_lookup_elem(&counts, &key);

	return *count > 0; /* no NULL check: refused */
}

char LICENSE[] SEC("license") = "GPL";
