/* tickpath AF_XDP helper: one XDP socket and its UMEM, driven from Python through ctypes.
 *
 * Ref: Documentation/networking/af_xdp.rst; libxdp xsk.h (xsk_umem__create,
 * xsk_socket__create, and the ring accessors, which are static inline and so need C).
 *
 * Built by tickpath.host.capture.xdp at first use with the system C compiler:
 *   cc -O2 -shared -fPIC xsk_helper.c -lxdp -lbpf
 * libxdp loads its default XDP program (redirect every frame of the queue into the socket's
 * XSKMAP) when the socket is created, and removes it when the socket is deleted.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

struct tp_xsk {
	struct xsk_socket *xsk;
	struct xsk_umem *umem;
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	void *area;
	size_t area_size;
	uint32_t frame_size;
	uint32_t nframes;
};

int tp_xsk_abi(void) { return 1; }

/* libxdp and libbpf print their progress (and their fallbacks, such as "no bpffs, loading a
 * single program without the dispatcher") to stderr; keep quiet unless asked. */
void tp_xsk_quiet(int quiet)
{
	if (quiet) {
		libxdp_set_print(NULL);
		libbpf_set_print(NULL);
	}
}

void tp_xsk_close(struct tp_xsk *x)
{
	if (!x)
		return;
	if (x->xsk)
		xsk_socket__delete(x->xsk);
	if (x->umem)
		xsk_umem__delete(x->umem);
	if (x->area)
		munmap(x->area, x->area_size);
	free(x);
}

/* mode: 0 = generic (SKB) XDP, 1 = native (driver) XDP; always XDP_COPY.
 * Returns NULL and sets *err to a negative errno on failure. */
struct tp_xsk *tp_xsk_open(const char *ifname, uint32_t queue, uint32_t nframes,
			   uint32_t frame_size, int mode, int *err)
{
	struct tp_xsk *x = calloc(1, sizeof(*x));
	struct xsk_umem_config ucfg = {
		.fill_size = nframes, .comp_size = nframes, .frame_size = frame_size,
		.frame_headroom = 0, .flags = 0,
	};
	struct xsk_socket_config scfg = {
		.rx_size = nframes, .tx_size = nframes, .libxdp_flags = 0,
		.xdp_flags = mode ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE,
		.bind_flags = XDP_COPY,
	};
	uint32_t idx = 0, i;
	int ret;

	if (!x) {
		*err = -ENOMEM;
		return NULL;
	}
	x->frame_size = frame_size;
	x->nframes = nframes;
	x->area_size = (size_t)nframes * frame_size;
	x->area = mmap(NULL, x->area_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x->area == MAP_FAILED) {
		x->area = NULL;
		*err = -errno;
		goto fail;
	}
	ret = xsk_umem__create(&x->umem, x->area, x->area_size, &x->fq, &x->cq, &ucfg);
	if (ret) {
		x->umem = NULL;
		*err = ret;
		goto fail;
	}
	ret = xsk_socket__create(&x->xsk, ifname, queue, x->umem, &x->rx, &x->tx, &scfg);
	if (ret) {
		x->xsk = NULL;
		*err = ret;
		goto fail;
	}
	/* Give every frame to the kernel to fill. */
	if (xsk_ring_prod__reserve(&x->fq, nframes, &idx) != nframes) {
		*err = -ENOSPC;
		goto fail;
	}
	for (i = 0; i < nframes; i++)
		*xsk_ring_prod__fill_addr(&x->fq, idx + i) = (uint64_t)i * frame_size;
	xsk_ring_prod__submit(&x->fq, nframes);
	*err = 0;
	return x;
fail:
	tp_xsk_close(x);
	return NULL;
}

int tp_xsk_fd(struct tp_xsk *x) { return xsk_socket__fd(x->xsk); }

/* Copy up to max frames back to back into out (cap bytes); their lengths go to lens.
 * A frame that does not fit what is left of out ends the batch (it stays for the next call).
 * *ts_ns is CLOCK_REALTIME when the batch was taken off the ring. Returns the frame count. */
int tp_xsk_recv(struct tp_xsk *x, unsigned char *out, size_t cap, uint32_t max,
		uint32_t *lens, uint64_t *ts_ns)
{
	uint32_t idx_rx = 0, idx_fq = 0, n, i, taken = 0;
	size_t used = 0;
	struct timespec ts;

	n = xsk_ring_cons__peek(&x->rx, max, &idx_rx);
	if (!n)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	*ts_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	for (i = 0; i < n; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx_rx + i);
		if (used + d->len > cap)
			break;
		memcpy(out + used, xsk_umem__get_data(x->area, d->addr), d->len);
		lens[i] = d->len;
		used += d->len;
		taken++;
	}
	if (!taken)
		return 0;
	/* Hand the frames back to the kernel's fill ring (it has room: we hold them). */
	if (xsk_ring_prod__reserve(&x->fq, taken, &idx_fq) != taken) {
		xsk_ring_cons__release(&x->rx, taken);
		return -ENOSPC;	/* cannot happen: the fill ring holds nframes */
	}
	for (i = 0; i < taken; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx_rx + i);
		*xsk_ring_prod__fill_addr(&x->fq, idx_fq + i) =
			xsk_umem__extract_addr(d->addr);
	}
	xsk_ring_prod__submit(&x->fq, taken);
	xsk_ring_cons__release(&x->rx, taken);
	return (int)taken;
}

/* struct xdp_statistics as six u64: rx_dropped, rx_invalid_descs, tx_invalid_descs,
 * rx_ring_full, rx_fill_ring_empty_descs, tx_ring_empty_descs. */
int tp_xsk_stats(struct tp_xsk *x, uint64_t *out6)
{
	struct xdp_statistics st;
	socklen_t len = sizeof(st);

	memset(&st, 0, sizeof(st));
	if (getsockopt(xsk_socket__fd(x->xsk), SOL_XDP, XDP_STATISTICS, &st, &len))
		return -errno;
	out6[0] = st.rx_dropped;
	out6[1] = st.rx_invalid_descs;
	out6[2] = st.tx_invalid_descs;
	out6[3] = st.rx_ring_full;
	out6[4] = st.rx_fill_ring_empty_descs;
	out6[5] = st.tx_ring_empty_descs;
	return 0;
}
