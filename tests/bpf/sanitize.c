// BTF kinds older kernels lack: a FLOAT (5.13) and a DECL_TAG (5.16) in the type of a
// .data variable.  cgbpf loads the object there by sanitising its BTF, as libbpf does.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct sample {
	float scale;
	int weight __attribute__((btf_decl_tag("cgbpf")));
};

struct sample sample = { 1.5f, 2 };

SEC("cgroup_skb/egress")
int weigh(struct __sk_buff *skb)
{
	return sample.weight > 0;
}

char LICENSE[] SEC("license") = "GPL";
