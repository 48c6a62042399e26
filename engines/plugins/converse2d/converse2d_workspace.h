// Converse2D: the workspace to reserve for an optimisation profile (plain C++, no CUDA or TensorRT
// types), used by Converse2DRunner::profileWorkspaceSize and by the host build for the tests.
//
// The buffers grow with every dimension, so the profile's largest shape bounds them. cuFFT's work
// area does not (Bluestein for sizes with large prime factors), so the work areas of a few probed
// shapes are measured: along each image axis the kPROBE_TOP largest sizes and the kPROBE_TOP sizes
// whose padded low- and high-resolution lengths cost most (a 1-D estimate); every combination of
// those, at the largest batch. For a work area that is the product of per-axis costs times the
// batch this finds the largest over the profile; for cuFFT it is an estimate, and a shape that
// needs more than was reserved is refused at onShapeChange (Converse2DRunner::prepare).
#pragma once

#include "converse2d_kernels.h"

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace converse2d
{

constexpr int32_t kPROBE_TOP = 3;
//! Sizes further than this below the largest are not scanned (their buffers leave ample slack).
constexpr int64_t kPROBE_SCAN = 16384;

//! The kPROBE_TOP values n of [lo, hi] with the largest key(n), the larger n first among equal keys.
template <typename Key>
std::vector<int64_t> topSizes(int64_t lo, int64_t hi, Key key)
{
    std::vector<std::pair<size_t, int64_t>> best; // (key, n), best first
    for (int64_t n = hi; n >= lo && n > hi - kPROBE_SCAN; --n)
    {
        std::pair<size_t, int64_t> const item{key(n), n};
        auto const at = std::find_if(best.begin(), best.end(), [&](auto const& b) { return item.first > b.first; });
        best.insert(at, item);
        if (best.size() > static_cast<size_t>(kPROBE_TOP))
        {
            best.pop_back();
        }
    }
    std::vector<int64_t> sizes;
    for (auto const& b : best)
    {
        sizes.push_back(b.second);
    }
    return sizes;
}

//! Image sizes in [lo, hi] to probe along one axis; cost(length) estimates a 1-D transform's work area.
template <typename LengthCost>
std::vector<int64_t> probeSizes(int64_t lo, int64_t hi, int32_t padding, int32_t scale, LengthCost cost)
{
    lo = std::min(std::max<int64_t>(lo, 1), hi);
    int64_t const pad = 2 * static_cast<int64_t>(padding);
    std::vector<int64_t> sizes = topSizes(lo, hi, [](int64_t n) { return static_cast<size_t>(n); });
    for (int64_t n : topSizes(lo, hi, [&](int64_t m) { return cost(m + pad); }))
    {
        sizes.push_back(n);
    }
    for (int64_t n : topSizes(lo, hi, [&](int64_t m) { return cost((m + pad) * scale); }))
    {
        sizes.push_back(n);
    }
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    return sizes;
}

//! Workspace bytes for every shape of a profile whose largest shape is maxG and whose smallest image
//! is minH x minW: the buffers at maxG plus the largest work area fftWork(g, bytes) reports for the
//! probed shapes. Returns false if fftWork fails (or a probed shape is invalid).
template <typename LengthCost, typename FftWork>
bool profileWorkspace(
    Geometry const& maxG, int64_t minH, int64_t minW, LengthCost cost, FftWork fftWork, size_t& bytes)
{
    size_t work = 0;
    for (int64_t h : probeSizes(minH, maxG.H, maxG.padding, maxG.scale, cost))
    {
        for (int64_t w : probeSizes(minW, maxG.W, maxG.padding, maxG.scale, cost))
        {
            Geometry g;
            size_t probe = 0;
            // The kernel's size changes no transform size: 1 x 1 keeps every probe valid.
            if (makeGeometry(g, maxG.N, maxG.C, h, w, maxG.Bk, 1, 1, maxG.Bl, maxG.scale, maxG.padding, maxG.mode) != 0
                || !fftWork(g, probe))
            {
                return false;
            }
            work = std::max(work, probe);
        }
    }
    bytes = workspaceLayout(maxG, work).total;
    return true;
}

} // namespace converse2d
