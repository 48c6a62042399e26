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
//! at Hs x Ws with batch Bk C, C2R of the solution at Hs x Ws with batch N C) are made by prepare()
//! for the actual shape with cufftSetAutoAllocation(0) and cached (the last kMAX_CACHED shapes);
//! their work area is the end of the workspace given to enqueue(). enqueue() makes no plan and
//! allocates nothing for a prepared shape, so that it can be captured in a CUDA graph.
//!
//! With constantKernel, the kernel's values are taken not to change between calls (an initializer):
//! its spectrum is computed by the first enqueue() of a shape into a buffer of the runner and
//! reused while the kernel's address, size and type stay the same.
class Converse2DRunner
{
public:
    static constexpr size_t kMAX_CACHED = 4;

    explicit Converse2DRunner(bool constantKernel = false)
        : mConstantKernel(constantKernel)
    {
    }
    ~Converse2DRunner();
    Converse2DRunner(Converse2DRunner const&) = delete;
    Converse2DRunner& operator=(Converse2DRunner const&) = delete;

    //! Workspace bytes to reserve for a profile whose largest shape is maxG and whose smallest image
    //! is minH x minW (see converse2d_workspace.h). Makes and destroys cuFFT plans (no work areas).
    //! Returns false (and sets error) if cuFFT cannot plan a probed shape.
    static bool profileWorkspaceSize(
        Geometry const& maxG, int64_t minH, int64_t minW, size_t& bytes, std::string* error);

    //! Makes (or finds) the plans for shape g, and the kernel spectrum's buffer with constantKernel.
    //! reserved = workspace bytes enqueue() will receive (0 = unknown). Fails (and sets error) if
    //! the shape needs more workspace than that, or on a CUDA or cuFFT error.
    bool prepare(Geometry const& g, size_t reserved, std::string* error);

    //! Runs the operator on stream. x/out: (N, C, H, W)/(N, C, H s, W s); kernel (Bk, C, kh, kw);
    //! lam (Bl, C, 1, 1); all linear (NCHW). workspace holds reserved bytes (0 = unknown: assumed to
    //! be what the shape needs). An unprepared shape is prepared here, unless stream is capturing.
    bool enqueue(Geometry const& g, void const* x, ElemType xType, void const* kernel, ElemType kernelType,
        void const* lam, ElemType lamType, void* out, ElemType outType, void* workspace, size_t reserved,
        cudaStream_t stream, std::string* error);

private:
    //! The plans of one shape, and its cached kernel spectrum (constantKernel only).
    struct Entry
    {
        int64_t N{0}, C{0}, Hp{0}, Wp{0}, Bk{0}, Hs{0}, Ws{0};
        cufftHandle y{0}, k{0}, x{0};
        bool hasY{false}, hasK{false}, hasX{false};
        size_t work{0};
        Complex* spectrum{nullptr};
        cudaEvent_t spectrumReady{nullptr};
        bool spectrumValid{false};
        void const* spectrumOf{nullptr};
        int64_t spectrumKh{0}, spectrumKw{0};
        ElemType spectrumType{ElemType::kFLOAT};
    };

    static bool sameShape(Entry const& e, Geometry const& g);
    static bool makePlans(Geometry const& g, Entry& e, std::string* error);
    static void destroy(Entry& e);
    bool makeSpectrumBuffer(Geometry const& g, Entry& e, std::string* error);
    Entry* find(Geometry const& g);
    bool kernelSpectrum(Geometry const& g, Entry& e, void const* kernel, ElemType kernelType, float* grid,
        Complex* scratch, bool capturing, cudaStream_t stream, Complex*& fk, std::string* error);

    bool mConstantKernel;
    std::vector<Entry> mEntries; //!< most recently used first
};

//! Human-readable name of a cuFFT status.
char const* cufftStatusName(cufftResult status);

} // namespace converse2d
