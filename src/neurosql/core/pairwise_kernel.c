#include <stdlib.h>
#include <string.h>

#define NW 11           /* window side */
/* Floats per vector: one register's worth. A wider vector than the registers (16 floats on an
   AVX2 CPU) makes the RI x KV accumulators spill to the stack, 6x slower at 64x64. */
#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4            /* SSE, NEON */
#endif
#define KB (KV * VL)    /* columns of y per register block; RI rows of x and KV from -D flags */
typedef float vec __attribute__((vector_size(VL * sizeof(float))));
typedef int ivec __attribute__((vector_size(VL * sizeof(int))));

static inline vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }  /* unaligned */
static inline void store(float *p, vec v) { memcpy(p, &v, sizeof v); }

/* Features of strip (ch, c), the output positions (., c) of channel ch, for a rows of x,
   (a, S) with S = NW H + NW H' + 3 H': sqrt(2 g_s) (x(q, c+s) - h(q, c)) for input rows q,
   sqrt(2 g_t) (h(p+t, c) - mu(p, c)) for output rows p, then mu, mu^2 + C1/2, var + C2/2.
   The variance comes from the same centred values (law of total variance), not from
   E[x^2] - mu^2, which cancels in float32 on flat bright windows.
   x (a, C, H, W) pixels, m (a, C, H', W') local means; h, e scratch of H floats. */
static void x_features(const float *x, const float *m, int a, int C, int H, int W, int ch, int c,
                       const float *g, const float *r, float c1, float c2, float *out, float *h, float *e)
{
    int Hp = H - NW + 1, Wp = W - NW + 1, S = NW * H + NW * Hp + 3 * Hp;
    for (int i = 0; i < a; i++, out += S) {
        const float *img = x + ((size_t)i * C + ch) * H * W + c, *mu = m + ((size_t)i * C + ch) * Hp * Wp + c;
        for (int q = 0; q < H; q++) {
            float acc = 0, sq = 0;
            for (int s = 0; s < NW; s++) acc += g[s] * img[q * W + s];
            for (int s = 0; s < NW; s++) {
                float f = r[s] * (img[q * W + s] - acc);
                out[q * NW + s] = f, sq += f * f;
            }
            h[q] = acc, e[q] = sq;  /* horizontal mean and twice the horizontal variance */
        }
        float *v = out + NW * H, *u = v + NW * Hp;
        for (int p = 0; p < Hp; p++) {
            float mp = mu[p * Wp], var2 = 0;
            for (int t = 0; t < NW; t++) {
                float f = r[t] * (h[p + t] - mp);
                v[p * NW + t] = f, var2 += g[t] * e[p + t] + f * f;
            }
            u[3 * p] = mp, u[3 * p + 1] = mp * mp + c1 / 2, u[3 * p + 2] = (var2 + c2) / 2;
        }
    }
}

/* The same features for columns k0..k0+b of y, columns last: (S, b).
   y (C, H, W, ld) and m (C, H', W', ld) with ld columns; h, e scratch of H vectors. */
static void y_features(const float *y, const float *m, size_t ld, int k0, int b, int H, int W, int ch, int c,
                       const float *g, const float *r, float c1, float c2, float *out, float *h, float *e)
{
    int Hp = H - NW + 1, Wp = W - NW + 1;
    for (int k = 0; k < b; k += VL) {
        for (int q = 0; q < H; q++) {
            const float *row = y + (((size_t)ch * H + q) * W + c) * ld + k0 + k;
            vec v[NW], acc = {0}, sq = {0};
            for (int s = 0; s < NW; s++) v[s] = load(row + s * ld), acc += g[s] * v[s];
            for (int s = 0; s < NW; s++) {
                vec f = r[s] * (v[s] - acc);
                store(out + (size_t)(q * NW + s) * b + k, f), sq += f * f;
            }
            store(h + q * VL, acc), store(e + q * VL, sq);
        }
        const float *mu = m + ((size_t)ch * Hp * Wp + c) * ld + k0 + k;
        float *v = out + (size_t)NW * H * b + k, *u = v + (size_t)NW * Hp * b;
        for (int p = 0; p < Hp; p++) {
            vec mp = load(mu + (size_t)p * Wp * ld), var2 = {0};
            for (int t = 0; t < NW; t++) {
                vec f = r[t] * (load(h + (p + t) * VL) - mp);
                store(v + (size_t)(p * NW + t) * b, f), var2 += g[t] * load(e + (p + t) * VL) + f * f;
            }
            store(u + (size_t)(3 * p) * b, mp);
            store(u + (size_t)(3 * p + 1) * b, mp * mp + c1 / 2);
            store(u + (size_t)(3 * p + 2) * b, (var2 + c2) / 2);
        }
    }
}

/* Adds the SSIM map of one strip, summed over its H' rows, for RI x KB pairs to out (row stride ldo).
   fx: RI rows of x features (stride S); fy: KB columns of y features (row stride b). */
static void strip(const float *fx, const float *fy, int b, int H, const float *g, float c1, float c2,
                  float *out, size_t ldo)
{
    int Hp = H - NW + 1, S = NW * H + NW * Hp + 3 * Hp;
    const float *fyv = fy + (size_t)NW * H * b, *fyu = fyv + (size_t)NW * Hp * b;
    vec ring[NW][RI][KV];  /* the horizontal sums of the last NW input rows */
    vec acc[RI][KV] = {{{0}}};
    for (int q = 0; q < H; q++) {
        vec hs[RI][KV] = {{{0}}};
        for (int s = 0; s < NW; s++) {
            vec yv[KV];
            for (int j = 0; j < KV; j++) yv[j] = load(fy + (size_t)(q * NW + s) * b + j * VL);
            for (int i = 0; i < RI; i++)
                for (int j = 0; j < KV; j++) hs[i][j] += fx[i * S + q * NW + s] * yv[j];
        }
        memcpy(ring[q % NW], hs, sizeof hs);
        int p = q - (NW - 1);  /* the output row whose window ends at input row q */
        if (p < 0) continue;
        vec cv[RI][KV] = {{{0}}};  /* becomes 2 cov */
        for (int t = 0; t < NW; t++)
            for (int i = 0; i < RI; i++)
                for (int j = 0; j < KV; j++) cv[i][j] += g[t] * ring[(p + t) % NW][i][j];
        for (int t = 0; t < NW; t++) {
            vec yv[KV];
            for (int j = 0; j < KV; j++) yv[j] = load(fyv + (size_t)(p * NW + t) * b + j * VL);
            for (int i = 0; i < RI; i++)
                for (int j = 0; j < KV; j++) cv[i][j] += fx[i * S + NW * H + p * NW + t] * yv[j];
        }
        for (int j = 0; j < KV; j++) {
            vec my = load(fyu + (size_t)(3 * p) * b + j * VL), uy = load(fyu + (size_t)(3 * p + 1) * b + j * VL);
            vec vy = load(fyu + (size_t)(3 * p + 2) * b + j * VL);
            for (int i = 0; i < RI; i++) {
                const float *u = fx + i * S + NW * (H + Hp) + 3 * p;
                acc[i][j] += (2 * u[0] * my + c1) * (cv[i][j] + c2) / ((u[1] + uy) * (u[2] + vy));
            }
        }
    }
    for (int i = 0; i < RI; i++)
        for (int j = 0; j < KV; j++) store(out + i * ldo + j * VL, load(out + i * ldo + j * VL) + acc[i][j]);
}

/* out[i][k] += SSIM map of (x_i, y_k) summed over channels and valid positions, for rows 0..a of x
   (a % RI == 0) and columns k0..k1 of y ((k1 - k0) % KB == 0). Returns 1 if out of memory. */
int ssim_sums(const float *x, const float *mx, int a, const float *y, const float *my, size_t ld, int k0, int k1,
              int C, int H, int W, const float *g, const float *r, float c1, float c2, float *out, size_t ldo)
{
    int Hp = H - NW + 1, Wp = W - NW + 1, S = NW * H + NW * Hp + 3 * Hp, b = k1 - k0;
    float *fx = malloc(sizeof(float) * ((size_t)(a + b) * S + (size_t)2 * H * VL));
    if (!fx) return 1;
    float *fy = fx + (size_t)a * S, *h = fy + (size_t)S * b, *e = h + (size_t)H * VL;
    for (int ch = 0; ch < C; ch++)
        for (int c = 0; c < Wp; c++) {
            x_features(x, mx, a, C, H, W, ch, c, g, r, c1, c2, fx, h, e);
            y_features(y, my, ld, k0, b, H, W, ch, c, g, r, c1, c2, fy, h, e);
            for (int k = 0; k < b; k += KB)
                for (int i = 0; i < a; i += RI)
                    strip(fx + (size_t)i * S, fy + k, b, H, g, c1, c2, out + (size_t)i * ldo + k0 + k, ldo);
        }
    free(fx);
    return 0;
}

/* out[i][k] = sum_q |x_i(q) - y_k(q)| for rows 0..a of x (a, d) (a % RI == 0) and columns k0..k1 of
   y (d, ld), columns last ((k1 - k0) % KB == 0). */
void l1_sums(const float *x, int a, int d, const float *y, size_t ld, int k0, int k1, float *out, size_t ldo)
{
    for (int k = k0; k < k1; k += KB)
        for (int i0 = 0; i0 < a; i0 += RI) {
            vec acc[RI][KV] = {{{0}}};
            for (int q = 0; q < d; q++) {
                vec yv[KV];
                for (int j = 0; j < KV; j++) yv[j] = load(y + (size_t)q * ld + k + j * VL);
                for (int i = 0; i < RI; i++)
                    for (int j = 0; j < KV; j++)  /* |.| by clearing the sign bit */
                        acc[i][j] += (vec)((ivec)(x[(size_t)(i0 + i) * d + q] - yv[j]) & 0x7fffffff);
            }
            for (int i = 0; i < RI; i++)
                for (int j = 0; j < KV; j++) store(out + (size_t)(i0 + i) * ldo + k + j * VL, acc[i][j]);
        }
}

/* Columns of y per register block, KB: the caller pads the columns to a multiple of it. */
int col_block(void) { return KB; }
