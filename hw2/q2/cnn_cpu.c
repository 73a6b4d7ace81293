/* The Question 2 CNN's SGD steps on the CPU: forward, backward and update of a whole stretch of steps in
 * one call, for G members that share the batches and dropout masks (the learning rates of a sweep).
 *
 * Why by hand: at batch 8 a step is about 10 million multiply-adds, so PyTorch spends most of it
 * dispatching some forty small kernels. Here every layer is a plain loop that the compiler vectorises.
 * It computes what hw2.models.cnn.CNN computes (float32, the same first-maximum rule in max-pooling, the
 * same dropout noise, which PyTorch draws and passes in), in a different summation order only.
 *
 * Layouts. Parameters are hw2.train_cnn.StackedCNN's tensors: conv weights (G, cout, cin, 3, 3), fully
 * connected weights transposed (G, in, out). A convolution is written once, over a flat input with one
 * offset per tap: stride-1 maps keep their rows padded to the input's width (the extra columns are
 * computed and ignored), stride-2 maps are split into their four polyphase components first, so every
 * tap reads a contiguous run. Gradients of the ignored columns are zero. Members run one after the other
 * over the same steps (their trajectories are independent), so one member's weights stay in cache.
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
#define NCLS 4

typedef struct {
    int maxpool;
    int x_len;            /* conv1 input per sample: padded image (maxpool) or its four phases */
    int off1[TAPS], p1;   /* conv1 tap offsets, output positions per channel (a1's channel stride) */
    int in2_cs;           /* conv2 input channel stride: pooled map, or a1's four phases */
    int off2[TAPS], p2;   /* conv2 tap offsets, output positions per channel */
    int32_t dst1[C1 * 196];     /* where each of conv2's 8x14x14 inputs lives in its input buffer */
    int32_t pool1_at[C1 * 196]; /* the conv1 output feeding it: its pooling window's first element (maxpool),
                                   or the element itself */
} Geometry;

static Geometry geometry(int maxpool) {
    Geometry g;
    g.maxpool = maxpool;
    for (int k = 0; k < TAPS; k++) {
        int ki = k / 3, kj = k % 3;
        if (maxpool) {
            g.off1[k] = ki * 30 + kj;  /* 30x30 zero-padded image */
            g.off2[k] = ki * 14 + kj;  /* 14x14 pooled map */
        } else {
            int phase = (ki % 2) * 2 + kj % 2;
            g.off1[k] = phase * 232 + (ki / 2) * 15 + kj / 2;  /* four 15x15 phases of the padded image */
            g.off2[k] = phase * 52 + (ki / 2) * 7 + kj / 2;    /* four 7x7 phases of conv1's 14x14 map */
        }
    }
    g.x_len = maxpool ? 30 * 30 + 8 : 4 * 232;
    g.p1 = maxpool ? 28 * 30 : 14 * 15;
    g.in2_cs = maxpool ? 14 * 14 + 4 : 4 * 52;
    g.p2 = maxpool ? 12 * 14 : 6 * 7;
    for (int c = 0; c < C1; c++)
        for (int r = 0; r < 14; r++)
            for (int q = 0; q < 14; q++) {
                const int n = c * 196 + r * 14 + q;
                if (maxpool) {
                    g.dst1[n] = c * g.in2_cs + r * 14 + q;
                    g.pool1_at[n] = c * g.p1 + 2 * r * 30 + 2 * q;
                } else {
                    g.dst1[n] = c * g.in2_cs + ((r % 2) * 2 + q % 2) * 52 + (r / 2) * 7 + q / 2;
                    g.pool1_at[n] = c * g.p1 + r * 15 + q;
                }
            }
    return g;
}

/* --- convolutions ---------------------------------------------------------------------------------------- */

/* out[co][p] = relu(bias[co] + sum_ci sum_k w[co][ci][k] in[ci][off[k] + p]), p < P */
static void conv_forward(const float *restrict in, int cin, int cs_in, const int *off, const float *restrict w,
                         const float *restrict bias, float *restrict out, int cout, int P) {
    for (int co = 0; co < cout; co++) {
        float *restrict o = out + co * P;
        for (int p = 0; p < P; p++) o[p] = bias[co];
        for (int ci = 0; ci < cin; ci++) {
            const float *s = in + ci * cs_in;
            const float *wk = w + (co * cin + ci) * TAPS;
            const float *s0 = s + off[0], *s1 = s + off[1], *s2 = s + off[2], *s3 = s + off[3],
                        *s4 = s + off[4], *s5 = s + off[5], *s6 = s + off[6], *s7 = s + off[7], *s8 = s + off[8];
            for (int p = 0; p < P; p++)
                o[p] += wk[0] * s0[p] + wk[1] * s1[p] + wk[2] * s2[p] + wk[3] * s3[p] + wk[4] * s4[p]
                      + wk[5] * s5[p] + wk[6] * s6[p] + wk[7] * s7[p] + wk[8] * s8[p];
        }
        for (int p = 0; p < P; p++) o[p] = o[p] > 0.f ? o[p] : 0.f;
    }
}

/* gw[co][ci][k] += sum_p g[co][p] in[ci][off[k] + p]; gb[co] += sum_p g[co][p] */
static void conv_grad_weights(const float *restrict in, int cin, int cs_in, const int *off,
                              const float *restrict g, int cout, int P, float *restrict gw, float *restrict gb) {
    for (int co = 0; co < cout; co++) {
        const float *gc = g + co * P;
        float sb = 0.f;
#pragma omp simd reduction(+ : sb)
        for (int p = 0; p < P; p++) sb += gc[p];
        gb[co] += sb;
        for (int ci = 0; ci < cin; ci++) {
            const float *s = in + ci * cs_in;
            const float *s0 = s + off[0], *s1 = s + off[1], *s2 = s + off[2], *s3 = s + off[3],
                        *s4 = s + off[4], *s5 = s + off[5], *s6 = s + off[6], *s7 = s + off[7], *s8 = s + off[8];
            float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f, a4 = 0.f, a5 = 0.f, a6 = 0.f, a7 = 0.f, a8 = 0.f;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7, a8)
            for (int p = 0; p < P; p++) {
                float v = gc[p];
                a0 += v * s0[p]; a1 += v * s1[p]; a2 += v * s2[p]; a3 += v * s3[p]; a4 += v * s4[p];
                a5 += v * s5[p]; a6 += v * s6[p]; a7 += v * s7[p]; a8 += v * s8[p];
            }
            float *gk = gw + (co * cin + ci) * TAPS;
            gk[0] += a0; gk[1] += a1; gk[2] += a2; gk[3] += a3; gk[4] += a4;
            gk[5] += a5; gk[6] += a6; gk[7] += a7; gk[8] += a8;
        }
    }
}

/* gin[ci][off[k] + p] += w[co][ci][k] g[co][p]: each output's gradient back to the inputs it read */
static void conv_grad_input(const float *restrict g, int cout, int P, const int *off, const float *restrict w,
                            int cin, int cs_in, float *restrict gin) {
    memset(gin, 0, sizeof(float) * cin * cs_in);
    for (int ci = 0; ci < cin; ci++)
        for (int co = 0; co < cout; co++) {
            const float *gc = g + co * P;
            const float *wk = w + (co * cin + ci) * TAPS;
            for (int k = 0; k < TAPS; k++) {
                float *restrict d = gin + ci * cs_in + off[k];
                const float wv = wk[k];
                for (int p = 0; p < P; p++) d[p] += wv * gc[p];
            }
        }
}

/* --- fully connected layers ------------------------------------------------------------------------------- */

/* Batches are processed in blocks of 8 rows (batch matrices are padded with zero rows to a multiple of 8),
 * 16 outputs at a time: the 8 rows' sums stay in registers and every weight is loaded once per pass. */
typedef float v16 __attribute__((vector_size(64), aligned(4)));
#define LANES 16
#define BLOCK 8

static inline v16 vload(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline float hsum(v16 v) {
    float s = 0.f;
    for (int l = 0; l < LANES; l++) s += v[l];
    return s;
}

/* The parameter update of PyTorch's SGD without momentum: p <- p - lr (grad + l2 p) */
static inline float sgd(float p, float grad, float lr, float l2) { return p - lr * (grad + l2 * p); }

/* y[b][o] = bias[o] + sum_i x[b][i] W[i][o] (W transposed, as StackedCNN holds it), then ReLU if asked */
static void linear_forward(const float *restrict x, int rows, int nin, int nout, const float *restrict W,
                           const float *restrict bias, float *restrict y, int relu) {
    const int nv = nout - nout % LANES;
    for (int b0 = 0; b0 < rows; b0 += BLOCK) {
        const float *xb = x + b0 * nin;
        float *yb = y + b0 * nout;
        for (int o = 0; o < nv; o += LANES) {
            v16 acc[BLOCK];
            for (int b = 0; b < BLOCK; b++) acc[b] = vload(bias + o);
            for (int i = 0; i < nin; i++) {
                const v16 wv = vload(W + i * nout + o);
                for (int b = 0; b < BLOCK; b++) acc[b] += xb[b * nin + i] * wv;
            }
            for (int b = 0; b < BLOCK; b++) vstore(yb + b * nout + o, acc[b]);
        }
        for (int o = nv; o < nout; o++)
            for (int b = 0; b < BLOCK; b++) {
                float acc = bias[o];
                for (int i = 0; i < nin; i++) acc += xb[b * nin + i] * W[i * nout + o];
                yb[b * nout + o] = acc;
            }
    }
    if (relu)
        for (int n = 0; n < rows * nout; n++) y[n] = y[n] > 0.f ? y[n] : 0.f;
}

/* Given g = dL/dy: gx = g W^T with the weights as they were (if gx), then W and bias take their SGD step;
 * one pass over W. Inlined with rows = 8 (the homework's batch), so the 8 sums live in registers. */
static inline __attribute__((always_inline)) void
linear_backward_sgd_rows(const float *restrict x, const float *restrict g, int rows, int nin, int nout,
                         float *restrict W, float *restrict bias, float lr, float l2, float *restrict gx) {
    const int nv = nout - nout % LANES;
    for (int i = 0; i < nin; i++) {
        float *wi = W + i * nout;
        v16 acc[rows];
        for (int b = 0; b < rows; b++) acc[b] = (v16){0};
        for (int o = 0; o < nv; o += LANES) {
            const v16 wv = vload(wi + o);
            v16 grad = {0};
            for (int b = 0; b < rows; b++) {
                const v16 gv = vload(g + b * nout + o);
                acc[b] += gv * wv;
                grad += x[b * nin + i] * gv;
            }
            vstore(wi + o, wv - lr * (grad + l2 * wv));
        }
        float tail[rows];
        for (int b = 0; b < rows; b++) tail[b] = 0.f;
        for (int o = nv; o < nout; o++) {
            float grad = 0.f;
            for (int b = 0; b < rows; b++) {
                tail[b] += g[b * nout + o] * wi[o];
                grad += x[b * nin + i] * g[b * nout + o];
            }
            wi[o] = sgd(wi[o], grad, lr, l2);
        }
        if (gx)
            for (int b = 0; b < rows; b++) gx[b * nin + i] = hsum(acc[b]) + tail[b];
    }
    for (int o = 0; o < nout; o++) {
        float s = 0.f;
        for (int b = 0; b < rows; b++) s += g[b * nout + o];
        bias[o] = sgd(bias[o], s, lr, l2);
    }
}

static void linear_backward_sgd(const float *x, const float *g, int rows, int nin, int nout, float *W,
                                float *bias, float lr, float l2, float *gx) {
    if (rows == BLOCK) linear_backward_sgd_rows(x, g, BLOCK, nin, nout, W, bias, lr, l2, gx);
    else linear_backward_sgd_rows(x, g, rows, nin, nout, W, bias, lr, l2, gx);
}

/* --- one member's step -------------------------------------------------------------------------------------- */

typedef struct {
    float *x, *a1, *in2, *a2;      /* per sample: conv1 input, conv1 output, conv2 input, conv2 output */
    float *feat, *r1, *d1, *h2, *z; /* per batch: features, fc1 (ReLU), after dropout, fc2 (ReLU), logits */
    float *gz, *gh2, *gd1, *gfeat; /* their gradients */
    float *g2, *gin2, *g1;         /* per sample: conv2 output, conv2 input and conv1 output gradients */
    float *gw1, *gb1, *gw2, *gb2;
    int32_t *src1, *src2;  /* per sample: which conv1 output feeds each conv2 input (the pooled maximum, or
                              the phase split) and which conv2 output each feature is */
} Work;

typedef struct {
    float *w1, *b1, *w2, *b2, *f1w, *f1b, *f2w, *f2b, *f3w, *f3b;
} Params;

/* the first maximum of a 2x2 window, as PyTorch's max_pool2d picks it (scan order, strict >); without
 * branches, which the data would mispredict half the time */
static inline int first_max(const float *a, int i00, int width) {
    int best = i00;
    float m = a[i00];
    const int cand[3] = {i00 + 1, i00 + width, i00 + width + 1};
    for (int n = 0; n < 3; n++) {
        const float v = a[cand[n]];
        const int better = v > m;
        best = better ? cand[n] : best;
        m = better ? v : m;
    }
    return best;
}

/* conv1 input of one image: the zero-padded 30x30 image, or its four 15x15 phases (pad 1, stride 2) */
static void conv1_input(const Geometry *geo, const float *img, float *x) {
    memset(x, 0, sizeof(float) * geo->x_len);
    for (int r = 1; r <= 28; r++)
        for (int c = 1; c <= 28; c++) {
            float v = img[(r - 1) * 28 + (c - 1)];
            if (geo->maxpool) x[r * 30 + c] = v;
            else x[((r % 2) * 2 + c % 2) * 232 + (r / 2) * 15 + c / 2] = v;
        }
}

static float member_step(const Geometry *geo, const Params *P, Work *w, const float *xs, const int64_t *ys,
                         int B, const float *noise, float lr, float l2) {
    const int s_a1 = C1 * geo->p1, s_in2 = C1 * geo->in2_cs, s_a2 = C2 * geo->p2;
    /* forward, sample by sample through the convolutions */
    for (int b = 0; b < B; b++) {
        const float *x = xs + b * geo->x_len;
        float *a1 = w->a1 + b * s_a1, *in2 = w->in2 + b * s_in2, *a2 = w->a2 + b * s_a2;
        float *feat = w->feat + b * FLAT;
        conv_forward(x, 1, 0, geo->off1, P->w1, P->b1, a1, C1, geo->p1);
        int32_t *src1 = w->src1 + b * C1 * 196, *src2 = w->src2 + b * FLAT;
        memset(in2, 0, sizeof(float) * s_in2);
        if (geo->maxpool)
            for (int n = 0; n < C1 * 196; n++) src1[n] = first_max(a1, geo->pool1_at[n], 30);
        else
            memcpy(src1, geo->pool1_at, sizeof(int32_t) * C1 * 196);
        for (int n = 0; n < C1 * 196; n++) in2[geo->dst1[n]] = a1[src1[n]];
        conv_forward(in2, C1, geo->in2_cs, geo->off2, P->w2, P->b2, a2, C2, geo->p2);
        for (int c = 0; c < C2; c++)
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    const int n = c * 36 + i * 6 + j, base = c * geo->p2;
                    src2[n] = base + (geo->maxpool ? first_max(a2 + base, 2 * i * 14 + 2 * j, 14) : i * 7 + j);
                    feat[n] = a2[src2[n]];
                }
    }
    /* the fully connected head on the batch, padded with zero rows to R */
    const int R = (B + BLOCK - 1) / BLOCK * BLOCK;
    memset(w->feat + B * FLAT, 0, sizeof(float) * (R - B) * FLAT);
    linear_forward(w->feat, R, FLAT, H1, P->f1w, P->f1b, w->r1, 1);
    for (int n = 0; n < R * H1; n++) w->d1[n] = n >= B * H1 ? 0.f : noise ? w->r1[n] * noise[n] : w->r1[n];
    linear_forward(w->d1, R, H1, H2, P->f2w, P->f2b, w->h2, 1);
    linear_forward(w->h2, R, H2, NCLS, P->f3w, P->f3b, w->z, 0);
    memset(w->gz, 0, sizeof(float) * R * NCLS);
    /* log-softmax, NLLLoss (batch mean) and its gradient (softmax - onehot) / B */
    float loss = 0.f;
    for (int b = 0; b < B; b++) {
        const float *z = w->z + b * NCLS;
        float m = z[0];
        for (int k = 1; k < NCLS; k++) m = z[k] > m ? z[k] : m;
        float s = 0.f;
        for (int k = 0; k < NCLS; k++) s += expf(z[k] - m);
        const float lse = m + logf(s);
        loss -= z[ys[b]] - lse;
        for (int k = 0; k < NCLS; k++)
            w->gz[b * NCLS + k] = (expf(z[k] - lse) - (k == ys[b] ? 1.f : 0.f)) / (float)B;
    }
    loss /= (float)B;
    /* backward through the head, each layer taking its SGD step once its input gradient is out */
    linear_backward_sgd(w->h2, w->gz, R, H2, NCLS, P->f3w, P->f3b, lr, l2, w->gh2);
    for (int n = 0; n < R * H2; n++) w->gh2[n] = w->h2[n] > 0.f ? w->gh2[n] : 0.f;
    linear_backward_sgd(w->d1, w->gh2, R, H1, H2, P->f2w, P->f2b, lr, l2, w->gd1);
    for (int n = 0; n < R * H1; n++)
        w->gd1[n] = n < B * H1 && w->r1[n] > 0.f ? (noise ? w->gd1[n] * noise[n] : w->gd1[n]) : 0.f;
    linear_backward_sgd(w->feat, w->gd1, R, FLAT, H1, P->f1w, P->f1b, lr, l2, w->gfeat);
    /* backward through the convolutions, sample by sample, gradients summed over the batch */
    memset(w->gw1, 0, sizeof(float) * C1 * TAPS);
    memset(w->gb1, 0, sizeof(float) * C1);
    memset(w->gw2, 0, sizeof(float) * C2 * C1 * TAPS);
    memset(w->gb2, 0, sizeof(float) * C2);
    for (int b = 0; b < B; b++) {
        const float *x = xs + b * geo->x_len;
        const float *a1 = w->a1 + b * s_a1, *in2 = w->in2 + b * s_in2, *a2 = w->a2 + b * s_a2;
        const float *gfeat = w->gfeat + b * FLAT;
        const int32_t *src1 = w->src1 + b * C1 * 196, *src2 = w->src2 + b * FLAT;
        /* through pooling (or the gather) and ReLU: each selected output gets its gradient if it was positive */
        memset(w->g2, 0, sizeof(float) * s_a2);
        for (int n = 0; n < FLAT; n++) w->g2[src2[n]] = a2[src2[n]] > 0.f ? gfeat[n] : 0.f;
        conv_grad_weights(in2, C1, geo->in2_cs, geo->off2, w->g2, C2, geo->p2, w->gw2, w->gb2);
        conv_grad_input(w->g2, C2, geo->p2, geo->off2, P->w2, C1, geo->in2_cs, w->gin2);
        memset(w->g1, 0, sizeof(float) * s_a1);
        for (int n = 0; n < C1 * 196; n++) w->g1[src1[n]] = a1[src1[n]] > 0.f ? w->gin2[geo->dst1[n]] : 0.f;
        conv_grad_weights(x, 1, 0, geo->off1, w->g1, C1, geo->p1, w->gw1, w->gb1);
    }
    for (int n = 0; n < C1 * TAPS; n++) P->w1[n] = sgd(P->w1[n], w->gw1[n], lr, l2);
    for (int n = 0; n < C1; n++) P->b1[n] = sgd(P->b1[n], w->gb1[n], lr, l2);
    for (int n = 0; n < C2 * C1 * TAPS; n++) P->w2[n] = sgd(P->w2[n], w->gw2[n], lr, l2);
    for (int n = 0; n < C2; n++) P->b2[n] = sgd(P->b2[n], w->gb2[n], lr, l2);
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
    const Geometry geo = geometry(maxpool);
    const int bs = batch_size, rows = (bs + BLOCK - 1) / BLOCK * BLOCK;
    Work w;
    /* one allocation, cut into 64-byte aligned slices (floats and int32s alike: 4 bytes each) */
    struct { void *slot; size_t n; } bufs[] = {
        {&w.x, (size_t)bs * geo.x_len}, {&w.a1, (size_t)bs * C1 * geo.p1}, {&w.in2, (size_t)bs * C1 * geo.in2_cs},
        {&w.a2, (size_t)bs * C2 * geo.p2}, {&w.feat, (size_t)rows * FLAT}, {&w.r1, (size_t)rows * H1},
        {&w.d1, (size_t)rows * H1}, {&w.h2, (size_t)rows * H2}, {&w.z, (size_t)rows * NCLS},
        {&w.gz, (size_t)rows * NCLS}, {&w.gh2, (size_t)rows * H2}, {&w.gd1, (size_t)rows * H1},
        {&w.gfeat, (size_t)rows * FLAT}, {&w.g2, (size_t)C2 * geo.p2}, {&w.gin2, (size_t)C1 * geo.in2_cs},
        {&w.g1, (size_t)C1 * geo.p1}, {&w.gw1, C1 * TAPS}, {&w.gb1, C1}, {&w.gw2, C2 * C1 * TAPS}, {&w.gb2, C2},
        {&w.src1, (size_t)bs * C1 * 196}, {&w.src2, (size_t)bs * FLAT},
    };
    const int nbufs = sizeof(bufs) / sizeof(bufs[0]);
    size_t total = 0;
    for (int i = 0; i < nbufs; i++) total += (bufs[i].n + 15) & ~(size_t)15;
    float *pool = aligned_alloc(64, total * sizeof(float));
    if (!pool) return -1;
    float *cursor = pool;
    for (int i = 0; i < nbufs; i++) {
        *(void **)bufs[i].slot = cursor;
        cursor += (bufs[i].n + 15) & ~(size_t)15;
    }

    /* member by member (their trajectories are independent), so one member's weights stay in cache */
    const int64_t steps = (n + bs - 1) / bs;
    for (int g = 0; g < G; g++) {
        Params P = {w1 + g * C1 * TAPS, b1 + g * C1, w2 + g * C2 * C1 * TAPS, b2 + g * C2,
                    f1w + (size_t)g * FLAT * H1, f1b + g * H1, f2w + g * H1 * H2, f2b + g * H2,
                    f3w + g * H2 * NCLS, f3b + g * NCLS};
        for (int64_t s = 0; s < steps; s++) {
            const int B = (int)((n - s * bs) < bs ? (n - s * bs) : bs);
            for (int b = 0; b < B; b++) conv1_input(&geo, X + (s * bs + b) * 784, w.x + b * geo.x_len);
            const float *nz = noise ? noise + s * bs * H1 : NULL;
            losses[s * G + g] = member_step(&geo, &P, &w, w.x, y + s * bs, B, nz, lrs[g], l2);
        }
    }
    free(pool);
    return 0;
}
