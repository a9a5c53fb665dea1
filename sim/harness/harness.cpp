// Fast Verilator harness: a C API over one `verilator --cc` model, loaded from Python (ctypes).
//
// Built by tickpath.sim.harness.build: HARNESS_HEADER names the model's header ("Vtop.h"),
// HARNESS_CLASS its class, and "ports.inc" lists its ports as
//   PORT("name", width, is_input, member)
// One clock cycle is: inputs as set, clk=0, eval (combinational settle), clk=1, eval (edge).
// Wide values travel as little-endian byte arrays of (width + 7) / 8 bytes.

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "verilated.h"
#include HARNESS_HEADER

namespace {

struct Port {
    const char *name;
    int width;
    int input;
};

#define PORT(name, width, input, member) {name, width, input},
const Port PORTS[] = {
#include "ports.inc"
};
#undef PORT
const int NPORTS = sizeof(PORTS) / sizeof(PORTS[0]);

struct Watch {
    int port;
    std::vector<uint8_t> last;
};

struct Harness {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<HARNESS_CLASS> top;
    void *ptrs[NPORTS];
    uint64_t cycle = 0;
    std::vector<Watch> watches;
    std::vector<uint8_t> records;     // watch records: u64 cycle, u32 port, value bytes
    size_t record_size = 12;
};

inline int nbytes(int width) { return (width + 7) / 8; }

void bind(Harness *h) {
    int i = 0;
#define PORT(name, width, input, member) h->ptrs[i++] = (void *)&h->top->member;
#include "ports.inc"
#undef PORT
}

inline void set_port(Harness *h, int port, const uint8_t *bytes) {
    const int w = PORTS[port].width, n = nbytes(w);
    void *p = h->ptrs[port];
    uint8_t last_mask = (w % 8) ? (uint8_t)((1u << (w % 8)) - 1) : 0xff;
    if (w <= 64) {
        uint64_t v = 0;
        std::memcpy(&v, bytes, n);
        v &= (w == 64) ? ~0ull : ((1ull << w) - 1);
        if (w <= 8) *(CData *)p = (CData)v;
        else if (w <= 16) *(SData *)p = (SData)v;
        else if (w <= 32) *(IData *)p = (IData)v;
        else *(QData *)p = (QData)v;
    } else {
        EData *words = (EData *)p;
        const int nw = (w + 31) / 32;
        std::memset(words, 0, nw * 4);
        std::memcpy(words, bytes, n);
        ((uint8_t *)words)[n - 1] &= last_mask;
    }
}

inline void get_port(Harness *h, int port, uint8_t *out) {
    const int w = PORTS[port].width, n = nbytes(w);
    void *p = h->ptrs[port];
    if (w <= 64) {
        uint64_t v;
        if (w <= 8) v = *(CData *)p;
        else if (w <= 16) v = *(SData *)p;
        else if (w <= 32) v = *(IData *)p;
        else v = *(QData *)p;
        std::memcpy(out, &v, n);
    } else {
        std::memcpy(out, p, n);
    }
}

inline bool get_bit(Harness *h, int port) {
    return *(CData *)h->ptrs[port] & 1;
}

inline void set_bit(Harness *h, int port, bool v) {
    *(CData *)h->ptrs[port] = v;
}

inline void check_watches(Harness *h) {
    uint8_t buf[4096];
    for (auto &w : h->watches) {
        const int n = nbytes(PORTS[w.port].width);
        get_port(h, w.port, buf);
        if (std::memcmp(buf, w.last.data(), n) != 0) {
            std::memcpy(w.last.data(), buf, n);
            size_t at = h->records.size();
            h->records.resize(at + h->record_size, 0);
            uint8_t *r = h->records.data() + at;
            uint32_t port = (uint32_t)w.port;
            std::memcpy(r, &h->cycle, 8);
            std::memcpy(r + 8, &port, 4);
            std::memcpy(r + 12, buf, n);
        }
    }
}

// clk low (settle with the inputs as set), then the rising edge.
inline void half_low(Harness *h) {
    h->top->clk = 0;
    h->top->eval();
}

inline void half_high(Harness *h) {
    h->top->clk = 1;
    h->top->eval();
    h->cycle++;
    if (!h->watches.empty()) check_watches(h);
}

}  // namespace

extern "C" {

int h_nports() { return NPORTS; }
const char *h_port_name(int i) { return PORTS[i].name; }
int h_port_width(int i) { return PORTS[i].width; }
int h_port_input(int i) { return PORTS[i].input; }

void *h_new() {
    Harness *h = new Harness;
    h->context.reset(new VerilatedContext);
    h->top.reset(new HARNESS_CLASS(h->context.get(), "top"));
    bind(h);
    h->top->clk = 0;
    h->top->eval();
    return h;
}

void h_free(void *p) {
    Harness *h = (Harness *)p;
    h->top->final();
    delete h;
}

uint64_t h_cycle(void *p) { return ((Harness *)p)->cycle; }

void h_set(void *p, int port, const uint8_t *bytes) { set_port((Harness *)p, port, bytes); }
void h_get(void *p, int port, uint8_t *out) { get_port((Harness *)p, port, out); }
void h_eval(void *p) { ((Harness *)p)->top->eval(); }

void h_step(void *p, uint64_t n) {
    Harness *h = (Harness *)p;
    for (uint64_t i = 0; i < n; i++) {
        half_low(h);
        half_high(h);
    }
}

// Watch ports: after every rising edge, a changed value appends a record (cycle, port, value)
// of 12 + max bytes. Replaces the previous watch list; the current values are the baseline.
void h_watch(void *p, const int *ports, int n) {
    Harness *h = (Harness *)p;
    h->watches.clear();
    int most = 0;
    for (int i = 0; i < n; i++) {
        Watch w;
        w.port = ports[i];
        w.last.assign(nbytes(PORTS[ports[i]].width), 0);
        get_port(h, ports[i], w.last.data());
        if (nbytes(PORTS[ports[i]].width) > most) most = nbytes(PORTS[ports[i]].width);
        h->watches.push_back(w);
    }
    h->record_size = 12 + most;
}

size_t h_record_size(void *p) { return ((Harness *)p)->record_size; }
size_t h_records_bytes(void *p) { return ((Harness *)p)->records.size(); }

// Copy the watch records out (at most cap bytes, whole records) and forget them.
size_t h_records_take(void *p, uint8_t *out, size_t cap) {
    Harness *h = (Harness *)p;
    size_t n = h->records.size();
    if (n > cap) n = cap - cap % h->record_size;
    std::memcpy(out, h->records.data(), n);
    h->records.erase(h->records.begin(), h->records.begin() + n);
    return n;
}

// Stream n_in beats (in_stride bytes apart in `in`) into the source stream (its valid, ready,
// payload ports; src_valid < 0: no source) while taking every beat of the sink stream (sink
// ready held high; sink_valid < 0: no sink). Taken beats are copied to `out` (out_stride bytes
// apart, up to out_cap of them; out NULL: counted only). Runs until every input beat is taken
// and then `drain` more cycles have passed without a sink beat, or max_cycles.
// result[0] beats sent, result[1] beats taken, result[2] cycles run, result[3] 1 if max_cycles
// stopped it.
void h_stream(void *p, int src_valid, int src_ready, int src_payload, const uint8_t *in,
              uint64_t n_in, uint64_t in_stride, int sink_valid, int sink_ready,
              int sink_payload, uint8_t *out, uint64_t out_cap, uint64_t out_stride,
              uint64_t drain, uint64_t max_cycles, uint64_t *result) {
    Harness *h = (Harness *)p;
    uint64_t sent = 0, taken = 0, cycles = 0, idle = 0;
    int timed_out = 0;
    const bool has_src = src_valid >= 0, has_sink = sink_valid >= 0;
    if (has_sink) set_bit(h, sink_ready, true);
    uint64_t loaded = ~0ull;
    for (;;) {
        if (has_src && sent == n_in && idle >= drain) break;
        if (!has_src && idle >= drain) break;
        if (cycles >= max_cycles) {
            timed_out = 1;
            break;
        }
        bool valid = has_src && sent < n_in;
        if (has_src) {
            set_bit(h, src_valid, valid);
            if (valid && loaded != sent) {
                set_port(h, src_payload, in + sent * in_stride);
                loaded = sent;
            }
        }
        half_low(h);
        bool fire_in = valid && get_bit(h, src_ready);
        bool fire_out = has_sink && get_bit(h, sink_valid);
        if (fire_out) {
            if (out && taken < out_cap) get_port(h, sink_payload, out + taken * out_stride);
            taken++;
        }
        half_high(h);
        cycles++;
        if (fire_in) sent++;
        if (fire_out || (has_src && sent < n_in)) idle = 0;
        else idle++;
    }
    if (has_src) set_bit(h, src_valid, false);
    if (has_sink) set_bit(h, sink_ready, false);
    result[0] = sent;
    result[1] = taken;
    result[2] = cycles;
    result[3] = timed_out;
}

}  // extern "C"
