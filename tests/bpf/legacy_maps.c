// A map in the legacy "maps" section (struct bpf_map_def), which libbpf 1.0 dropped.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_map_def {
	unsigned int type, key_size, value_size, max_entries, map_flags;
};

struct legacy_map_def counts SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 1,
};

SEC("cgroup_skb/egress")
int old(struct __sk_buff *skb)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&counts, &key) != 0;
}

char LICENSE[] SEC("license") = "GPL";
