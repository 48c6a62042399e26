// Converse2D: the GPU pipeline (cuFFT plans, workspace layout, kernel launches) without any
// TensorRT type, so that it can be compiled and reused outside the plugin.
#pragma once

#include "converse2d_launch.h"

#include <cufft.h>

#include <cstddef>
#include <string>
#include <vector>

namespace converse2d
{

//! Runs Converse2D on one stream. Not thread-safe: use one runner per execution context.
//!
//! The three cuFFT plans (R2C of the padded input at Hp x Wp with batch N C, R2C of the kernel grid
//! at Hs x Ws with batch Bk C, C2R of the solution at Hs x Ws with batch N C) are made for the
//! actual shape with cufftSetAutoAllocation(0) and cached (the last kMAX_CACHED shapes); their work
//! area is taken from the workspace given to enqueue().
class Converse2DRunner
{
public:
    static constexpr size_t kMAX_CACHED = 4;

    Converse2DRunner() = default;
    ~Converse2DRunner();
    Converse2DRunner(Converse2DRunner const&) = delete;
    Converse2DRunner& operator=(Converse2DRunner const&) = delete;

    //! Workspace bytes that enqueue() needs for shape g: the intermediate buffers plus the largest
    //! cuFFT work area of the three plans, measured by making the plans without allocating their
    //! work areas. Returns false (and sets error) if cuFFT cannot plan the shape.
    static bool queryWorkspaceSize(Geometry const& g, size_t& bytes, std::string* error);

    //! Makes (or finds) the plans for shape g. available = bytes of workspace that enqueue() will
    //! receive (0 = unknown, assume enough); if the shape needs more, a private buffer is allocated
    //! here once, outside the timed enqueue(). Returns false (and sets error) on failure.
    bool prepare(Geometry const& g, size_t available, std::string* error);

    //! Runs the operator on stream. x/out: (N, C, H, W)/(N, C, H s, W s); kernel (Bk, C, kh, kw);
    //! lam (Bl, C, 1, 1); all linear (NCHW). workspace must hold workspaceLayout(g, ...).total
    //! bytes unless prepare() said otherwise.
    bool enqueue(Geometry const& g, void const* x, ElemType xType, void const* kernel, ElemType kernelType,
        void const* lam, ElemType lamType, void* out, ElemType outType, void* workspace, size_t available,
        cudaStream_t stream, std::string* error);

    //! Bytes of the private buffer prepare() allocated because the workspace was too small (0 = none).
    size_t ownBufferBytes() const noexcept
    {
        return mOwnBytes;
    }

private:
    struct Plans
    {
        int64_t N{0}, C{0}, Hp{0}, Wp{0}, Bk{0}, Hs{0}, Ws{0};
        cufftHandle y{0}, k{0}, x{0};
        bool hasY{false}, hasK{false}, hasX{false};
        size_t work{0};
    };

    static bool sameShape(Plans const& p, Geometry const& g);
    static bool makePlans(Geometry const& g, Plans& p, std::string* error);
    static void destroyPlans(Plans& p);
    Plans* findPlans(Geometry const& g);

    std::vector<Plans> mPlans; //!< most recently used first
    void* mOwnBuffer{nullptr};
    size_t mOwnBytes{0};
};

//! Human-readable name of a cuFFT status.
char const* cufftStatusName(cufftResult status);

} // namespace converse2d
