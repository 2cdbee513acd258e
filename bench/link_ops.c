/* C baseline for bench/link_ops.py: ns per LINK_CREATE+close on an empty hook and on a
 * hook that keeps one link, LINK_UPDATE, PROG_QUERY.
 * usage: link_ops CGROUP_FD PROG_FD PROG2_FD N   (fds inherited from the Python driver) */
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long bpf(int cmd, union bpf_attr *a) { return syscall(__NR_bpf, cmd, a, sizeof(*a)); }
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* n > 0: ns per LINK_CREATE + close, n times; n == 0: create one link, return its fd. */
static double create_close(int cg, int prog, int n) {
    union bpf_attr a;
    double t0 = now();
    for (int i = 0; i < (n ? n : 1); i++) {
        memset(&a, 0, sizeof(a));
        a.link_create.prog_fd = prog; a.link_create.target_fd = cg;
        a.link_create.attach_type = BPF_CGROUP_INET_EGRESS;
        int fd = bpf(BPF_LINK_CREATE, &a);
        if (fd < 0) { perror("LINK_CREATE"); exit(1); }
        if (!n) return fd;
        close(fd);
    }
    return (now() - t0) / n;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int cg = atoi(argv[1]), p1 = atoi(argv[2]), p2 = atoi(argv[3]), n = atoi(argv[4]);
    union bpf_attr a;
    double empty = create_close(cg, p1, n);
    int link = create_close(cg, p1, 0);
    double busy = create_close(cg, p1, n);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        memset(&a, 0, sizeof(a));
        a.link_update.link_fd = link; a.link_update.new_prog_fd = i & 1 ? p1 : p2;
        if (bpf(BPF_LINK_UPDATE, &a)) { perror("LINK_UPDATE"); return 1; }
    }
    double update = (now() - t0) / n;
    __u32 ids[64];
    t0 = now();
    for (int i = 0; i < n; i++) {
        memset(&a, 0, sizeof(a));
        a.query.target_fd = cg; a.query.attach_type = BPF_CGROUP_INET_EGRESS;
        a.query.prog_ids = (__u64)(unsigned long)ids; a.query.prog_cnt = 64;
        if (bpf(BPF_PROG_QUERY, &a)) { perror("PROG_QUERY"); return 1; }
    }
    double query = (now() - t0) / n;
    close(link);
    printf("%.0f %.0f %.0f %.0f\n", empty, busy, update, query);
    return 0;
}
