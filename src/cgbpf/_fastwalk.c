/* cgbpf's optional compiled fast path (loaded with ctypes by cgbpf/_fastwalk.py; the
 * pure-Python walk does the same where this library was not built):
 *
 *     long cgbpf_tree_query(const char *root, const unsigned *types, int ntypes,
 *                           int effective, unsigned char *out, unsigned long cap);
 *
 * walks the cgroup2 subtree at ROOT (parents first, children by name, nothing below a
 * directory of another file system, a cgroup removed during the walk passed over) and
 * issues BPF_PROG_QUERY for each of TYPES on each cgroup.  Into OUT, as native u32s:
 * for each cgroup, path length, path bytes (padded to 4), its id (the directory's inode:
 * low, high word), the number of hooks with
 * entries, then per hook: attach type, the hook's flags, its revision (low, high word),
 * the entry count, the ids.  (LSM_CGROUP, which wants per-entry flags, is not asked for
 * here.)
 * Returns the bytes written, -ENOSPC if CAP is too small (ask again with more), or the
 * -errno of a failed query (with the failing attach type in out[0..3]).
 * Built by `make install`: gcc -O2 -shared -fPIC. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct out {
	unsigned char *buf;
	unsigned long cap, len;
	int err; /* -ENOSPC or a query's -errno */
};

static void put(struct out *o, const void *p, unsigned long n)
{
	if (o->len + n > o->cap)
		o->err = o->err ? o->err : -ENOSPC;
	else
		memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void put32(struct out *o, __u32 v)
{
	put(o, &v, 4);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One hook's entries (ids grow past 64 for an effective array). */
static int query(int fd, __u32 type, int effective, __u32 **ids, __u32 *cap, __u32 *flags,
		 __u64 *revision, __u32 *count)
{
	_Static_assert(sizeof(union bpf_attr) >= 64, "query.revision fits in the attr");
	for (;;) {
		union bpf_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.query.target_fd = fd;
		attr.query.attach_type = type;
		attr.query.query_flags = effective ? BPF_F_QUERY_EFFECTIVE : 0;
		attr.query.prog_ids = (__u64)(unsigned long)*ids;
		attr.query.prog_cnt = *cap;
		if (syscall(__NR_bpf, BPF_PROG_QUERY, &attr, sizeof(attr)) == 0) {
			*flags = attr.query.attach_flags;
			/* query.revision (6.17), at offset 56: older <linux/bpf.h> lack it */
			memcpy(revision, (unsigned char *)&attr + 56, sizeof(*revision));
			*count = attr.query.prog_cnt;
			return 0;
		}
		if (errno != ENOSPC)
			return -errno;
		free(*ids);
		*cap = attr.query.prog_cnt;
		*ids = malloc(*cap * sizeof(__u32));
		if (!*ids)
			return -ENOMEM;
	}
}

static void walk(struct out *o, char *path, size_t plen, dev_t dev, const __u32 *types,
		 int ntypes, int effective, __u32 **ids, __u32 *cap)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	unsigned long count_at;
	__u32 hooks = 0;
	DIR *d;
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, room = 0;

	if (fd < 0)
		return; /* removed during the walk */
	if (fstat(fd, &st) < 0 || st.st_dev != dev) {
		close(fd); /* another file system mounted here: not a cgroup */
		return;
	}
	put32(o, plen);
	put(o, path, plen);
	put(o, "\0\0\0", (4 - plen % 4) % 4);
	put32(o, st.st_ino);
	put32(o, (__u64)st.st_ino >> 32);
	count_at = o->len;
	put32(o, 0);
	for (int t = 0; t < ntypes && !(o->err && o->err != -ENOSPC); t++) {
		__u32 flags = 0, count = 0;
		__u64 revision = 0;
		int err = query(fd, types[t], effective, ids, cap, &flags, &revision, &count);

		if (err == -ENOENT)
			break; /* removed while queried */
		if (err) {
			o->err = err;
			if (o->cap >= 4)
				memcpy(o->buf, &types[t], 4);
			break;
		}
		if (!count)
			continue;
		hooks++;
		put32(o, types[t]);
		put32(o, flags);
		put32(o, revision);
		put32(o, revision >> 32);
		put32(o, count);
		put(o, *ids, count * sizeof(__u32));
	}
	if (count_at + 4 <= o->cap)
		memcpy(o->buf + count_at, &hooks, 4);
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == room) {
			char **more = realloc(names, (room = room ? 2 * room : 16) * sizeof(*names));

			if (!more)
				break;
			names = more;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		size_t len = names[i] ? strlen(names[i]) : 4096;

		if (plen + 1 + len < 4096 && !(o->err && o->err != -ENOSPC)) {
			path[plen] = '/';
			memcpy(path + plen + 1, names[i], len + 1);
			walk(o, path, plen + 1 + len, dev, types, ntypes, effective, ids, cap);
			path[plen] = 0;
		}
		free(names[i]);
	}
	free(names);
}

long cgbpf_tree_query(const char *root, const unsigned *types, int ntypes, int effective,
		      unsigned char *out, unsigned long cap)
{
	struct out o = {out, cap, 0, 0};
	char path[4096];
	struct stat st;
	__u32 idcap = 64, *ids = malloc(idcap * sizeof(__u32));
	size_t plen = strlen(root);

	if (!ids)
		return -ENOMEM;
	if (plen >= sizeof(path) || stat(root, &st) < 0) {
		free(ids);
		return plen >= sizeof(path) ? -ENAMETOOLONG : -errno;
	}
	memcpy(path, root, plen + 1);
	walk(&o, path, plen, st.st_dev, types, ntypes, effective, &ids, &idcap);
	free(ids);
	return o.err ? o.err : (long)o.len;
}

/*     long cgbpf_links(unsigned char *out, unsigned long cap);
 *
 * Every link on the system (LINK_GET_NEXT_ID, LINK_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD; one
 * that goes during the walk is passed over): 64 bytes of struct bpf_link_info each, as
 * the kernel wrote them.  Returns the bytes written, -ENOSPC if CAP is too small, or the
 * -errno of a failed call. */
long cgbpf_links(unsigned char *out, unsigned long cap)
{
	unsigned long len = 0;
	__u32 id = 0;

	for (;;) {
		union bpf_attr attr;
		unsigned char info[64];
		int fd;

		memset(&attr, 0, sizeof(attr));
		attr.start_id = id;
		if (syscall(__NR_bpf, BPF_LINK_GET_NEXT_ID, &attr, sizeof(attr)) < 0)
			return errno == ENOENT ? (long)len : -errno;
		id = attr.next_id;
		memset(&attr, 0, sizeof(attr));
		attr.link_id = id;
		fd = syscall(__NR_bpf, BPF_LINK_GET_FD_BY_ID, &attr, sizeof(attr));
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		memset(info, 0, sizeof(info));
		memset(&attr, 0, sizeof(attr));
		attr.info.bpf_fd = fd;
		attr.info.info_len = sizeof(info);
		attr.info.info = (__u64)(unsigned long)info;
		if (syscall(__NR_bpf, BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof(attr)) < 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		close(fd);
		if (len + sizeof(info) > cap)
			return -ENOSPC;
		memcpy(out + len, info, sizeof(info));
		len += sizeof(info);
	}
}
