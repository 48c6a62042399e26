// Converse2D: thin __global__ wrappers around the element functions of converse2d_kernels.h.
#include "converse2d_launch.h"

namespace converse2d
{
namespace
{

constexpr int32_t kTHREADS = 256;

inline unsigned int blocksFor(int64_t count)
{
    int64_t const blocks = (count + kTHREADS - 1) / kTHREADS;
    int64_t const kMAX_BLOCKS = int64_t{1} << 20; // grid-stride loops cover the rest
    return static_cast<unsigned int>(blocks < kMAX_BLOCKS ? (blocks > 0 ? blocks : 1) : kMAX_BLOCKS);
}

__device__ __forceinline__ int64_t firstIndex()
{
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t indexStride()
{
    return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

template <typename T>
__global__ void padKernel(T const* __restrict__ x, float* __restrict__ y, Geometry g, int64_t count)
{
    for (int64_t i = firstIndex(); i < count; i += indexStride())
    {
        padElement(i, x, y, g);
    }
}

template <typename K>
__global__ void p2oKernel(K const* __restrict__ kernel, float* __restrict__ grid, Geometry g, int64_t count)
{
    for (int64_t i = firstIndex(); i < count; i += indexStride())
    {
        p2oElement(i, kernel, grid, g);
    }
}

template <typename L>
__global__ void solveKernel(Complex const* __restrict__ fy, Complex const* __restrict__ fk, L const* __restrict__ lam,
    Complex* __restrict__ z, Geometry g, int64_t count)
{
    for (int64_t i = firstIndex(); i < count; i += indexStride())
    {
        solveElement(i, fy, fk, lam, z, g);
    }
}

template <typename T>
__global__ void cropKernel(float const* __restrict__ xs, T* __restrict__ out, Geometry g, int64_t count)
{
    for (int64_t i = firstIndex(); i < count; i += indexStride())
    {
        cropElement(i, xs, out, g);
    }
}

} // namespace

cudaError_t launchPad(void const* x, ElemType xType, float* y, Geometry const& g, cudaStream_t stream)
{
    int64_t const n = padCount(g);
    if (xType == ElemType::kHALF)
    {
        padKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(static_cast<Half const*>(x), y, g, n);
    }
    else
    {
        padKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(static_cast<float const*>(x), y, g, n);
    }
    return cudaGetLastError();
}

cudaError_t launchP2O(void const* kernel, ElemType kType, float* grid, Geometry const& g, cudaStream_t stream)
{
    int64_t const n = p2oCount(g);
    if (kType == ElemType::kHALF)
    {
        p2oKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(static_cast<Half const*>(kernel), grid, g, n);
    }
    else
    {
        p2oKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(static_cast<float const*>(kernel), grid, g, n);
    }
    return cudaGetLastError();
}

cudaError_t launchSolve(Complex const* fy, Complex const* fk, void const* lam, ElemType lamType, Complex* z,
    Geometry const& g, cudaStream_t stream)
{
    int64_t const n = solveCount(g);
    if (lamType == ElemType::kHALF)
    {
        solveKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(fy, fk, static_cast<Half const*>(lam), z, g, n);
    }
    else
    {
        solveKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(fy, fk, static_cast<float const*>(lam), z, g, n);
    }
    return cudaGetLastError();
}

cudaError_t launchCrop(float const* xs, void* out, ElemType outType, Geometry const& g, cudaStream_t stream)
{
    int64_t const n = cropCount(g);
    if (outType == ElemType::kHALF)
    {
        cropKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(xs, static_cast<Half*>(out), g, n);
    }
    else
    {
        cropKernel<<<blocksFor(n), kTHREADS, 0, stream>>>(xs, static_cast<float*>(out), g, n);
    }
    return cudaGetLastError();
}

} // namespace converse2d
