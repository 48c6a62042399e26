// Converse2D: launchers of the CUDA kernels in converse2d_kernels.cu (plain C++ interface, no
// TensorRT and no cuFFT types), used by converse2d_runner.cpp.
#pragma once

#include "converse2d_kernels.h"

#include <cuda_runtime_api.h>

namespace converse2d
{

//! Element type of a tensor the plugin reads or writes.
enum class ElemType : int32_t
{
    kFLOAT = 0,
    kHALF = 1,
};

//! y (float, N C x Hp x Wp) = pad(x).
cudaError_t launchPad(void const* x, ElemType xType, float* y, Geometry const& g, cudaStream_t stream);

//! grid (float, Bk C x Hs x Ws) = p2o(kernel).
cudaError_t launchP2O(void const* kernel, ElemType kType, float* grid, Geometry const& g, cudaStream_t stream);

//! z (N C x Hs x Wsh) = tile_s(fy) * G / (Hs Ws).
cudaError_t launchSolve(Complex const* fy, Complex const* fk, void const* lam, ElemType lamType, Complex* z,
    Geometry const& g, cudaStream_t stream);

//! out (N C x Hout x Wout) = crop(xs).
cudaError_t launchCrop(float const* xs, void* out, ElemType outType, Geometry const& g, cudaStream_t stream);

} // namespace converse2d
