// Every BTF kind clang 14 emits, BTF-defined maps, globals in .bss/.data/.rodata.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __ptr_tag(x) __attribute__((btf_type_tag(x)))

enum colour { RED, GREEN = 7, BLUE = -3 };

struct point {
	int x;
	unsigned int flags : 3;
	unsigned int mode : 5;
	const volatile char *name;
	long pair[2];
	union {
		__u64 raw;
		float ratio;
	} u;
	enum colour colour;
} __tag("x");

typedef struct point point_t;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, 4);
	__uint(value_size, 16);
	__uint(max_entries, 2);
	__uint(map_flags, BPF_F_RDONLY_PROG);
} sized SEC(".maps");

__u64 packets = 0;
__u32 drops = 0;
int verdict = 1;
char greeting[12] = "hello";
volatile const __u32 limit = 100;
const char tag[5] = "abcd";
double scale = 1.5;
point_t origin;
int __ptr_tag("y") *tagged_ptr;
int *__restrict restricted;

static __attribute__((noinline)) int weigh(struct point *p __tag("arg"))
{
	return p->x + p->mode + (int)p->u.raw;
}

SEC("cgroup_skb/egress")
int count_egress(struct __sk_buff *skb)
{
	__u32 key = skb->len & 1;
	__u64 *n = bpf_map_lookup_elem(&counts, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	packets += 1;
	if (skb->len > limit)
		drops++;
	return verdict + weigh(&origin) + (tagged_ptr != 0);
}

SEC("cgroup_skb/ingress")
int count_ingress(struct __sk_buff *skb)
{
	return greeting[0] == tag[0];
}

char LICENSE[] SEC("license") = "GPL";
