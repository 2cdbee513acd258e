// One program per cgroup section name libbpf knows, each allowing everything: the
// section table (program type, expected attach type) checked by loading them.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *ctx)
{
	return 1;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *ctx)
{
	return 1;
}

SEC("cgroup/skb")
int skb_any(struct __sk_buff *ctx)
{
	return 1;
}

SEC("cgroup/sock")
int sock(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/post_bind4")
int post_bind4(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/post_bind6")
int post_bind6(struct bpf_sock *ctx)
{
	return 1;
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect_unix")
int connect_unix(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/sendmsg_unix")
int sendmsg_unix(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/recvmsg_unix")
int recvmsg_unix(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getpeername4")
int getpeername4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getpeername6")
int getpeername6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getpeername_unix")
int getpeername_unix(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getsockname4")
int getsockname4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getsockname6")
int getsockname6(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/getsockname_unix")
int getsockname_unix(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/dev")
int dev(struct bpf_cgroup_dev_ctx *ctx)
{
	return 1;
}

SEC("cgroup/sysctl")
int sysctl(struct bpf_sysctl *ctx)
{
	return 1;
}

SEC("cgroup/getsockopt")
int getsockopt(struct bpf_sockopt *ctx)
{
	return 1;
}

SEC("cgroup/setsockopt")
int setsockopt(struct bpf_sockopt *ctx)
{
	return 1;
}

SEC("sockops")
int sock_ops(struct bpf_sock_ops *ctx)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
