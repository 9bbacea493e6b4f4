/* The arithmetic of mvcore's all-view DLT triangulation, one point at a time in plain C:
 * a floor for what any implementation of the same estimator can cost on a CPU
 * (bench/bench_triangulation_floor.py builds and times it; not part of mvcore).
 *
 * Per point: K^-1, Newton undistortion (radial-only: on the radial scale; otherwise on
 * (x, y)), the conditioned 4x4 normal matrix of all finite views, the closed-form smallest
 * eigenvector (3x3 adjugate solve + Rayleigh-quotient updates with mvcore's convergence
 * test), the depth check in every view and the ray-angle check over every camera pair.
 * Left out (rare paths, no cost on well-posed input): the per-point frame when views are
 * missing, the eigh fallback, the re-solve without views behind a camera.
 */
#include <math.h>
#include <stddef.h>

#define MAXV 16

typedef struct {
    double kinv[9];  /* K^-1, row-major */
    double k1, k2, p1, p2, k3;
    double proj[12]; /* [s R | R o + t] rows a, b, c (the conditioned camera) */
    double rot_z[4]; /* third row of [R | t] (depth) */
    double center[3];
} camera_t;

static int undistort(const camera_t *c, double u, double v, double *x, double *y) {
    double rho = u * u + v * v;
    double tol = 1e-9 > 64 * 2.220446049250313e-16 ? 1e-9 : 64 * 2.220446049250313e-16;
    double thresh = (sqrt(rho) + 1.0) * (sqrt(rho) + 1.0) * tol * tol;
    double s = 1.0 + rho * (-c->k1 + rho * (3.0 * c->k1 * c->k1 - c->k2));
    if (c->p1 == 0.0 && c->p2 == 0.0) {
        double prev = INFINITY;
        for (int i = 0; i < 20; i++) {
            double q = rho * s * s;
            double radial = 1.0 + q * (c->k1 + q * (c->k2 + q * c->k3));
            double d_radial = c->k1 + q * (2.0 * c->k2 + 3.0 * c->k3 * q);
            double slope = radial + 2.0 * q * d_radial;
            double f = s * radial - 1.0;
            s -= f / slope;
            if (i >= 3) {
                double res2 = f * f * rho;
                int branch = radial > 0 && slope > 0 && q < 1e4;
                if (branch && res2 <= thresh) { *x = u * s; *y = v * s; return 1; }
                if (!branch || !(res2 < 0.25 * prev)) return 0;
                prev = res2;
            }
        }
        return 0;
    }
    double px = u * s, py = v * s, prev = INFINITY;
    for (int i = 0; i < 20; i++) {
        double xx = px * px, yy = py * py, xy = px * py, r2 = xx + yy;
        double radial = 1.0 + r2 * (c->k1 + r2 * (c->k2 + r2 * c->k3));
        double d_radial = c->k1 + r2 * (2.0 * c->k2 + 3.0 * c->k3 * r2);
        double a = radial + 2.0 * (c->p1 * py + c->p2 * px);
        double rx = px * a + r2 * c->p2 - u, ry = py * a + r2 * c->p1 - v;
        double jxx = a + 2.0 * d_radial * xx + 4.0 * c->p2 * px;
        double jyy = a + 2.0 * d_radial * yy + 4.0 * c->p1 * py;
        double jxy = 2.0 * (c->p2 * py + c->p1 * px + d_radial * xy);
        double det = jxx * jyy - jxy * jxy;
        px -= (jyy * rx - jxy * ry) / det;
        py -= (jxx * ry - jxy * rx) / det;
        if (i >= 3) {
            double res2 = rx * rx + ry * ry;
            int branch = det > 0 && jxx > 0 && r2 < 1e4;
            if (branch && res2 <= thresh) { *x = px; *y = py; return 1; }
            if (!branch || !(res2 < 0.25 * prev)) return 0;
            prev = res2;
        }
    }
    return 0;
}

/* points (N, V, 2) pixels (NaN = missing), V cameras, world frame origin/spread;
 * out (N, 3) world points, NaN where fewer than 2 views, behind a camera or too narrow.
 * Returns how many points needed the (omitted) eigh fallback or per-point frame. */
int triangulate_floor(const double *points, long n, int nv, const camera_t *cams,
                      const double *origin, double spread, double max_cos2, double *out) {
    int skipped = 0;
    for (long p = 0; p < n; p++) {
        double m[10] = {0};
        int used = 0, seen[MAXV];
        for (int v = 0; v < nv; v++) {
            const camera_t *c = &cams[v];
            double pu = points[(p * nv + v) * 2], pv = points[(p * nv + v) * 2 + 1];
            seen[v] = 0;
            if (!isfinite(pu + pv)) continue;
            const double *ki = c->kinv;
            double h0 = ki[0] * pu + ki[1] * pv + ki[2];
            double h1 = ki[3] * pu + ki[4] * pv + ki[5];
            double h2 = ki[6] * pu + ki[7] * pv + ki[8];
            double x, y;
            if (!undistort(c, h0 / h2, h1 / h2, &x, &y)) continue;
            const double *a = c->proj, *b = c->proj + 4, *cc = c->proj + 8;
            double r1[4], r2[4];
            for (int j = 0; j < 4; j++) { r1[j] = x * cc[j] - a[j]; r2[j] = y * cc[j] - b[j]; }
            static const int ri[10] = {0, 0, 0, 1, 1, 2, 0, 1, 2, 3};
            static const int ci[10] = {0, 1, 2, 1, 2, 2, 3, 3, 3, 3};
            for (int e = 0; e < 10; e++) m[e] += r1[ri[e]] * r1[ci[e]] + r2[ri[e]] * r2[ci[e]];
            seen[v] = 1;
            used++;
        }
        double *o = out + p * 3;
        if (used < 2) { o[0] = o[1] = o[2] = NAN; continue; }
        if (used < nv) skipped++;
        double A = m[0], B = m[1], C = m[2], D = m[3], E = m[4], F = m[5];
        double g0 = m[6], g1 = m[7], g2 = m[8], cst = m[9];
        double c0 = D * F - E * E, c1 = C * E - B * F, c2 = B * E - C * D;
        double c3 = A * F - C * C, c4 = B * C - A * E, c5 = A * D - B * B;
        double det0 = A * c0 + B * c1 + C * c2, tr = A + D + F, minors = c0 + c3 + c5;
        double floor_ = fabs(tr) * fabs(tr) * fabs(tr) * 1e-12;
        if (floor_ < 2.2250738585072014e-308) floor_ = 2.2250738585072014e-308;
        double y0[3] = {c0 * g0 + c1 * g1 + c2 * g2, c1 * g0 + c3 * g1 + c4 * g2,
                        c2 * g0 + c4 * g1 + c5 * g2};
        double y1[3] = {A * g0 + B * g1 + C * g2 - tr * g0, B * g0 + D * g1 + E * g2 - tr * g1,
                        C * g0 + E * g1 + F * g2 - tr * g2};
        double g[3] = {g0, g1, g2};
        double lam = 0.0, xs[3], det = det0 > floor_ ? det0 : floor_;
        for (int i = 0; i < 3; i++) xs[i] = -y0[i] / det;
        double gx = g0 * xs[0] + g1 * xs[1] + g2 * xs[2] + cst;
        double xx = 1.0 + xs[0] * xs[0] + xs[1] * xs[1] + xs[2] * xs[2];
        lam = gx / xx;
        int ok = 0;
        for (int it = 0; it < 5; it++) {
            det = ((tr - lam) * lam - minors) * lam + det0;
            if (det < floor_) det = floor_;
            for (int i = 0; i < 3; i++) xs[i] = -(y0[i] + lam * y1[i] + lam * lam * g[i]) / det;
            gx = g0 * xs[0] + g1 * xs[1] + g2 * xs[2] + cst;
            xx = 1.0 + xs[0] * xs[0] + xs[1] * xs[1] + xs[2] * xs[2];
            double following = lam + (gx - lam) / xx;
            if (it >= 1) {
                double sm = minors - 2.0 * tr * lam + 3.0 * lam * lam;
                if (tr > 3.0 * lam && sm > 0 && det > floor_
                    && fabs(following - lam) * sm <= 1e-10 * det) { ok = 1; break; }
            }
            lam = following;
        }
        if (!ok) skipped++;
        double w[3] = {origin[0] + spread * xs[0], origin[1] + spread * xs[1],
                       origin[2] + spread * xs[2]};
        int good = 1;
        double unit[MAXV][3];
        for (int v = 0; v < nv && good; v++) {
            if (!seen[v]) continue;
            const double *rz = cams[v].rot_z;
            if (rz[0] * w[0] + rz[1] * w[1] + rz[2] * w[2] + rz[3] <= 0) good = 0;
            double d[3] = {w[0] - cams[v].center[0], w[1] - cams[v].center[1],
                           w[2] - cams[v].center[2]};
            double inv = 1.0 / sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
            for (int j = 0; j < 3; j++) unit[v][j] = d[j] * inv;
        }
        double widest = 1.0;
        for (int v = 0; v < nv; v++) {
            if (!seen[v]) continue;
            for (int u2 = v + 1; u2 < nv; u2++) {
                if (!seen[u2]) continue;
                double cs = unit[v][0] * unit[u2][0] + unit[v][1] * unit[u2][1]
                            + unit[v][2] * unit[u2][2];
                if (cs * cs < widest) widest = cs * cs;
            }
        }
        if (!good || widest > max_cos2) { o[0] = o[1] = o[2] = NAN; continue; }
        o[0] = w[0]; o[1] = w[1]; o[2] = w[2];
    }
    return skipped;
}
