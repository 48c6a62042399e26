// Converse2D: the pointwise math of the TensorRT plugin, shared by the CUDA kernels
// (converse2d_kernels.cu, compiled by nvcc) and the host build used by the tests
// (converse2d_host.cpp, compiled by g++).
//
// Every step that is not an FFT is written here once, as an "element" function that computes one
// output element from its flat index. The CUDA wrappers run them in grid-stride loops; the host
// build runs them in plain loops, with the FFTs done by numpy (pocketfft) in cuFFT's layout.
//
// Math (docs/OPERATORS.md, transfer-function form of the contract's division-free closed form):
//   y     = pad(x, p, mode)                                  (Hp x Wp = (H+2p) x (W+2p))
//   F(X)  = tile_s(F(y)) * G                                 (on the Hs x Ws = Hp*s x Wp*s grid)
//   G     = F(box) + conj(FK) * tile_s((1 - mean_s(FK * F(box))) / (mean_s|FK|^2 + lam))
//   G     = (conj(FK) + lam) / (|FK|^2 + lam)                (s = 1)
//   out   = crop(irfft2(F(X)), p*s)
// FK is the spectrum of the kernel zero-padded to Hs x Ws with its centre floor(k/2) rolled to the
// origin (the official p2o); F(box) is the spectrum of the s x s box at the origin (nearest-
// neighbour upsampling = zero insertion followed by that box); tile_s(F(y))(u, v) =
// F(y)(u mod Hp, v mod Wp) is zero insertion seen in the spectrum; mean_s averages the s x s tiles
// of Hp x Wp. Spectra are stored one-sided as cuFFT R2C writes them: rows x (cols/2 + 1), the
// forward transform unnormalised; the C2R inverse is unnormalised too, so the solve multiplies
// by 1 / (Hs * Ws).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define C2D_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define C2D_HD inline
#endif

namespace converse2d
{

enum PaddingMode : int32_t
{
    kPAD_CIRCULAR = 0,
    kPAD_REFLECT = 1,
    kPAD_REPLICATE = 2,
    kPAD_CONSTANT = 3, // zeros
};

//! Single-precision complex number, laid out as cufftComplex (float2) and numpy complex64.
struct Complex
{
    float re;
    float im;
};

C2D_HD Complex cAdd(Complex a, Complex b)
{
    return Complex{a.re + b.re, a.im + b.im};
}
C2D_HD Complex cMul(Complex a, Complex b)
{
    return Complex{a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
C2D_HD Complex cConj(Complex a)
{
    return Complex{a.re, -a.im};
}
C2D_HD Complex cScale(Complex a, float s)
{
    return Complex{a.re * s, a.im * s};
}
C2D_HD float cAbs2(Complex a)
{
    return a.re * a.re + a.im * a.im;
}

//! IEEE binary16 storage (the bits of __half), so that the host build needs no CUDA header.
struct Half
{
    uint16_t bits;
};

C2D_HD float halfBitsToFloat(uint16_t h)
{
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t const mantissa = h & 0x3ffu;
    if (exponent == 0)
    {
        float const v = static_cast<float>(mantissa) * 5.9604644775390625e-8f; // 2^-24
        return sign ? -v : v;
    }
    uint32_t bits = exponent == 31 ? (sign | 0x7f800000u | (mantissa << 13))
                                   : (sign | ((exponent + 112u) << 23) | (mantissa << 13));
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
#endif
}

//! float -> binary16, round to nearest even (as __float2half_rn).
C2D_HD uint16_t floatToHalfBits(float f)
{
#if defined(__CUDA_ARCH__)
    return __half_as_ushort(__float2half_rn(f));
#else
    uint32_t x;
    std::memcpy(&x, &f, sizeof(x));
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) // inf or nan
    {
        return static_cast<uint16_t>(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    }
    if (ax >= 0x477ff000u) // >= 65520 rounds to inf
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (ax < 0x38800000u) // below 2^-14: subnormal half or zero
    {
        if (ax <= 0x33000000u) // <= 2^-25 rounds to zero (2^-25 itself ties to even 0)
        {
            return static_cast<uint16_t>(sign);
        }
        uint32_t const e = ax >> 23;
        uint32_t const m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t const shift = 126u - e; // value / 2^-24 = m * 2^(e - 126)
        uint32_t r = m >> shift;
        uint32_t const rem = m & ((1u << shift) - 1u);
        uint32_t const halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (r & 1u)))
        {
            ++r;
        }
        return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = (ax >> 13) - (112u << 10);
    uint32_t const rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
    {
        ++r;
    }
    return static_cast<uint16_t>(sign | r);
#endif
}

C2D_HD float loadValue(float const* p, int64_t i)
{
    return p[i];
}
C2D_HD float loadValue(Half const* p, int64_t i)
{
    return halfBitsToFloat(p[i].bits);
}
C2D_HD void storeValue(float* p, int64_t i, float v)
{
    p[i] = v;
}
C2D_HD void storeValue(Half* p, int64_t i, float v)
{
    p[i].bits = floatToHalfBits(v);
}

//! Shapes of one Converse2D call and the grids derived from them.
struct Geometry
{
    int64_t N, C, H, W; //!< x: (N, C, H, W)
    int64_t Bk, kh, kw; //!< kernel: (Bk, C, kh, kw), Bk = 1 or N
    int64_t Bl;         //!< lam: (Bl, C, 1, 1), Bl = 1 or N
    int32_t scale, padding, mode;
    int64_t Hp, Wp;     //!< padded low-resolution grid
    int64_t Hs, Ws;     //!< padded high-resolution grid (Hp*s, Wp*s)
    int64_t Wph, Wsh;   //!< one-sided widths Wp/2+1, Ws/2+1
    int64_t Hout, Wout; //!< output H*s, W*s
    int64_t solveCols;  //!< min(Wp, Ws/2+1): low-resolution columns whose tiles reach the one-sided grid
};

//! Fills the derived sizes. Returns 0 when the shapes are valid, else a negative code:
//! -1 bad attributes, -2 bad x, -3 bad kernel, -4 bad lam, -5 kernel larger than the padded,
//! upsampled grid.
inline int32_t makeGeometry(Geometry& g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t Bk, int64_t kh,
    int64_t kw, int64_t Bl, int32_t scale, int32_t padding, int32_t mode)
{
    g = Geometry{};
    g.N = N;
    g.C = C;
    g.H = H;
    g.W = W;
    g.Bk = Bk;
    g.kh = kh;
    g.kw = kw;
    g.Bl = Bl;
    g.scale = scale;
    g.padding = padding;
    g.mode = mode;
    if (scale < 1 || padding < 0 || mode < kPAD_CIRCULAR || mode > kPAD_CONSTANT)
    {
        return -1;
    }
    if (N < 1 || C < 1 || H < 1 || W < 1)
    {
        return -2;
    }
    if (kh < 1 || kw < 1 || (Bk != 1 && Bk != N))
    {
        return -3;
    }
    if (Bl != 1 && Bl != N)
    {
        return -4;
    }
    g.Hp = H + 2 * static_cast<int64_t>(padding);
    g.Wp = W + 2 * static_cast<int64_t>(padding);
    g.Hs = g.Hp * scale;
    g.Ws = g.Wp * scale;
    g.Wph = g.Wp / 2 + 1;
    g.Wsh = g.Ws / 2 + 1;
    g.Hout = H * scale;
    g.Wout = W * scale;
    g.solveCols = g.Wp < g.Wsh ? g.Wp : g.Wsh;
    if (kh > g.Hs || kw > g.Ws)
    {
        return -5;
    }
    return 0;
}

//! Number of kernel/lam groups that G depends on: N if either kernel or lam is per sample, else 1.
C2D_HD int64_t transferBatch(Geometry const& g)
{
    return (g.Bk > 1 || g.Bl > 1) ? g.N : 1;
}

// Element counts of the steps (the index ranges of the element functions below).
C2D_HD int64_t padCount(Geometry const& g)
{
    return g.N * g.C * g.Hp * g.Wp;
}
C2D_HD int64_t p2oCount(Geometry const& g)
{
    return g.Bk * g.C * g.Hs * g.Ws;
}
C2D_HD int64_t solveCount(Geometry const& g)
{
    return g.N * g.C * g.Hp * g.solveCols;
}
C2D_HD int64_t transferCount(Geometry const& g)
{
    return transferBatch(g) * g.C * g.Hp * g.solveCols;
}
C2D_HD int64_t cropCount(Geometry const& g)
{
    return g.N * g.C * g.Hout * g.Wout;
}

//! Source index of padded position i (may be outside [0, n)) along an axis of length n, or -1 for
//! a zero (constant padding). reflect mirrors without repeating the edge (as torch's "reflect")
//! and, unlike torch, folds periodically when the padding exceeds n - 1.
C2D_HD int64_t padSource(int64_t i, int64_t n, int32_t mode)
{
    if (i >= 0 && i < n)
    {
        return i;
    }
    switch (mode)
    {
    case kPAD_CIRCULAR:
    {
        int64_t r = i % n;
        return r < 0 ? r + n : r;
    }
    case kPAD_REFLECT:
    {
        if (n == 1)
        {
            return 0;
        }
        int64_t const period = 2 * (n - 1);
        int64_t r = i % period;
        r = r < 0 ? r + period : r;
        return r < n ? r : period - r;
    }
    case kPAD_REPLICATE: return i < 0 ? 0 : n - 1;
    default: return -1;
    }
}

//! y[nc, r, q] (Hp x Wp, float) from x[nc, r - p, q - p] (H x W, float or half).
template <typename T>
C2D_HD void padElement(int64_t i, T const* x, float* y, Geometry const& g)
{
    int64_t const q = i % g.Wp;
    int64_t const r = (i / g.Wp) % g.Hp;
    int64_t const nc = i / (g.Wp * g.Hp);
    int64_t const sr = padSource(r - g.padding, g.H, g.mode);
    int64_t const sq = padSource(q - g.padding, g.W, g.mode);
    y[i] = (sr < 0 || sq < 0) ? 0.0f : loadValue(x, (nc * g.H + sr) * g.W + sq);
}

//! p2o placement: grid[gc, r, q] (Hs x Ws) = kernel[gc, (r + kh/2) mod Hs, (q + kw/2) mod Ws]
//! inside the kernel's support, else 0 (the kernel zero-padded, its centre rolled to the origin).
template <typename K>
C2D_HD void p2oElement(int64_t i, K const* kernel, float* grid, Geometry const& g)
{
    int64_t const q = i % g.Ws;
    int64_t const r = (i / g.Ws) % g.Hs;
    int64_t const gc = i / (g.Ws * g.Hs);
    int64_t const a = (r + g.kh / 2) % g.Hs;
    int64_t const b = (q + g.kw / 2) % g.Ws;
    grid[i] = (a < g.kh && b < g.kw) ? loadValue(kernel, (gc * g.kh + a) * g.kw + b) : 0.0f;
}

//! Value at (u, v) of the full rows x cols spectrum of a real signal, read from its one-sided
//! (cuFFT R2C) storage rows x halfCols through Hermitian symmetry.
C2D_HD Complex loadHermitian(Complex const* spectrum, int64_t u, int64_t v, int64_t rows, int64_t cols, int64_t halfCols)
{
    if (v < halfCols)
    {
        return spectrum[u * halfCols + v];
    }
    int64_t const uu = u == 0 ? 0 : rows - u;
    return cConj(spectrum[uu * halfCols + (cols - v)]);
}

//! exp(-2 pi i r / n).
C2D_HD Complex expTurn(int64_t r, int64_t n)
{
    r %= n;
    if (2 * r > n)
    {
        r -= n; // angle in [-pi, pi] keeps the argument small
    }
#if defined(__CUDA_ARCH__)
    float s, c;
    sincospif(2.0f * static_cast<float>(r) / static_cast<float>(n), &s, &c);
    return Complex{c, -s};
#else
    double const t = 6.283185307179586 * static_cast<double>(r) / static_cast<double>(n);
    return Complex{static_cast<float>(std::cos(t)), static_cast<float>(-std::sin(t))};
#endif
}

//! One axis of F(box): sum_{a < s} exp(-2 pi i u a / n).
C2D_HD Complex boxSpectrum1d(int64_t u, int64_t n, int32_t s)
{
    Complex acc{0.0f, 0.0f};
    for (int32_t a = 0; a < s; ++a)
    {
        acc = cAdd(acc, expTurn(u * a, n));
    }
    return acc;
}

//! The tile factor T(a, b) = (1 - mean_s(FK * F(box))) / (mean_s |FK|^2 + lam) for the
//! low-resolution frequency (a, b); fk points at one group's one-sided Hs x Wsh spectrum.
C2D_HD Complex tileFactor(Complex const* fk, int64_t a, int64_t b, float lam, Geometry const& g)
{
    Complex acc{0.0f, 0.0f};
    float power = 0.0f;
    for (int32_t i = 0; i < g.scale; ++i)
    {
        int64_t const u = a + i * g.Hp;
        Complex const bu = boxSpectrum1d(u, g.Hs, g.scale);
        for (int32_t j = 0; j < g.scale; ++j)
        {
            int64_t const v = b + j * g.Wp;
            Complex const f = loadHermitian(fk, u, v, g.Hs, g.Ws, g.Wsh);
            acc = cAdd(acc, cMul(f, cMul(bu, boxSpectrum1d(v, g.Ws, g.scale))));
            power += cAbs2(f);
        }
    }
    float const invTiles = 1.0f / static_cast<float>(g.scale * g.scale);
    float const inv = 1.0f / (power * invTiles + lam);
    return Complex{(1.0f - acc.re * invTiles) * inv, -acc.im * invTiles * inv};
}

//! G at the high-resolution frequency (u, v), u = a + i Hp, v = b + j Wp, given T(a, b).
C2D_HD Complex transferAt(Complex const* fk, int64_t u, int64_t v, Complex t, Geometry const& g)
{
    Complex const f = loadHermitian(fk, u, v, g.Hs, g.Ws, g.Wsh);
    Complex const box = cMul(boxSpectrum1d(u, g.Hs, g.scale), boxSpectrum1d(v, g.Ws, g.scale));
    return cAdd(box, cMul(cConj(f), t));
}

//! G at scale 1: (conj(FK) + lam) / (|FK|^2 + lam).
C2D_HD Complex transferScale1(Complex f, float lam)
{
    float const inv = 1.0f / (cAbs2(f) + lam);
    return Complex{(f.re + lam) * inv, -f.im * inv};
}

//! Index helpers for an element (n, c, a, b) of the solve / transfer loops.
struct SolveIndex
{
    int64_t n, c, a, b;
};

C2D_HD SolveIndex solveIndex(int64_t i, Geometry const& g)
{
    SolveIndex s;
    s.b = i % g.solveCols;
    s.a = (i / g.solveCols) % g.Hp;
    int64_t const nc = i / (g.solveCols * g.Hp);
    s.c = nc % g.C;
    s.n = nc / g.C;
    return s;
}

//! The spectral solve for one low-resolution frequency (a, b) of one (n, c): writes
//! Z = tile_s(F(y)) * G / (Hs * Ws) at every high-resolution frequency (a + i Hp, b + j Wp) of the
//! one-sided grid. Each one-sided frequency belongs to exactly one (a, b), so no two elements write
//! the same place. fy: (N C, Hp, Wph); fk: (Bk C, Hs, Wsh); lam: (Bl C); z: (N C, Hs, Wsh).
template <typename L>
C2D_HD void solveElement(
    int64_t i, Complex const* fy, Complex const* fk, L const* lam, Complex* z, Geometry const& g)
{
    SolveIndex const e = solveIndex(i, g);
    int64_t const nc = e.n * g.C + e.c;
    Complex const* fkg = fk + (g.Bk == 1 ? e.c : nc) * g.Hs * g.Wsh;
    float const lamv = loadValue(lam, g.Bl == 1 ? e.c : nc);
    float const norm = 1.0f / (static_cast<float>(g.Hs) * static_cast<float>(g.Ws));
    Complex const y = cScale(loadHermitian(fy + nc * g.Hp * g.Wph, e.a, e.b, g.Hp, g.Wp, g.Wph), norm);
    Complex* zn = z + nc * g.Hs * g.Wsh;
    if (g.scale == 1)
    {
        zn[e.a * g.Wsh + e.b] = cMul(y, transferScale1(fkg[e.a * g.Wsh + e.b], lamv));
        return;
    }
    Complex const t = tileFactor(fkg, e.a, e.b, lamv, g);
    for (int32_t ti = 0; ti < g.scale; ++ti)
    {
        int64_t const u = e.a + ti * g.Hp;
        for (int32_t tj = 0; tj < g.scale; ++tj)
        {
            int64_t const v = e.b + tj * g.Wp;
            if (v >= g.Wsh)
            {
                break;
            }
            zn[u * g.Wsh + v] = cMul(y, transferAt(fkg, u, v, t, g));
        }
    }
}

//! The transfer function G alone (for tests and diagnostics): G[gb C + c, u, v] on the one-sided
//! Hs x Wsh grid, gb < transferBatch(g).
template <typename L>
C2D_HD void transferElement(int64_t i, Complex const* fk, L const* lam, Complex* out, Geometry const& g)
{
    SolveIndex const e = solveIndex(i, g);
    int64_t const gc = e.n * g.C + e.c;
    Complex const* fkg = fk + (g.Bk == 1 ? e.c : gc) * g.Hs * g.Wsh;
    float const lamv = loadValue(lam, g.Bl == 1 ? e.c : gc);
    Complex* gn = out + gc * g.Hs * g.Wsh;
    if (g.scale == 1)
    {
        gn[e.a * g.Wsh + e.b] = transferScale1(fkg[e.a * g.Wsh + e.b], lamv);
        return;
    }
    Complex const t = tileFactor(fkg, e.a, e.b, lamv, g);
    for (int32_t ti = 0; ti < g.scale; ++ti)
    {
        int64_t const u = e.a + ti * g.Hp;
        for (int32_t tj = 0; tj < g.scale; ++tj)
        {
            int64_t const v = e.b + tj * g.Wp;
            if (v >= g.Wsh)
            {
                break;
            }
            gn[u * g.Wsh + v] = transferAt(fkg, u, v, t, g);
        }
    }
}

//! out[nc, r, q] (Hout x Wout, float or half) = xs[nc, r + p s, q + p s] (Hs x Ws, float).
template <typename T>
C2D_HD void cropElement(int64_t i, float const* xs, T* out, Geometry const& g)
{
    int64_t const q = i % g.Wout;
    int64_t const r = (i / g.Wout) % g.Hout;
    int64_t const nc = i / (g.Wout * g.Hout);
    int64_t const off = static_cast<int64_t>(g.padding) * g.scale;
    storeValue(out, i, xs[(nc * g.Hs + r + off) * g.Ws + q + off]);
}

//! Byte offsets of the intermediate buffers in the workspace (each aligned to 256 bytes).
struct WorkspaceLayout
{
    size_t y;     //!< padded input, float (N C, Hp, Wp)
    size_t fy;    //!< its spectrum, complex (N C, Hp, Wph)
    size_t grid;  //!< p2o kernel grid (Bk C, Hs, Ws), reused for the C2R output (N C, Hs, Ws), float
    size_t fk;    //!< kernel spectrum, complex (Bk C, Hs, Wsh)
    size_t z;     //!< solved spectrum, complex (N C, Hs, Wsh)
    size_t work;  //!< cuFFT work area shared by the three plans (they run one after another)
    size_t total; //!< bytes needed
};

inline size_t alignUp(size_t v, size_t a = 256)
{
    return (v + a - 1) / a * a;
}

inline WorkspaceLayout workspaceLayout(Geometry const& g, size_t fftWorkBytes)
{
    size_t const nc = static_cast<size_t>(g.N * g.C);
    size_t const kc = static_cast<size_t>(g.Bk * g.C);
    size_t const gridRows = (kc > nc ? kc : nc);
    WorkspaceLayout l{};
    size_t o = 0;
    l.y = o;
    o += alignUp(nc * g.Hp * g.Wp * sizeof(float));
    l.fy = o;
    o += alignUp(nc * g.Hp * g.Wph * sizeof(Complex));
    l.grid = o;
    o += alignUp(gridRows * g.Hs * g.Ws * sizeof(float));
    l.fk = o;
    o += alignUp(kc * g.Hs * g.Wsh * sizeof(Complex));
    l.z = o;
    o += alignUp(nc * g.Hs * g.Wsh * sizeof(Complex));
    l.work = o;
    o += alignUp(fftWorkBytes);
    l.total = o;
    return l;
}

} // namespace converse2d
