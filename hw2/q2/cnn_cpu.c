/* The Question 2 CNN's SGD steps on the CPU: forward, backward and update of a whole stretch of steps in
 * one call, for G members that share the batches and dropout masks (the learning rates of a sweep).
 *
 * Why by hand: at batch 8 a step is about 10 million multiply-adds, so PyTorch spends most of it
 * dispatching some forty small kernels. It computes what hw2.q2.cnn.CNN computes (float32, the same
 * first-maximum rule in max-pooling, the same dropout noise, which PyTorch draws and passes in), in a
 * different summation order only.
 *
 * Vectors are written out (GCC/Clang vector extensions), not left to the auto-vectoriser, whose choices
 * differ by CPU (GCC keeps AVX-512 machines of one vendor to 256-bit loops): VW lanes, 16 where AVX-512
 * exists and 8 elsewhere, and 8-lane vectors for the 8 channels of conv1. Every map is channels-last, so
 * that each layer's lanes are its output channels (conv1: 8, conv2: 16) or outputs (the fully connected
 * layers) and no lane is wasted on padding; pooling is then an elementwise maximum of four vectors. conv1
 * is computed in its four 2x2 phases (the four positions of each pooling window), so the stride-2 variant
 * is phase 0 alone.
 *
 * Members run one after the other over the same steps (their trajectories are independent), so one
 * member's weights (about 0.9 MB) stay in the core's cache. Each member's weights are copied in at the
 * start of a call into the layouts the kernels read, and copied back at the end.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define C1 8
#define C2 16
#define TAPS 9
#define FLAT 576
#define H1 320
#define H2 120
#define H2P 128 /* fc2's outputs padded to whole vectors: the padding weights and gradients stay zero */
#define NCLS 4
#define ROWS 8  /* the fully connected layers take the batch in blocks of 8 rows (zero rows pad the last) */

#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
#define NCV (C2 / VW) /* vectors per conv2 output position */

/* aligned(4) and may_alias: loads and stores of float arrays at any float's address */
typedef float vf __attribute__((vector_size(VW * 4), aligned(4), may_alias));
typedef int32_t vfi __attribute__((vector_size(VW * 4), aligned(4), may_alias));
typedef float v8 __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t v8i __attribute__((vector_size(32), aligned(4), may_alias));

#define INLINE static inline __attribute__((always_inline))
/* the small constant loops are unrolled so that their sums live in registers (GCC's size limits would
 * otherwise keep them in memory on some targets) */
#define UNROLL _Pragma("GCC unroll 16")
INLINE vf ld(const float *p) { return *(const vf *)p; }
INLINE void st(float *p, vf v) { *(vf *)p = v; }
INLINE v8 ld8(const float *p) { return *(const v8 *)p; }
INLINE void st8(float *p, v8 v) { *(v8 *)p = v; }
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE vf vmax(vf a, vf b) { return (vf)(((vfi)(a > b) & (vfi)a) | (~(vfi)(a > b) & (vfi)b)); }
INLINE v8 vmax8(v8 a, v8 b) { return (v8)(((v8i)(a > b) & (v8i)a) | (~(v8i)(a > b) & (v8i)b)); }
INLINE vf relu(vf a) { return (vf)((vfi)(a > 0.f) & (vfi)a); }
INLINE v8 relu8(v8 a) { return (v8)((v8i)(a > 0.f) & (v8i)a); }

#ifdef __clang__
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (vfi){__VA_ARGS__})
#endif

/* out[r] = the sum of a[r]'s lanes, r < 8, by a tree of shuffles (one vector op per two inputs and level) */
INLINE void sum8(const vf a[8], float out[8]) {
#if VW == 16
    vf t[4], u[2];
    for (int j = 0; j < 4; j++)
        t[j] = SHUF(a[2 * j], a[2 * j + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
             + SHUF(a[2 * j], a[2 * j + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int j = 0; j < 2; j++)
        u[j] = SHUF(t[2 * j], t[2 * j + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
             + SHUF(t[2 * j], t[2 * j + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    vf v = SHUF(u[0], u[1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
         + SHUF(u[0], u[1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    v += SHUF(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    /* lanes 0, 2, ..., 14 now hold the sums of a[0], a[4], a[2], a[6], a[1], a[5], a[3], a[7] */
    static const int at[8] = {0, 8, 4, 12, 2, 10, 6, 14};
#else
    vf t[4], u[2];
    for (int j = 0; j < 4; j++)
        t[j] = SHUF(a[2 * j], a[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11)
             + SHUF(a[2 * j], a[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15);
    for (int j = 0; j < 2; j++)
        u[j] = SHUF(t[2 * j], t[2 * j + 1], 0, 1, 8, 9, 4, 5, 12, 13)
             + SHUF(t[2 * j], t[2 * j + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    vf v = SHUF(u[0], u[1], 0, 8, 2, 10, 4, 12, 6, 14) + SHUF(u[0], u[1], 1, 9, 3, 11, 5, 13, 7, 15);
    /* lanes 0..7 now hold the sums of a[0], a[4], a[2], a[6], a[1], a[5], a[3], a[7] */
    static const int at[8] = {0, 4, 2, 6, 1, 5, 3, 7};
#endif
    for (int r = 0; r < 8; r++) out[r] = v[at[r]];
}

/* The parameter update of PyTorch's SGD without momentum: p <- p - lr (grad + l2 p) */
static inline float sgd(float p, float grad, float lr, float l2) { return p - lr * (grad + l2 * p); }
INLINE vf sgdv(vf p, vf grad, float lr, float l2) { return p - lr * (grad + l2 * p); }

/* --- geometry ----------------------------------------------------------------------------------------------- */

typedef struct {
    int maxpool;
    int nph;                      /* conv1 phases computed: the four of each pooling window, or phase 0 (stride 2) */
    int n2;                       /* conv2's output side: 12, or 6 (stride 2) */
    int pos1[4 * 196];            /* conv1 output (phase, position) -> its top-left input in the 30x30 padded image */
    int pos2[144];                /* conv2 output position -> its top-left input in the 14x14 map */
    int off1[TAPS], off2[TAPS];   /* tap offsets in the padded image and in the 14x14 map */
} Geometry;

static void geometry(Geometry *g, int maxpool) {
    const int s = maxpool ? 1 : 2;
    g->maxpool = maxpool;
    g->nph = maxpool ? 4 : 1;
    g->n2 = maxpool ? 12 : 6;
    for (int ph = 0; ph < g->nph; ph++)
        for (int q = 0; q < 196; q++)
            g->pos1[ph * 196 + q] = (2 * (q / 14) + ph / 2) * 30 + 2 * (q % 14) + ph % 2;
    for (int p = 0; p < g->n2 * g->n2; p++) g->pos2[p] = s * (p / g->n2) * 14 + s * (p % g->n2);
    for (int k = 0; k < TAPS; k++) {
        g->off1[k] = (k / 3) * 30 + k % 3;
        g->off2[k] = (k / 3) * 14 + k % 3;
    }
}

/* --- one member's parameters, in the kernels' layouts -------------------------------------------------------- */

typedef struct {
    float *w1;  /* [tap][8 channels] */
    float *b1;
    float *w2;  /* [input channel * 9 + tap][16 output channels] */
    float *b2;
    float *f1w; /* [feature][320], features in the order position * 16 + channel (PyTorch's: channel * 36 + position) */
    float *f1b;
    float *f2w; /* [320][128], columns 120..127 zero */
    float *f2b;
    float *f3w; /* [4][128] (transposed), columns 120..127 zero */
    float *f3b;
} Model;

/* PyTorch's flatten puts conv2's channel c at position q at feature c * 36 + q */
static int torch_feature(int n) { return (n % C2) * 36 + n / C2; }

typedef struct {
    float *w1, *b1, *w2, *b2, *f1w, *f1b, *f2w, *f2b, *f3w, *f3b;
} Params; /* StackedCNN's tensors of one member: conv weights (cout, cin, 3, 3), fc weights transposed (in, out) */

static void model_in(Model *m, const Params *P) {
    for (int c = 0; c < C1; c++) {
        m->b1[c] = P->b1[c];
        for (int k = 0; k < TAPS; k++) m->w1[k * C1 + c] = P->w1[c * TAPS + k];
    }
    for (int co = 0; co < C2; co++) {
        m->b2[co] = P->b2[co];
        for (int ci = 0; ci < C1; ci++)
            for (int k = 0; k < TAPS; k++) m->w2[(ci * TAPS + k) * C2 + co] = P->w2[(co * C1 + ci) * TAPS + k];
    }
    for (int n = 0; n < FLAT; n++) memcpy(m->f1w + n * H1, P->f1w + torch_feature(n) * H1, sizeof(float) * H1);
    memcpy(m->f1b, P->f1b, sizeof(float) * H1);
    memset(m->f2w, 0, sizeof(float) * H1 * H2P);
    for (int i = 0; i < H1; i++) memcpy(m->f2w + i * H2P, P->f2w + i * H2, sizeof(float) * H2);
    memset(m->f2b, 0, sizeof(float) * H2P);
    memcpy(m->f2b, P->f2b, sizeof(float) * H2);
    memset(m->f3w, 0, sizeof(float) * NCLS * H2P);
    for (int i = 0; i < H2; i++)
        for (int k = 0; k < NCLS; k++) m->f3w[k * H2P + i] = P->f3w[i * NCLS + k];
    memcpy(m->f3b, P->f3b, sizeof(float) * NCLS);
}

static void model_out(const Model *m, Params *P) {
    for (int c = 0; c < C1; c++) {
        P->b1[c] = m->b1[c];
        for (int k = 0; k < TAPS; k++) P->w1[c * TAPS + k] = m->w1[k * C1 + c];
    }
    for (int co = 0; co < C2; co++) {
        P->b2[co] = m->b2[co];
        for (int ci = 0; ci < C1; ci++)
            for (int k = 0; k < TAPS; k++) P->w2[(co * C1 + ci) * TAPS + k] = m->w2[(ci * TAPS + k) * C2 + co];
    }
    for (int n = 0; n < FLAT; n++) memcpy(P->f1w + torch_feature(n) * H1, m->f1w + n * H1, sizeof(float) * H1);
    memcpy(P->f1b, m->f1b, sizeof(float) * H1);
    for (int i = 0; i < H1; i++) memcpy(P->f2w + i * H2, m->f2w + i * H2P, sizeof(float) * H2);
    memcpy(P->f2b, m->f2b, sizeof(float) * H2);
    for (int i = 0; i < H2; i++)
        for (int k = 0; k < NCLS; k++) P->f3w[i * NCLS + k] = m->f3w[k * H2P + i];
    memcpy(P->f3b, m->f3b, sizeof(float) * NCLS);
}

/* --- convolutions (channels-last) ------------------------------------------------------------------------- */

/* conv1 + ReLU, per phase and position: a1[ph][q][c]. Seven positions at a time: independent sums for the
 * FMA pipelines, few enough registers for AVX2 */
static void conv1_forward(const Geometry *geo, const Model *m, const float *restrict img, float *restrict a1) {
    const v8 bias = ld8(m->b1);
    for (int n0 = 0; n0 < geo->nph * 196; n0 += 7) {
        v8 acc[7];
        UNROLL for (int j = 0; j < 7; j++) acc[j] = bias;
        UNROLL for (int k = 0; k < TAPS; k++) {
            const v8 w = ld8(m->w1 + k * C1);
            UNROLL for (int j = 0; j < 7; j++) acc[j] += img[geo->pos1[n0 + j] + geo->off1[k]] * w;
        }
        UNROLL for (int j = 0; j < 7; j++) st8(a1 + (n0 + j) * C1, relu8(acc[j]));
    }
}

/* gw1[k][c] += sum over (ph, q) of img[tap k] g1[ph][q][c], where g1 is a1's gradient: gin2 routed through
 * max-pooling (to the window's first maximum, as PyTorch) and ReLU; gb1 likewise */
static void conv1_grad_weights(const Geometry *geo, const float *restrict img, const float *restrict a1,
                               const float *restrict in2, const float *restrict gin2, v8 gw[TAPS], v8 *gb) {
    for (int q = 0; q < 196; q++) {
        const v8 m = ld8(in2 + q * C1), g = ld8(gin2 + q * C1);
        v8i left = (v8i)(m > 0.f); /* no gradient through a maximum of zeros (ReLU) */
        for (int ph = 0; ph < geo->nph; ph++) {
            const float *a = a1 + (ph * 196 + q) * C1;
            const v8i take = geo->maxpool ? (v8i)((v8i)(ld8(a) == m) & left) : (v8i)(ld8(a) > 0.f);
            left &= ~take;
            const v8 g1 = (v8)(take & (v8i)g);
            const float *x = img + geo->pos1[ph * 196 + q];
            *gb += g1;
            UNROLL for (int k = 0; k < TAPS; k++) gw[k] += x[geo->off1[k]] * g1;
        }
    }
}

/* conv2 + ReLU over npos output positions of all samples (channels-last in and out): a2[p][co].
 * PB positions at a time, each NCV vectors of output channels. */
#define PB (12 / NCV)
static void conv2_forward(const Geometry *geo, const Model *m, const float *restrict in2, int B,
                          float *restrict a2) {
    const int per = geo->n2 * geo->n2, npos = B * per;
    for (int p0 = 0; p0 < npos; p0 += PB) {
        const int nb = npos - p0 < PB ? npos - p0 : PB;
        const float *src[PB];
        vf acc[PB][NCV];
        UNROLL for (int j = 0; j < PB; j++) {
            const int p = p0 + (j < nb ? j : 0);
            src[j] = in2 + ((p / per) * 196 + geo->pos2[p % per]) * C1;
            UNROLL for (int v = 0; v < NCV; v++) acc[j][v] = ld(m->b2 + v * VW);
        }
        UNROLL for (int k = 0; k < TAPS; k++) {
            const int o = geo->off2[k] * C1;
            for (int ci = 0; ci < C1; ci++) {
                const float *w = m->w2 + (ci * TAPS + k) * C2;
                vf wv[NCV];
                UNROLL for (int v = 0; v < NCV; v++) wv[v] = ld(w + v * VW);
                UNROLL for (int j = 0; j < PB; j++)
                    UNROLL for (int v = 0; v < NCV; v++) acc[j][v] += src[j][o + ci] * wv[v];
            }
        }
        for (int j = 0; j < nb; j++)
            UNROLL for (int v = 0; v < NCV; v++) st(a2 + (p0 + j) * C2 + v * VW, relu(acc[j][v]));
    }
}

/* gw2[ci * 9 + k][co] += sum_p in2[tap k of p][ci] g2[p][co]; gb2 += sum_p g2[p]. Per input channel, nine
 * sums per output vector stay in registers over all positions. */
static void conv2_grad_weights(const Geometry *geo, const float *restrict in2, const float *restrict g2, int B,
                               vf gw[C1 * TAPS][NCV], vf gb[NCV]) {
    const int per = geo->n2 * geo->n2, npos = B * per;
    for (int p = 0; p < npos; p++)
        for (int v = 0; v < NCV; v++) gb[v] += ld(g2 + p * C2 + v * VW);
    for (int v = 0; v < NCV; v++)
        for (int ci = 0; ci < C1; ci++) {
            vf acc[TAPS];
            UNROLL for (int k = 0; k < TAPS; k++) acc[k] = gw[ci * TAPS + k][v];
            for (int p = 0; p < npos; p++) {
                const float *x = in2 + ((p / per) * 196 + geo->pos2[p % per]) * C1 + ci;
                const vf g = ld(g2 + p * C2 + v * VW);
                UNROLL for (int k = 0; k < TAPS; k++) acc[k] += x[geo->off2[k] * C1] * g;
            }
            UNROLL for (int k = 0; k < TAPS; k++) gw[ci * TAPS + k][v] = acc[k];
        }
}

/* gin2[tap k of p][ci] += sum_co g2[p][co] w2[co][ci][k], with wck = w2 as [k][co][ci]: each output
 * position's gradient back to the nine inputs it read */
static void conv2_grad_input(const Geometry *geo, const float *restrict g2, const float *restrict wck, int B,
                             float *restrict gin2) {
    const int per = geo->n2 * geo->n2, npos = B * per;
    memset(gin2, 0, sizeof(float) * B * 196 * C1);
    for (int p = 0; p < npos; p++) {
        float *d = gin2 + ((p / per) * 196 + geo->pos2[p % per]) * C1;
        const float *g = g2 + p * C2;
        v8 acc[TAPS];
        UNROLL for (int k = 0; k < TAPS; k++) acc[k] = ld8(d + geo->off2[k] * C1);
        for (int co = 0; co < C2; co++)
            UNROLL for (int k = 0; k < TAPS; k++) acc[k] += g[co] * ld8(wck + (k * C2 + co) * C1);
        UNROLL for (int k = 0; k < TAPS; k++) st8(d + geo->off2[k] * C1, acc[k]);
    }
}

/* --- fully connected layers (rows in blocks of 8, outputs in vectors) ------------------------------------- */

/* y[b][o] = bias[o] + sum_i x[b][i] W[i][o], then ReLU if asked; nout a multiple of VW */
static void linear_forward(const float *restrict x, int rows, int nin, int nout, const float *restrict W,
                           const float *restrict bias, float *restrict y, int use_relu) {
    for (int b0 = 0; b0 < rows; b0 += ROWS)
        for (int o = 0; o < nout; o += VW) {
            vf acc[ROWS];
            UNROLL for (int b = 0; b < ROWS; b++) acc[b] = ld(bias + o);
            for (int i = 0; i < nin; i++) {
                const vf w = ld(W + i * nout + o);
                UNROLL for (int b = 0; b < ROWS; b++) acc[b] += x[(b0 + b) * nin + i] * w;
            }
            UNROLL for (int b = 0; b < ROWS; b++) st(y + (b0 + b) * nout + o, use_relu ? relu(acc[b]) : acc[b]);
        }
}

/* Given g = dL/dy: gx = g W^T with the weights as they were, then W and bias take their SGD step, in one pass
 * over W. Inlined with rows = 8 (the homework's batch), so a single pass updates W directly; with more row
 * blocks the weight gradient is summed in gsum first. */
INLINE void linear_backward_sgd_rows(const float *restrict x, const float *restrict g, int rows, int nin, int nout,
                                     float *restrict W, float *restrict bias, float lr, float l2,
                                     float *restrict gx, float *restrict gsum) {
    for (int i = 0; i < nin; i++) {
        float *wi = W + i * nout;
        for (int b0 = 0; b0 < rows; b0 += ROWS) {
            const int last = b0 + ROWS == rows;
            vf acc[ROWS], xb[ROWS];
            UNROLL for (int b = 0; b < ROWS; b++) {
                acc[b] = (vf){0};
                xb[b] = splat(x[(b0 + b) * nin + i]);
            }
            for (int o = 0; o < nout; o += VW) {
                const vf w = ld(wi + o);
                vf grad = b0 ? ld(gsum + o) : (vf){0};
                UNROLL for (int b = 0; b < ROWS; b++) {
                    const vf gv = ld(g + (b0 + b) * nout + o);
                    acc[b] += gv * w;
                    grad += xb[b] * gv;
                }
                if (last) st(wi + o, sgdv(w, grad, lr, l2));
                else st(gsum + o, grad);
            }
            if (gx) {
                float s[ROWS];
                sum8(acc, s);
                UNROLL for (int b = 0; b < ROWS; b++) gx[(b0 + b) * nin + i] = s[b];
            }
        }
    }
    for (int o = 0; o < nout; o++) {
        float s = 0.f;
        for (int b = 0; b < rows; b++) s += g[b * nout + o];
        bias[o] = sgd(bias[o], s, lr, l2);
    }
}

static void linear_backward_sgd(const float *x, const float *g, int rows, int nin, int nout, float *W, float *bias,
                                float lr, float l2, float *gx, float *gsum) {
    if (rows == ROWS) linear_backward_sgd_rows(x, g, ROWS, nin, nout, W, bias, lr, l2, gx, gsum);
    else linear_backward_sgd_rows(x, g, rows, nin, nout, W, bias, lr, l2, gx, gsum);
}

/* --- one member's step -------------------------------------------------------------------------------------- */

typedef struct {
    float *img;                      /* per sample: the zero-padded 30x30 image */
    float *a1, *in2, *a2, *feat;     /* conv1 (phases), conv2's input, conv2, features: all channels-last */
    float *r1, *d1, *h2, *z;         /* per row: fc1 (ReLU), after dropout, fc2 (ReLU), logits */
    float *gz, *gh2, *gd1, *gfeat;   /* their gradients */
    float *g2, *gin2, *wck, *gsum;   /* conv2 output and input gradients, conv2's weights as [k][co][ci], a row */
} Work;

/* the zero-padded 30x30 image */
static void pad_image(const float *x, float *img) {
    memset(img, 0, sizeof(float) * 900);
    for (int r = 0; r < 28; r++) memcpy(img + (r + 1) * 30 + 1, x + r * 28, sizeof(float) * 28);
}

/* first-maximum masks of a 2x2 window (a[0..3] in PyTorch's scan order) with maximum m: take[n] is all ones
 * where a[n] is the first element equal to m */
INLINE void first_max_masks(const vf a[4], vf m, vfi take[4]) {
    vfi left = ~(vfi){0};
    for (int n = 0; n < 4; n++) {
        take[n] = (vfi)(a[n] == m) & left;
        left &= ~take[n];
    }
}

static float member_step(const Geometry *geo, Model *m, Work *w, const float *xs, const int64_t *ys, int B,
                         const float *noise, float lr, float l2) {
    const int R = (B + ROWS - 1) / ROWS * ROWS, per2 = geo->n2 * geo->n2;
    const int s_a1 = geo->nph * 196 * C1;
    /* forward through the convolutions */
    for (int b = 0; b < B; b++) {
        float *img = w->img + b * 900, *a1 = w->a1 + b * s_a1, *in2 = w->in2 + b * 196 * C1;
        pad_image(xs + b * 784, img);
        conv1_forward(geo, m, img, a1);
        if (geo->maxpool)
            for (int q = 0; q < 196; q++) {
                v8 v = ld8(a1 + q * C1);
                for (int ph = 1; ph < 4; ph++) v = vmax8(v, ld8(a1 + (ph * 196 + q) * C1));
                st8(in2 + q * C1, v);
            }
        else
            memcpy(in2, a1, sizeof(float) * 196 * C1);
    }
    conv2_forward(geo, m, w->in2, B, w->a2);
    for (int b = 0; b < B; b++) {
        const float *a2 = w->a2 + b * per2 * C2;
        float *feat = w->feat + b * FLAT;
        if (geo->maxpool)
            for (int q = 0; q < 36; q++) {
                const int p = 2 * (q / 6) * 12 + 2 * (q % 6);
                for (int v = 0; v < NCV; v++) {
                    const float *a = a2 + p * C2 + v * VW;
                    st(feat + q * C2 + v * VW, vmax(vmax(ld(a), ld(a + C2)), vmax(ld(a + 12 * C2), ld(a + 13 * C2))));
                }
            }
        else
            memcpy(feat, a2, sizeof(float) * FLAT);
    }
    /* the fully connected head on the batch, padded with zero rows to R */
    memset(w->feat + B * FLAT, 0, sizeof(float) * (R - B) * FLAT);
    linear_forward(w->feat, R, FLAT, H1, m->f1w, m->f1b, w->r1, 1);
    for (int n = 0; n < R * H1; n++) w->d1[n] = n >= B * H1 ? 0.f : noise ? w->r1[n] * noise[n] : w->r1[n];
    linear_forward(w->d1, R, H1, H2P, m->f2w, m->f2b, w->h2, 1);
    for (int b = 0; b < R; b++)
        for (int k = 0; k < NCLS; k++) {
            float s = m->f3b[k];
            for (int i = 0; i < H2P; i++) s += w->h2[b * H2P + i] * m->f3w[k * H2P + i];
            w->z[b * NCLS + k] = s;
        }
    memset(w->gz, 0, sizeof(float) * R * NCLS);
    /* log-softmax, NLLLoss (batch mean) and its gradient (softmax - onehot) / B */
    float loss = 0.f;
    for (int b = 0; b < B; b++) {
        const float *z = w->z + b * NCLS;
        float mx = z[0];
        for (int k = 1; k < NCLS; k++) mx = z[k] > mx ? z[k] : mx;
        float s = 0.f;
        for (int k = 0; k < NCLS; k++) s += expf(z[k] - mx);
        const float lse = mx + logf(s);
        loss -= z[ys[b]] - lse;
        for (int k = 0; k < NCLS; k++)
            w->gz[b * NCLS + k] = (expf(z[k] - lse) - (k == ys[b] ? 1.f : 0.f)) / (float)B;
    }
    loss /= (float)B;
    /* fc3 (4 outputs): gh2 = gz W3^T masked by ReLU, then W3's step */
    for (int b = 0; b < R; b++)
        for (int i = 0; i < H2P; i += VW) {
            vf s = (vf){0};
            for (int k = 0; k < NCLS; k++) s += w->gz[b * NCLS + k] * ld(m->f3w + k * H2P + i);
            const vf h = ld(w->h2 + b * H2P + i);
            st(w->gh2 + b * H2P + i, (vf)((vfi)(h > 0.f) & (vfi)s));
        }
    for (int k = 0; k < NCLS; k++) {
        float sb = 0.f;
        for (int b = 0; b < R; b++) sb += w->gz[b * NCLS + k];
        for (int i = 0; i < H2P; i += VW) {
            vf grad = (vf){0};
            for (int b = 0; b < R; b++) grad += w->gz[b * NCLS + k] * ld(w->h2 + b * H2P + i);
            st(m->f3w + k * H2P + i, sgdv(ld(m->f3w + k * H2P + i), grad, lr, l2));
        }
        m->f3b[k] = sgd(m->f3b[k], sb, lr, l2);
    }
    /* fc2 and fc1, each taking its SGD step once its input gradient is out */
    linear_backward_sgd(w->d1, w->gh2, R, H1, H2P, m->f2w, m->f2b, lr, l2, w->gd1, w->gsum);
    for (int n = 0; n < R * H1; n++)
        w->gd1[n] = n < B * H1 && w->r1[n] > 0.f ? (noise ? w->gd1[n] * noise[n] : w->gd1[n]) : 0.f;
    linear_backward_sgd(w->feat, w->gd1, R, FLAT, H1, m->f1w, m->f1b, lr, l2, w->gfeat, w->gsum);
    /* through pooling (to each window's first maximum, as PyTorch) and ReLU to conv2's outputs */
    for (int b = 0; b < B; b++) {
        const float *a2 = w->a2 + b * per2 * C2, *gf = w->gfeat + b * FLAT, *feat = w->feat + b * FLAT;
        float *g2 = w->g2 + b * per2 * C2;
        if (geo->maxpool)
            for (int q = 0; q < 36; q++) {
                const int p = 2 * (q / 6) * 12 + 2 * (q % 6), at[4] = {p, p + 1, p + 12, p + 13};
                for (int v = 0; v < NCV; v++) {
                    const vf mx = ld(feat + q * C2 + v * VW), g = (vf)((vfi)(mx > 0.f) & (vfi)ld(gf + q * C2 + v * VW));
                    vf a[4];
                    vfi take[4];
                    for (int n = 0; n < 4; n++) a[n] = ld(a2 + at[n] * C2 + v * VW);
                    first_max_masks(a, mx, take);
                    for (int n = 0; n < 4; n++) st(g2 + at[n] * C2 + v * VW, (vf)(take[n] & (vfi)g));
                }
            }
        else
            for (int n = 0; n < FLAT; n += VW)
                st(g2 + n, (vf)((vfi)(ld(a2 + n) > 0.f) & (vfi)ld(gf + n)));
    }
    /* conv2's gradients (its input's with the weights as they were), then conv1's */
    for (int k = 0; k < TAPS; k++)
        for (int co = 0; co < C2; co++)
            for (int ci = 0; ci < C1; ci++) w->wck[(k * C2 + co) * C1 + ci] = m->w2[(ci * TAPS + k) * C2 + co];
    vf gw2[C1 * TAPS][NCV], gb2[NCV];
    memset(gw2, 0, sizeof gw2);
    memset(gb2, 0, sizeof gb2);
    conv2_grad_weights(geo, w->in2, w->g2, B, gw2, gb2);
    conv2_grad_input(geo, w->g2, w->wck, B, w->gin2);
    v8 gw1[TAPS], gb1 = (v8){0};
    memset(gw1, 0, sizeof gw1);
    for (int b = 0; b < B; b++)
        conv1_grad_weights(geo, w->img + b * 900, w->a1 + b * s_a1, w->in2 + b * 196 * C1, w->gin2 + b * 196 * C1,
                           gw1, &gb1);
    for (int k = 0; k < TAPS; k++) st8(m->w1 + k * C1, ld8(m->w1 + k * C1) - lr * (gw1[k] + l2 * ld8(m->w1 + k * C1)));
    st8(m->b1, ld8(m->b1) - lr * (gb1 + l2 * ld8(m->b1)));
    for (int n = 0; n < C1 * TAPS; n++)
        for (int v = 0; v < NCV; v++) st(m->w2 + n * C2 + v * VW, sgdv(ld(m->w2 + n * C2 + v * VW), gw2[n][v], lr, l2));
    for (int v = 0; v < NCV; v++) st(m->b2 + v * VW, sgdv(ld(m->b2 + v * VW), gb2[v], lr, l2));
    return loss;
}

/* --- the entry point ---------------------------------------------------------------------------------------- */

/* SGD over the samples X[0..n) (already in the epoch's order) in batches of batch_size, for G members.
 * noise: per step a (batch_size, 320) block of dropout noise (kept / (1 - p), or 0), or NULL without dropout.
 * losses: (steps, G), each step's batch-mean NLL per member. Parameters are updated in place.
 * Returns 0, or -1 if memory ran out (nothing is changed then). */
int cnn_train_steps(int maxpool, int G, const float *lrs, float l2, float *w1, float *b1, float *w2, float *b2,
                    float *f1w, float *f1b, float *f2w, float *f2b, float *f3w, float *f3b, const float *X,
                    const int64_t *y, int64_t n, int batch_size, const float *noise, float *losses) {
    Geometry geo;
    geometry(&geo, maxpool);
    const int bs = batch_size, rows = (bs + ROWS - 1) / ROWS * ROWS;
    Work w;
    Model m;
    /* one allocation, cut into 64-byte aligned slices */
    struct { float **slot; size_t n; } bufs[] = {
        {&w.img, (size_t)bs * 900}, {&w.a1, (size_t)bs * geo.nph * 196 * C1}, {&w.in2, (size_t)bs * 196 * C1},
        {&w.a2, (size_t)bs * 144 * C2}, {&w.feat, (size_t)rows * FLAT}, {&w.r1, (size_t)rows * H1},
        {&w.d1, (size_t)rows * H1}, {&w.h2, (size_t)rows * H2P}, {&w.z, (size_t)rows * NCLS},
        {&w.gz, (size_t)rows * NCLS}, {&w.gh2, (size_t)rows * H2P}, {&w.gd1, (size_t)rows * H1},
        {&w.gfeat, (size_t)rows * FLAT}, {&w.g2, (size_t)bs * 144 * C2}, {&w.gin2, (size_t)bs * 196 * C1},
        {&w.wck, TAPS * C2 * C1}, {&w.gsum, H1},
        {&m.w1, TAPS * C1}, {&m.b1, C1}, {&m.w2, C1 * TAPS * C2}, {&m.b2, C2}, {&m.f1w, FLAT * H1}, {&m.f1b, H1},
        {&m.f2w, H1 * H2P}, {&m.f2b, H2P}, {&m.f3w, NCLS * H2P}, {&m.f3b, NCLS},
    };
    const int nbufs = sizeof(bufs) / sizeof(bufs[0]);
    size_t total = 0;
    for (int i = 0; i < nbufs; i++) total += (bufs[i].n + 15) & ~(size_t)15;
    float *pool = aligned_alloc(64, total * sizeof(float));
    if (!pool) return -1;
    float *cursor = pool;
    for (int i = 0; i < nbufs; i++) {
        *bufs[i].slot = cursor;
        cursor += (bufs[i].n + 15) & ~(size_t)15;
    }

    const int64_t steps = (n + bs - 1) / bs;
    for (int g = 0; g < G; g++) {
        Params P = {w1 + g * C1 * TAPS, b1 + g * C1, w2 + g * C2 * C1 * TAPS, b2 + g * C2,
                    f1w + (size_t)g * FLAT * H1, f1b + g * H1, f2w + g * H1 * H2, f2b + g * H2,
                    f3w + g * H2 * NCLS, f3b + g * NCLS};
        model_in(&m, &P);
        for (int64_t s = 0; s < steps; s++) {
            const int B = (int)((n - s * bs) < bs ? (n - s * bs) : bs);
            const float *nz = noise ? noise + s * bs * H1 : NULL;
            losses[s * G + g] = member_step(&geo, &m, &w, X + s * bs * 784, y + s * bs, B, nz, lrs[g], l2);
        }
        model_out(&m, &P);
    }
    free(pool);
    return 0;
}
