/* What `cgroup tree` costs in C: walk a cgroup2 directory tree and, for each cgroup,
 * open it and BPF_PROG_QUERY every cgroup attach type, then name each program
 * (PROG_GET_FD_BY_ID + OBJ_GET_INFO_BY_FD), printing like `bpftool cgroup tree`:
 *
 *     CgroupPath
 *     ID       AttachType      AttachFlags     Name
 *     /sys/fs/cgroup/x
 *         12       cgroup_inet_egress multi       ok
 *
 * Usage: cgroup_tree ROOT.  Built by bench/cgroup_tree.py with gcc -O2. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The UNIX types (6.7) by number: older <linux/bpf.h> lack them. */
static const struct { int type; const char *name; } TYPES[] = {
	{BPF_CGROUP_INET_INGRESS, "cgroup_inet_ingress"},
	{BPF_CGROUP_INET_EGRESS, "cgroup_inet_egress"},
	{BPF_CGROUP_INET_SOCK_CREATE, "cgroup_inet_sock_create"},
	{BPF_CGROUP_INET4_POST_BIND, "cgroup_inet4_post_bind"},
	{BPF_CGROUP_INET6_POST_BIND, "cgroup_inet6_post_bind"},
	{BPF_CGROUP_INET_SOCK_RELEASE, "cgroup_inet_sock_release"},
	{BPF_CGROUP_SOCK_OPS, "cgroup_sock_ops"},
	{BPF_CGROUP_DEVICE, "cgroup_device"},
	{BPF_CGROUP_SYSCTL, "cgroup_sysctl"},
	{BPF_CGROUP_GETSOCKOPT, "cgroup_getsockopt"},
	{BPF_CGROUP_SETSOCKOPT, "cgroup_setsockopt"},
	{BPF_LSM_CGROUP, "lsm_cgroup"},
	{BPF_CGROUP_INET4_BIND, "cgroup_inet4_bind"},
	{BPF_CGROUP_INET6_BIND, "cgroup_inet6_bind"},
	{BPF_CGROUP_INET4_CONNECT, "cgroup_inet4_connect"},
	{BPF_CGROUP_INET6_CONNECT, "cgroup_inet6_connect"},
	{BPF_CGROUP_UDP4_SENDMSG, "cgroup_udp4_sendmsg"},
	{BPF_CGROUP_UDP6_SENDMSG, "cgroup_udp6_sendmsg"},
	{BPF_CGROUP_UDP4_RECVMSG, "cgroup_udp4_recvmsg"},
	{BPF_CGROUP_UDP6_RECVMSG, "cgroup_udp6_recvmsg"},
	{BPF_CGROUP_INET4_GETPEERNAME, "cgroup_inet4_getpeername"},
	{BPF_CGROUP_INET6_GETPEERNAME, "cgroup_inet6_getpeername"},
	{BPF_CGROUP_INET4_GETSOCKNAME, "cgroup_inet4_getsockname"},
	{BPF_CGROUP_INET6_GETSOCKNAME, "cgroup_inet6_getsockname"},
	{49, "cgroup_unix_connect"},
	{50, "cgroup_unix_sendmsg"},
	{51, "cgroup_unix_recvmsg"},
	{52, "cgroup_unix_getpeername"},
	{53, "cgroup_unix_getsockname"},
};
#define NTYPES (sizeof(TYPES) / sizeof(TYPES[0]))

static int supported[NTYPES]; /* -1 unknown, 0 EINVAL at the root, 1 ok */

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static void prog_name(__u32 id, char *out)
{
	union bpf_attr attr;
	struct bpf_prog_info info;
	int fd;

	out[0] = 0;
	memset(&attr, 0, sizeof(attr));
	attr.prog_id = id;
	fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
	if (fd < 0)
		return;
	memset(&info, 0, sizeof(info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(info);
	attr.info.info = (__u64)(unsigned long)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) == 0)
		memcpy(out, info.name, sizeof(info.name));
	close(fd);
}

static void show(const char *path, int fd)
{
	__u32 ids[1024];
	int printed = 0;

	for (size_t t = 0; t < NTYPES; t++) {
		union bpf_attr attr;

		if (supported[t] == 0)
			continue;
		memset(&attr, 0, sizeof(attr));
		attr.query.target_fd = fd;
		attr.query.attach_type = TYPES[t].type;
		attr.query.prog_ids = (__u64)(unsigned long)ids;
		attr.query.prog_cnt = 1024;
		if (sys_bpf(BPF_PROG_QUERY, &attr) < 0) {
			if (errno == EINVAL && supported[t] < 0)
				supported[t] = 0;
			continue;
		}
		supported[t] = 1;
		for (__u32 i = 0; i < attr.query.prog_cnt; i++) {
			char name[BPF_OBJ_NAME_LEN + 1] = "";
			__u32 f = attr.query.attach_flags;

			if (!printed++)
				printf("%s\n", path);
			prog_name(ids[i], name);
			printf("    %-8u %-15s %-15s %-15s\n", ids[i], TYPES[t].name,
			       f & BPF_F_ALLOW_MULTI ? "multi" :
			       f & BPF_F_ALLOW_OVERRIDE ? "override" : "", name);
		}
	}
}

static void walk(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *e;

	if (fd < 0)
		return;
	show(path, fd);
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		char child[4096];

		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
		walk(child);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s ROOT\n", argv[0]);
		return 2;
	}
	memset(supported, -1, sizeof(supported));
	printf("CgroupPath\nID       AttachType      AttachFlags     Name\n");
	walk(argv[1]);
	return 0;
}
