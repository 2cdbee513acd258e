/* The C variants of bench/run.py's per-operation scenarios, one process per measurement.
 * Built twice by the driver with gcc -O2: raw `syscall(SYS_bpf, ...)` (the floor, variant
 * `c`) and, with -DLIBBPF -lbpf, through libbpf's calls (variant `libbpf`).
 *
 *   ops OP N DIR [EXTRA]     prints the seconds per operation (mean of N after a warm-up)
 *
 * OP: prog_load | link_create | link_busy | link_update | query (EXTRA = programs at DIR)
 *   | query_eff (EXTRA programs at DIR's parent, effective query at DIR) | attach_detach
 *   | pin_get (EXTRA = a bpffs dir) | siblings (N children 0..N-1 of DIR, each opened and
 *   linked: prints the seconds for all of them) | load_object (libbpf only, EXTRA = a
 *   clang object) | link_tree (setup: a link on every cgroup under DIR, pinned in EXTRA).
 * Every program is cgroup_skb `return 1` at cgroup_inet_egress. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef LIBBPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#endif

#define EGRESS BPF_CGROUP_INET_EGRESS
#define MAXPROGS 64

static const struct bpf_insn RET1[] = {
	{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 1},
	{.code = BPF_JMP | BPF_EXIT},
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int check(long r, const char *what)
{
	if (r < 0) {
		perror(what);
		exit(1);
	}
	return (int)r;
}

#ifndef LIBBPF
static long sys_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}
#endif

static int prog_load(void)
{
#ifdef LIBBPF
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = EGRESS);
	return bpf_prog_load(BPF_PROG_TYPE_CGROUP_SKB, "bench", "GPL", RET1, 2, &o);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_CGROUP_SKB;
	a.expected_attach_type = EGRESS;
	a.insns = (__u64)(unsigned long)RET1;
	a.insn_cnt = 2;
	a.license = (__u64)(unsigned long)"GPL";
	strcpy(a.prog_name, "bench");
	return sys_bpf(BPF_PROG_LOAD, &a);
#endif
}

static int link_create(int prog, int cg)
{
#ifdef LIBBPF
	return bpf_link_create(prog, cg, EGRESS, NULL);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.link_create.prog_fd = prog;
	a.link_create.target_fd = cg;
	a.link_create.attach_type = EGRESS;
	return sys_bpf(BPF_LINK_CREATE, &a);
#endif
}

static int link_update(int link, int prog)
{
#ifdef LIBBPF
	return bpf_link_update(link, prog, NULL);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.link_update.link_fd = link;
	a.link_update.new_prog_fd = prog;
	return sys_bpf(BPF_LINK_UPDATE, &a);
#endif
}

static int query(int cg, __u32 flags, __u32 *ids)
{
	__u32 cnt = MAXPROGS;
#ifdef LIBBPF
	__u32 attach_flags;
	return bpf_prog_query(cg, EGRESS, flags, &attach_flags, ids, &cnt);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.query.target_fd = cg;
	a.query.attach_type = EGRESS;
	a.query.query_flags = flags;
	a.query.prog_ids = (__u64)(unsigned long)ids;
	a.query.prog_cnt = cnt;
	return sys_bpf(BPF_PROG_QUERY, &a);
#endif
}

static int attach_detach(int prog, int cg)
{
#ifdef LIBBPF
	check(bpf_prog_attach(prog, cg, EGRESS, BPF_F_ALLOW_MULTI), "PROG_ATTACH");
	return bpf_prog_detach2(prog, cg, EGRESS);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.target_fd = cg;
	a.attach_bpf_fd = prog;
	a.attach_type = EGRESS;
	a.attach_flags = BPF_F_ALLOW_MULTI;
	check(sys_bpf(BPF_PROG_ATTACH, &a), "PROG_ATTACH");
	memset(&a, 0, sizeof(a));
	a.target_fd = cg;
	a.attach_bpf_fd = prog;
	a.attach_type = EGRESS;
	return sys_bpf(BPF_PROG_DETACH, &a);
#endif
}

static int pin(int fd, const char *path)
{
#ifdef LIBBPF
	return bpf_obj_pin(fd, path);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.bpf_fd = fd;
	a.pathname = (__u64)(unsigned long)path;
	return sys_bpf(BPF_OBJ_PIN, &a);
#endif
}

static int obj_get(const char *path)
{
#ifdef LIBBPF
	return bpf_obj_get(path);
#else
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.pathname = (__u64)(unsigned long)path;
	return sys_bpf(BPF_OBJ_GET, &a);
#endif
}

static int open_dir(const char *path)
{
	return check(open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), path);
}

/* Every cgroup under (and at) path gets a link pinned as pins/<count>. */
static void link_tree(const char *path, int prog, const char *pins, int *count)
{
	char name[4096];
	int cg = open_dir(path);
	DIR *d;
	struct dirent *e;

	snprintf(name, sizeof(name), "%s/%d", pins, (*count)++);
	int link = check(link_create(prog, cg), "LINK_CREATE");
	check(pin(link, name), "OBJ_PIN");
	close(link);
	d = fdopendir(cg);
	while (d && (e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(name, sizeof(name), "%s/%s", path, e->d_name);
		link_tree(name, prog, pins, count);
	}
	if (d)
		closedir(d);
}

/* One operation of op, the i-th; state set up by main. */
struct state { int cg, progs[MAXPROGS], link; const char *extra; char path[4096]; };

static void once(const char *op, struct state *s, int i)
{
	__u32 ids[MAXPROGS];

	if (!strcmp(op, "prog_load")) {
		close(check(prog_load(), "PROG_LOAD"));
	} else if (!strcmp(op, "link_create") || !strcmp(op, "link_busy")) {
		close(check(link_create(s->progs[0], s->cg), "LINK_CREATE"));
	} else if (!strcmp(op, "link_update")) {
		check(link_update(s->link, s->progs[i & 1]), "LINK_UPDATE");
	} else if (!strcmp(op, "query")) {
		check(query(s->cg, 0, ids), "PROG_QUERY");
	} else if (!strcmp(op, "query_eff")) {
		check(query(s->cg, BPF_F_QUERY_EFFECTIVE, ids), "PROG_QUERY");
	} else if (!strcmp(op, "attach_detach")) {
		check(attach_detach(s->progs[0], s->cg), "PROG_DETACH");
	} else if (!strcmp(op, "pin_get")) {
		check(pin(s->progs[0], s->path), "OBJ_PIN");
		close(check(obj_get(s->path), "OBJ_GET"));
		check(unlink(s->path), s->path);
#ifdef LIBBPF
	} else if (!strcmp(op, "load_object")) {
		struct bpf_object *obj = bpf_object__open_file(s->extra, NULL);
		check(libbpf_get_error(obj), "bpf_object__open_file");
		check(bpf_object__load(obj), "bpf_object__load");
		bpf_object__close(obj);
#endif
	} else {
		fprintf(stderr, "ops: unknown operation %s\n", op);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct state s = {.cg = -1, .link = -1};
	const char *op = argc > 3 ? argv[1] : "";
	int n = argc > 3 ? atoi(argv[2]) : 0, nprogs = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: ops OP N DIR [EXTRA]\n");
		return 2;
	}
	s.extra = argc > 4 ? argv[4] : "";
	if (!strcmp(op, "query") || !strcmp(op, "query_eff"))
		nprogs = atoi(s.extra);
	for (int i = 0; i < nprogs; i++)
		s.progs[i] = check(prog_load(), "PROG_LOAD");
	s.cg = open_dir(argv[3]);
	if (!strcmp(op, "link_tree")) {
		int count = 0;
		link_tree(argv[3], s.progs[0], s.extra, &count);
		return 0;
	}
	if (!strcmp(op, "siblings")) {
		int *links = calloc(n, sizeof(int));
		double t0 = now();
		for (int i = 0; i < n; i++) {
			snprintf(s.path, sizeof(s.path), "%s/%d", argv[3], i);
			int cg = open_dir(s.path);
			links[i] = check(link_create(s.progs[0], cg), "LINK_CREATE");
			close(cg);
		}
		printf("%.9e\n", now() - t0);
		return 0; /* exit closes the links */
	}
	if (!strcmp(op, "query_eff")) {
		snprintf(s.path, sizeof(s.path), "%s/..", argv[3]);
		int parent = open_dir(s.path);
		for (int i = 0; i < nprogs; i++)
			check(link_create(s.progs[i], parent), "LINK_CREATE");
	} else if (!strcmp(op, "query")) {
		for (int i = 0; i < nprogs; i++)
			check(link_create(s.progs[i], s.cg), "LINK_CREATE");
	} else if (!strcmp(op, "link_busy") || !strcmp(op, "link_update")) {
		s.link = check(link_create(s.progs[0], s.cg), "LINK_CREATE");
	} else if (!strcmp(op, "pin_get")) {
		snprintf(s.path, sizeof(s.path), "%s/p%d", s.extra, getpid());
	}
	for (int i = 0; i < (n + 9) / 10; i++)
		once(op, &s, i);
	double t0 = now();
	for (int i = 0; i < n; i++)
		once(op, &s, i);
	printf("%.9e\n", (now() - t0) / n);
	return 0;
}
