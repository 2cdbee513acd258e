// The verifier refuses this program: it reads the packet without checking its length
// (tests/test_btf_kernel.py: with line_info, the log quotes the line).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("cgroup_skb/egress")
int unchecked_read(struct __sk_buff *skb)
{
	unsigned char *data = (unsigned char *)(long)skb->data;

	return data[20] & 1; /* no bounds check against skb->data_end */
}

char LICENSE[] SEC("license") = "GPL";
