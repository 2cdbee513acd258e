// CO-RE relocations (.BTF.ext core_relo): a field offset, a field's existence, a type's
// size and an enum value, against a local struct marked preserve_access_index.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct sock_like {
	int family;
	int state;
	long bytes;
} __attribute__((preserve_access_index));

enum sk_state { SK_OPEN = 1, SK_CLOSED = 7 };

SEC("cgroup_skb/egress")
int core_egress(struct __sk_buff *skb)
{
	struct sock_like *sk = (void *)(long)skb->data;
	int state = BPF_CORE_READ(sk, state);

	if (!bpf_core_field_exists(sk->bytes))
		return 0;
	return state + bpf_core_type_size(struct sock_like) + bpf_core_enum_value(enum sk_state, SK_CLOSED);
}

char LICENSE[] SEC("license") = "GPL";
