// Converse2D host build: the element functions of converse2d_kernels.h run in plain loops behind a
// small C ABI, so that Python (ctypes) can run the plugin's arithmetic with numpy doing the FFTs in
// cuFFT's R2C/C2R layout. Used by tests/engines/plugins/test_converse2d.py; compiled with g++:
//     g++ -std=c++17 -O2 -shared -fPIC converse2d_host.cpp -o libconverse2d_host.so
//
// params (int64[11]): N, C, H, W, Bk, kh, kw, Bl, scale, padding, mode (0 circular, 1 reflect,
// 2 replicate, 3 constant). Element types: 0 float32, 1 float16. Every function returns 0 or the
// negative code of converse2d::makeGeometry.
#include "converse2d_kernels.h"
#include "converse2d_workspace.h"

using converse2d::Complex;
using converse2d::Geometry;
using converse2d::Half;

#define C2D_HOST_API extern "C" __attribute__((visibility("default")))

namespace
{

int32_t geometry(int64_t const* p, Geometry& g)
{
    return converse2d::makeGeometry(g, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], static_cast<int32_t>(p[8]),
        static_cast<int32_t>(p[9]), static_cast<int32_t>(p[10]));
}

} // namespace

//! Derived sizes: Hp, Wp, Hs, Ws, Wph, Wsh, Hout, Wout, transfer batch, workspace bytes (no cuFFT work).
C2D_HOST_API int32_t c2d_geometry(int64_t const* params, int64_t* out)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const values[10] = {g.Hp, g.Wp, g.Hs, g.Ws, g.Wph, g.Wsh, g.Hout, g.Wout, converse2d::transferBatch(g),
        static_cast<int64_t>(converse2d::workspaceLayout(g, 0).total)};
    for (int32_t i = 0; i < 10; ++i)
    {
        out[i] = values[i];
    }
    return 0;
}

//! y (float, N C x Hp x Wp) = pad(x).
C2D_HOST_API int32_t c2d_pad(int64_t const* params, void const* x, int32_t xHalf, float* y)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const n = converse2d::padCount(g);
    for (int64_t i = 0; i < n; ++i)
    {
        if (xHalf)
        {
            converse2d::padElement(i, static_cast<Half const*>(x), y, g);
        }
        else
        {
            converse2d::padElement(i, static_cast<float const*>(x), y, g);
        }
    }
    return 0;
}

//! grid (float, Bk C x Hs x Ws) = p2o(kernel).
C2D_HOST_API int32_t c2d_p2o(int64_t const* params, void const* kernel, int32_t kHalf, float* grid)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const n = converse2d::p2oCount(g);
    for (int64_t i = 0; i < n; ++i)
    {
        if (kHalf)
        {
            converse2d::p2oElement(i, static_cast<Half const*>(kernel), grid, g);
        }
        else
        {
            converse2d::p2oElement(i, static_cast<float const*>(kernel), grid, g);
        }
    }
    return 0;
}

//! z (N C x Hs x Wsh) = tile_s(fy) * G / (Hs Ws); fy: N C x Hp x Wph; fk: Bk C x Hs x Wsh.
C2D_HOST_API int32_t c2d_solve(
    int64_t const* params, Complex const* fy, Complex const* fk, void const* lam, int32_t lamHalf, Complex* z)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const n = converse2d::solveCount(g);
    for (int64_t i = 0; i < n; ++i)
    {
        if (lamHalf)
        {
            converse2d::solveElement(i, fy, fk, static_cast<Half const*>(lam), z, g);
        }
        else
        {
            converse2d::solveElement(i, fy, fk, static_cast<float const*>(lam), z, g);
        }
    }
    return 0;
}

//! G (transfer batch C x Hs x Wsh) from fk (Bk C x Hs x Wsh) and lam.
C2D_HOST_API int32_t c2d_transfer(
    int64_t const* params, Complex const* fk, void const* lam, int32_t lamHalf, Complex* out)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const n = converse2d::transferCount(g);
    for (int64_t i = 0; i < n; ++i)
    {
        if (lamHalf)
        {
            converse2d::transferElement(i, fk, static_cast<Half const*>(lam), out, g);
        }
        else
        {
            converse2d::transferElement(i, fk, static_cast<float const*>(lam), out, g);
        }
    }
    return 0;
}

//! out (N C x Hout x Wout, float or half) = crop(xs), xs: N C x Hs x Ws.
C2D_HOST_API int32_t c2d_crop(int64_t const* params, float const* xs, void* out, int32_t outHalf)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    int64_t const n = converse2d::cropCount(g);
    for (int64_t i = 0; i < n; ++i)
    {
        if (outHalf)
        {
            converse2d::cropElement(i, xs, static_cast<Half*>(out), g);
        }
        else
        {
            converse2d::cropElement(i, xs, static_cast<float*>(out), g);
        }
    }
    return 0;
}

//! float <-> binary16 conversions of the host build (tests compare them with numpy).
C2D_HOST_API void c2d_float_to_half(float const* in, uint16_t* out, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
    {
        out[i] = converse2d::floatToHalfBits(in[i]);
    }
}

C2D_HOST_API void c2d_half_to_float(uint16_t const* in, float* out, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
    {
        out[i] = converse2d::halfBitsToFloat(in[i]);
    }
}

//! A model of cuFFT's work areas for c2d_profile_workspace: the estimated work area of one 1-D
//! transform of a length, and the work area of the three plans of a shape given as
//! N, C, Hp, Wp, Bk, Hs, Ws (returns 0 on success).
typedef uint64_t (*c2d_length_cost)(int64_t length);
typedef int32_t (*c2d_fft_work)(int64_t const* dims, uint64_t* bytes);

//! The workspace reserved for a profile whose largest shape is params and whose smallest image is
//! minH x minW (converse2d::profileWorkspace), with cuFFT replaced by the model. -6: the model failed.
C2D_HOST_API int32_t c2d_profile_workspace(
    int64_t const* params, int64_t minH, int64_t minW, c2d_length_cost cost, c2d_fft_work work, uint64_t* bytes)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    auto lengthCost = [cost](int64_t n) { return static_cast<size_t>(cost(n)); };
    auto fftWork = [work](Geometry const& p, size_t& out) {
        int64_t const dims[7] = {p.N, p.C, p.Hp, p.Wp, p.Bk, p.Hs, p.Ws};
        uint64_t b = 0;
        if (work(dims, &b) != 0)
        {
            return false;
        }
        out = static_cast<size_t>(b);
        return true;
    };
    size_t total = 0;
    if (!converse2d::profileWorkspace(g, minH, minW, lengthCost, fftWork, total))
    {
        return -6;
    }
    *bytes = total;
    return 0;
}

//! Workspace bytes the shape params needs when its cuFFT plans need fftWork bytes of work area.
C2D_HOST_API int32_t c2d_workspace_need(int64_t const* params, uint64_t fftWork, uint64_t* bytes)
{
    Geometry g;
    int32_t const status = geometry(params, g);
    if (status != 0)
    {
        return status;
    }
    *bytes = converse2d::workspaceLayout(g, static_cast<size_t>(fftWork)).total;
    return 0;
}
