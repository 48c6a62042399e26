// Converse2D: the GPU pipeline (see converse2d_runner.h).
#include "converse2d_runner.h"

#include "converse2d_workspace.h"

#include <cuda_runtime_api.h>

#include <climits>
#include <sstream>

namespace converse2d
{

char const* cufftStatusName(cufftResult status)
{
    switch (status)
    {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "cuFFT error";
    }
}

namespace
{

bool fail(std::string* error, std::string const& message)
{
    if (error != nullptr)
    {
        *error = message;
    }
    return false;
}

bool checkCufft(cufftResult status, char const* what, std::string* error)
{
    if (status == CUFFT_SUCCESS)
    {
        return true;
    }
    std::ostringstream os;
    os << what << " failed: " << cufftStatusName(status) << " (" << static_cast<int>(status) << ")";
    return fail(error, os.str());
}

bool checkCuda(cudaError_t status, char const* what, std::string* error)
{
    if (status == cudaSuccess)
    {
        return true;
    }
    std::ostringstream os;
    os << what << " failed: " << cudaGetErrorString(status);
    return fail(error, os.str());
}

//! A batched 2-D real transform of rows x cols, contiguous, without an automatically allocated work area.
bool makePlan(cufftHandle& handle, bool& created, int64_t rows, int64_t cols, int64_t batch, cufftType type,
    size_t& work, std::string* error)
{
    if (!checkCufft(cufftCreate(&handle), "cufftCreate", error))
    {
        return false;
    }
    created = true;
    if (!checkCufft(cufftSetAutoAllocation(handle, 0), "cufftSetAutoAllocation", error))
    {
        return false;
    }
    long long int n[2] = {static_cast<long long int>(rows), static_cast<long long int>(cols)};
    work = 0;
    return checkCufft(cufftMakePlanMany64(handle, 2, n, nullptr, 1, 0, nullptr, 1, 0, type,
                          static_cast<long long int>(batch), &work),
        "cufftMakePlanMany64", error);
}

//! cuFFT's estimate of the work area of one complex transform of length n (0 when it gives none).
size_t lengthCost(int64_t n)
{
    size_t bytes = 0;
    if (n > INT_MAX || cufftEstimate1d(static_cast<int>(n), CUFFT_C2C, 1, &bytes) != CUFFT_SUCCESS)
    {
        return 0;
    }
    return bytes;
}

//! Whether stream is being captured into a CUDA graph (also when the query itself is refused).
bool isCapturing(cudaStream_t stream)
{
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &status) != cudaSuccess)
    {
        cudaGetLastError(); // not sticky: keep it from being reported by the next launch
        return true;
    }
    return status != cudaStreamCaptureStatusNone;
}

} // namespace

bool Converse2DRunner::sameShape(Entry const& e, Geometry const& g)
{
    return e.N == g.N && e.C == g.C && e.Hp == g.Hp && e.Wp == g.Wp && e.Bk == g.Bk && e.Hs == g.Hs && e.Ws == g.Ws;
}

void Converse2DRunner::destroy(Entry& e)
{
    if (e.hasY)
    {
        cufftDestroy(e.y);
    }
    if (e.hasK)
    {
        cufftDestroy(e.k);
    }
    if (e.hasX)
    {
        cufftDestroy(e.x);
    }
    if (e.spectrum != nullptr)
    {
        cudaFree(e.spectrum);
    }
    if (e.spectrumReady != nullptr)
    {
        cudaEventDestroy(e.spectrumReady);
    }
    e = Entry{};
}

bool Converse2DRunner::makePlans(Geometry const& g, Entry& e, std::string* error)
{
    e = Entry{};
    e.N = g.N;
    e.C = g.C;
    e.Hp = g.Hp;
    e.Wp = g.Wp;
    e.Bk = g.Bk;
    e.Hs = g.Hs;
    e.Ws = g.Ws;
    size_t wy = 0, wk = 0, wx = 0;
    bool ok = makePlan(e.y, e.hasY, g.Hp, g.Wp, g.N * g.C, CUFFT_R2C, wy, error)
        && makePlan(e.k, e.hasK, g.Hs, g.Ws, g.Bk * g.C, CUFFT_R2C, wk, error)
        && makePlan(e.x, e.hasX, g.Hs, g.Ws, g.N * g.C, CUFFT_C2R, wx, error);
    if (!ok)
    {
        destroy(e);
        return false;
    }
    e.work = std::max(wy, std::max(wk, wx));
    return true;
}

bool Converse2DRunner::profileWorkspaceSize(
    Geometry const& maxG, int64_t minH, int64_t minW, size_t& bytes, std::string* error)
{
    auto fftWork = [error](Geometry const& g, size_t& work) {
        Entry e;
        if (!makePlans(g, e, error))
        {
            return false;
        }
        work = e.work;
        destroy(e);
        return true;
    };
    if (error != nullptr)
    {
        error->clear();
    }
    if (profileWorkspace(maxG, minH, minW, lengthCost, fftWork, bytes))
    {
        return true;
    }
    return error != nullptr && !error->empty() ? false : fail(error, "invalid profile shape");
}

Converse2DRunner::Entry* Converse2DRunner::find(Geometry const& g)
{
    for (size_t i = 0; i < mEntries.size(); ++i)
    {
        if (sameShape(mEntries[i], g))
        {
            if (i != 0)
            {
                Entry const hit = mEntries[i];
                mEntries.erase(mEntries.begin() + static_cast<std::ptrdiff_t>(i));
                mEntries.insert(mEntries.begin(), hit);
            }
            return &mEntries.front();
        }
    }
    return nullptr;
}

bool Converse2DRunner::makeSpectrumBuffer(Geometry const& g, Entry& e, std::string* error)
{
    size_t const bytes = static_cast<size_t>(g.Bk * g.C * g.Hs * g.Wsh) * sizeof(Complex);
    void* buffer = nullptr;
    if (!checkCuda(cudaMalloc(&buffer, bytes), "cudaMalloc of the kernel spectrum", error))
    {
        return false;
    }
    if (!checkCuda(cudaEventCreateWithFlags(&e.spectrumReady, cudaEventDisableTiming), "cudaEventCreate", error))
    {
        e.spectrumReady = nullptr;
        cudaFree(buffer);
        return false;
    }
    e.spectrum = static_cast<Complex*>(buffer);
    e.spectrumValid = false;
    return true;
}

bool Converse2DRunner::prepare(Geometry const& g, size_t reserved, std::string* error)
{
    Entry* e = find(g);
    if (e == nullptr)
    {
        Entry fresh;
        if (!makePlans(g, fresh, error))
        {
            return false;
        }
        if (mEntries.size() >= kMAX_CACHED)
        {
            destroy(mEntries.back());
            mEntries.pop_back();
        }
        mEntries.insert(mEntries.begin(), fresh);
        e = &mEntries.front();
    }
    size_t const need = workspaceLayout(g, e->work).total;
    if (reserved != 0 && need > reserved)
    {
        std::ostringstream os;
        os << "this shape needs " << need << " bytes of workspace (cuFFT work area " << e->work << " bytes) but "
           << reserved << " were reserved at build time (cuFFT's work area is not monotone in the size): use "
           << "another size, or build the engine with this shape as the profile's maximum";
        return fail(error, os.str());
    }
    return !mConstantKernel || e->spectrum != nullptr || makeSpectrumBuffer(g, *e, error);
}

bool Converse2DRunner::kernelSpectrum(Geometry const& g, Entry& e, void const* kernel, ElemType kernelType,
    float* grid, Complex* scratch, bool capturing, cudaStream_t stream, Complex*& fk, std::string* error)
{
    if (e.spectrumValid && e.spectrumOf == kernel && e.spectrumKh == g.kh && e.spectrumKw == g.kw
        && e.spectrumType == kernelType)
    {
        fk = e.spectrum;
        // Computed by an earlier call, perhaps on another stream. Inside a capture the graph relies
        // on that call having run before (an event recorded outside the capture is not waited on).
        return capturing
            || checkCuda(cudaStreamWaitEvent(stream, e.spectrumReady, 0), "cudaStreamWaitEvent", error);
    }
    // Computed inside a capture, it would only exist once the graph runs: keep it in the workspace.
    bool const store = e.spectrum != nullptr && !capturing;
    fk = store ? e.spectrum : scratch;
    if (!checkCuda(launchP2O(kernel, kernelType, grid, g, stream), "Converse2D p2o kernel", error)
        || !checkCufft(cufftExecR2C(e.k, grid, reinterpret_cast<cufftComplex*>(fk)), "cufftExecR2C (kernel)", error))
    {
        return false;
    }
    if (store)
    {
        e.spectrumValid = checkCuda(cudaEventRecord(e.spectrumReady, stream), "cudaEventRecord", error);
        e.spectrumOf = kernel;
        e.spectrumKh = g.kh;
        e.spectrumKw = g.kw;
        e.spectrumType = kernelType;
        return e.spectrumValid;
    }
    return true;
}

bool Converse2DRunner::enqueue(Geometry const& g, void const* x, ElemType xType, void const* kernel,
    ElemType kernelType, void const* lam, ElemType lamType, void* out, ElemType outType, void* workspace,
    size_t reserved, cudaStream_t stream, std::string* error)
{
    bool const capturing = isCapturing(stream);
    Entry* e = find(g);
    if (e == nullptr)
    {
        // Normally prepared by onShapeChange(); plans cannot be made while a CUDA graph is captured.
        if (capturing)
        {
            return fail(error, "no cuFFT plans for this shape during CUDA graph capture: run it once before capturing");
        }
        if (!prepare(g, reserved, error))
        {
            return false;
        }
        e = &mEntries.front();
    }
    WorkspaceLayout const layout = workspaceLayout(g, e->work);
    if (reserved != 0 && layout.total > reserved)
    {
        return fail(error, "the workspace is smaller than this shape needs");
    }
    if (workspace == nullptr)
    {
        return fail(error, "no workspace");
    }
    char* base = static_cast<char*>(workspace);
    auto* y = reinterpret_cast<float*>(base + layout.y);
    auto* fy = reinterpret_cast<Complex*>(base + layout.fy);
    auto* grid = reinterpret_cast<float*>(base + layout.grid);
    auto* z = reinterpret_cast<Complex*>(base + layout.z);
    void* work = base + layout.work;

    cufftHandle const handles[3] = {e->y, e->k, e->x};
    for (cufftHandle h : handles)
    {
        if (!checkCufft(cufftSetStream(h, stream), "cufftSetStream", error)
            || !checkCufft(cufftSetWorkArea(h, work), "cufftSetWorkArea", error))
        {
            return false;
        }
    }
    // The cuFFT plans use float2 for cufftComplex, laid out as Complex.
    static_assert(sizeof(Complex) == sizeof(cufftComplex), "Complex must match cufftComplex");

    Complex* fk = nullptr;
    if (!checkCuda(launchPad(x, xType, y, g, stream), "Converse2D pad kernel", error)
        || !checkCufft(cufftExecR2C(e->y, y, reinterpret_cast<cufftComplex*>(fy)), "cufftExecR2C (input)", error)
        || !kernelSpectrum(g, *e, kernel, kernelType, grid, reinterpret_cast<Complex*>(base + layout.fk), capturing,
            stream, fk, error)
        || !checkCuda(launchSolve(fy, fk, lam, lamType, z, g, stream), "Converse2D solve kernel", error))
    {
        return false;
    }
    // Without padding an FP32 output is the C2R result itself; otherwise C2R writes into the kernel
    // grid's buffer (no longer needed) and the crop kernel cuts and converts it.
    bool const direct = g.padding == 0 && outType == ElemType::kFLOAT;
    float* xs = direct ? static_cast<float*>(out) : grid;
    if (!checkCufft(cufftExecC2R(e->x, reinterpret_cast<cufftComplex*>(z), xs), "cufftExecC2R", error))
    {
        return false;
    }
    return direct || checkCuda(launchCrop(xs, out, outType, g, stream), "Converse2D crop kernel", error);
}

Converse2DRunner::~Converse2DRunner()
{
    for (Entry& e : mEntries)
    {
        destroy(e);
    }
}

} // namespace converse2d
