// An lsm_cgroup program: recognised, but cgbpf cannot load it yet (it needs the hook's
// vmlinux BTF id).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("lsm_cgroup/socket_bind")
int bind_hook(void *ctx)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
