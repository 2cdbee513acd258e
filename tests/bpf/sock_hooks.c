// Socket hooks: cgroup/sock_create (socket()), cgroup/connect4 (connect()) and
// cgroup/sysctl (reading /proc/sys), each counting and refusing what a .data variable
// names, so that a test changes the verdict through coll.globals after load.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

__u32 created, connects, sysctls;	/* .bss counters */
__u16 last_port;			/* .bss: host order */
__s32 deny_type = -1;			/* .data: socket type to refuse (SOCK_DGRAM 2...) */
__u32 deny_port;			/* .data: connect port to refuse (0: none) */
__u32 deny_sysctl;			/* .data: refuse sysctl reads when non-zero */

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	__sync_fetch_and_add(&created, 1);
	return (__s32)sk->type == deny_type ? 0 : 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);

	__sync_fetch_and_add(&connects, 1);
	last_port = port;
	return deny_port && port == deny_port ? 0 : 1;
}

SEC("cgroup/sysctl")
int sysctl(struct bpf_sysctl *ctx)
{
	__sync_fetch_and_add(&sysctls, 1);
	return deny_sysctl ? 0 : 1;
}

char LICENSE[] SEC("license") = "GPL";
