// Converse2D runner check: the cuFFT pipeline (Converse2DRunner) on a GPU without TensorRT, for
// gpu_check.sh. Built with nvcc together with converse2d_runner.cpp and converse2d_kernels.cu.
//
//   converse2d_runner_check CASE...   runs each case (the format of converse2d_selftest's CASE:
//                                     int64 N, C, H, W, Bk, kh, kw, Bl, scale, padding, mode, half,
//                                     then float32 x, kernel, lam; half: x, kernel and the output in
//                                     FP16, lam FP32 as the plugin takes it) in a workspace of the
//                                     profile bound, with and without the cached kernel spectrum;
//                                     writes the output (float32) to CASE.out.
//   converse2d_runner_check --scan    every shape of a few profiles against the profile's bound:
//                                     prints how many need more workspace than was reserved.
#include "converse2d_runner.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using converse2d::Converse2DRunner;
using converse2d::ElemType;
using converse2d::Geometry;

namespace
{

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::printf("FAILED: %s (line %d)\n", #cond, __LINE__);                                                    \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

struct Case
{
    Geometry g;
    bool half;
    std::vector<float> x, kernel, lam;
};

bool readCase(char const* path, Case& c)
{
    std::ifstream file(path, std::ios::binary);
    int64_t h[12];
    if (!file.read(reinterpret_cast<char*>(h), sizeof(h)).good()
        || converse2d::makeGeometry(c.g, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], static_cast<int32_t>(h[8]),
               static_cast<int32_t>(h[9]), static_cast<int32_t>(h[10]))
            != 0)
    {
        return false;
    }
    c.half = h[11] != 0;
    c.x.resize(c.g.N * c.g.C * c.g.H * c.g.W);
    c.kernel.resize(c.g.Bk * c.g.C * c.g.kh * c.g.kw);
    c.lam.resize(c.g.Bl * c.g.C);
    for (std::vector<float>* v : {&c.x, &c.kernel, &c.lam})
    {
        if (!file.read(reinterpret_cast<char*>(v->data()), v->size() * sizeof(float)).good())
        {
            return false;
        }
    }
    return true;
}

//! A device copy of values, as FP16 when half.
void* upload(std::vector<float> const& values, bool half)
{
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        bits[i] = converse2d::floatToHalfBits(values[i]);
    }
    size_t const bytes = values.size() * (half ? 2 : 4);
    void* device = nullptr;
    if (cudaMalloc(&device, bytes) != cudaSuccess
        || cudaMemcpy(device, half ? static_cast<void const*>(bits.data()) : values.data(), bytes, cudaMemcpyHostToDevice)
            != cudaSuccess)
    {
        return nullptr;
    }
    return device;
}

std::vector<float> download(void const* device, size_t count, bool half)
{
    std::vector<float> values(count);
    if (!half)
    {
        cudaMemcpy(values.data(), device, count * 4, cudaMemcpyDeviceToHost);
        return values;
    }
    std::vector<uint16_t> bits(count);
    cudaMemcpy(bits.data(), device, count * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < count; ++i)
    {
        values[i] = converse2d::halfBitsToFloat(bits[i]);
    }
    return values;
}

//! Runs the case `enqueues` times in a workspace of `reserved` bytes; returns the output.
int runCase(Case const& c, bool constantKernel, int enqueues, size_t reserved, std::vector<float>& result)
{
    Converse2DRunner runner(constantKernel);
    std::string error;
    if (!runner.prepare(c.g, reserved, &error))
    {
        std::printf("prepare: %s\n", error.c_str());
        return 1;
    }
    ElemType const io = c.half ? ElemType::kHALF : ElemType::kFLOAT;
    size_t const outCount = static_cast<size_t>(c.g.N * c.g.C * c.g.Hout * c.g.Wout);
    void* x = upload(c.x, c.half);
    void* kernel = upload(c.kernel, c.half);
    void* lam = upload(c.lam, false);
    void *out = nullptr, *workspace = nullptr;
    CHECK(x && kernel && lam && cudaMalloc(&out, outCount * 4) == cudaSuccess);
    CHECK(cudaMalloc(&workspace, reserved) == cudaSuccess);
    for (int i = 0; i < enqueues; ++i)
    {
        CHECK(cudaMemset(out, 0, outCount * 4) == cudaSuccess);
        bool const ok = runner.enqueue(
            c.g, x, io, kernel, io, lam, ElemType::kFLOAT, out, io, workspace, reserved, nullptr, &error);
        if (!ok)
        {
            std::printf("enqueue: %s\n", error.c_str());
            return 1;
        }
    }
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    result = download(out, outCount, c.half);
    for (void* p : {x, kernel, lam, out, workspace})
    {
        cudaFree(p);
    }
    return 0;
}

int checkCase(char const* path)
{
    Case c;
    CHECK(readCase(path, c));
    size_t bound = 0;
    std::string error;
    if (!Converse2DRunner::profileWorkspaceSize(c.g, c.g.H, c.g.W, bound, &error))
    {
        std::printf("%s: profileWorkspaceSize: %s\n", path, error.c_str());
        return 1;
    }
    std::vector<float> plain, cached;
    CHECK(runCase(c, false, 2, bound, plain) == 0);
    CHECK(runCase(c, true, 3, bound, cached) == 0);
    float diff = 0.0f;
    for (size_t i = 0; i < plain.size(); ++i)
    {
        diff = std::max(diff, std::fabs(plain[i] - cached[i]));
    }
    std::printf("%s: workspace %zu bytes, cached spectrum differs by %g\n", path, bound, diff);
    std::ofstream(std::string(path) + ".out", std::ios::binary)
        .write(reinterpret_cast<char const*>(plain.data()), static_cast<std::streamsize>(plain.size() * 4));
    return 0;
}

//! Every image size of [lo, hi]^2 at batch N with a kernel batch Bk against the profile's bound.
int scanProfile(int64_t N, int64_t C, int64_t Bk, int64_t lo, int64_t hi, int32_t scale, int32_t padding)
{
    Geometry maxG;
    CHECK(converse2d::makeGeometry(maxG, N, C, hi, hi, Bk, 1, 1, 1, scale, padding, converse2d::kPAD_REFLECT) == 0);
    size_t bound = 0;
    std::string error;
    CHECK(Converse2DRunner::profileWorkspaceSize(maxG, lo, lo, bound, &error));
    int64_t over = 0, shapes = 0;
    Converse2DRunner runner;
    for (int64_t h = lo; h <= hi; ++h)
    {
        for (int64_t w = lo; w <= hi; ++w, ++shapes)
        {
            Geometry g;
            CHECK(converse2d::makeGeometry(g, N, C, h, w, Bk, 1, 1, 1, scale, padding, converse2d::kPAD_REFLECT) == 0);
            if (!runner.prepare(g, bound, &error))
            {
                ++over;
                std::printf("  %ldx%ld: %s\n", static_cast<long>(h), static_cast<long>(w), error.c_str());
            }
        }
    }
    std::printf("scan N %ld C %ld Bk %ld, %ld..%ld, s %d, p %d: bound %zu bytes, %ld of %ld shapes over it\n",
        static_cast<long>(N), static_cast<long>(C), static_cast<long>(Bk), static_cast<long>(lo), static_cast<long>(hi),
        scale, padding, bound, static_cast<long>(over), static_cast<long>(shapes));
    return over == 0 ? 0 : 2;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc == 2 && std::strcmp(argv[1], "--scan") == 0)
    {
        int status = 0;
        status |= scanProfile(1, 3, 1, 200, 247, 1, 0);
        status |= scanProfile(2, 3, 2, 40, 87, 2, 6);
        status |= scanProfile(1, 3, 1, 60, 107, 3, 2);
        status |= scanProfile(1, 1, 1, 16, 63, 4, 0);
        return status;
    }
    int status = 0;
    for (int i = 1; i < argc; ++i)
    {
        status |= checkCase(argv[i]);
    }
    return status;
}
