// Programs of libbpf sections that are not cgroup hooks: cgbpf loads them, and refuses
// to link them to a cgroup.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int filter(struct __sk_buff *skb)
{
	return 0;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int classify(struct __sk_buff *skb)
{
	return 0;
}

SEC("kprobe/do_nanosleep")
int probe(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tracepoint(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
