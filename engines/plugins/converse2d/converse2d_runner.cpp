// Converse2D: the GPU pipeline (see converse2d_runner.h).
#include "converse2d_runner.h"

#include <cuda_runtime_api.h>

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

} // namespace

bool Converse2DRunner::sameShape(Plans const& p, Geometry const& g)
{
    return p.N == g.N && p.C == g.C && p.Hp == g.Hp && p.Wp == g.Wp && p.Bk == g.Bk && p.Hs == g.Hs && p.Ws == g.Ws;
}

void Converse2DRunner::destroyPlans(Plans& p)
{
    if (p.hasY)
    {
        cufftDestroy(p.y);
    }
    if (p.hasK)
    {
        cufftDestroy(p.k);
    }
    if (p.hasX)
    {
        cufftDestroy(p.x);
    }
    p.hasY = p.hasK = p.hasX = false;
}

bool Converse2DRunner::makePlans(Geometry const& g, Plans& p, std::string* error)
{
    p = Plans{};
    p.N = g.N;
    p.C = g.C;
    p.Hp = g.Hp;
    p.Wp = g.Wp;
    p.Bk = g.Bk;
    p.Hs = g.Hs;
    p.Ws = g.Ws;
    size_t wy = 0, wk = 0, wx = 0;
    bool ok = makePlan(p.y, p.hasY, g.Hp, g.Wp, g.N * g.C, CUFFT_R2C, wy, error)
        && makePlan(p.k, p.hasK, g.Hs, g.Ws, g.Bk * g.C, CUFFT_R2C, wk, error)
        && makePlan(p.x, p.hasX, g.Hs, g.Ws, g.N * g.C, CUFFT_C2R, wx, error);
    if (!ok)
    {
        destroyPlans(p);
        return false;
    }
    p.work = wy > wk ? wy : wk;
    p.work = p.work > wx ? p.work : wx;
    return true;
}

bool Converse2DRunner::queryWorkspaceSize(Geometry const& g, size_t& bytes, std::string* error)
{
    Plans p;
    if (!makePlans(g, p, error))
    {
        return false;
    }
    bytes = workspaceLayout(g, p.work).total;
    destroyPlans(p);
    return true;
}

Converse2DRunner::Plans* Converse2DRunner::findPlans(Geometry const& g)
{
    for (size_t i = 0; i < mPlans.size(); ++i)
    {
        if (sameShape(mPlans[i], g))
        {
            if (i != 0)
            {
                Plans const hit = mPlans[i];
                mPlans.erase(mPlans.begin() + static_cast<std::ptrdiff_t>(i));
                mPlans.insert(mPlans.begin(), hit);
            }
            return &mPlans.front();
        }
    }
    return nullptr;
}

bool Converse2DRunner::prepare(Geometry const& g, size_t available, std::string* error)
{
    Plans* plans = findPlans(g);
    if (plans == nullptr)
    {
        Plans fresh;
        if (!makePlans(g, fresh, error))
        {
            return false;
        }
        if (mPlans.size() >= kMAX_CACHED)
        {
            destroyPlans(mPlans.back());
            mPlans.pop_back();
        }
        mPlans.insert(mPlans.begin(), fresh);
        plans = &mPlans.front();
    }
    size_t const need = workspaceLayout(g, plans->work).total;
    if (available != 0 && need > available && need > mOwnBytes)
    {
        // cuFFT's work area is not monotone in the transform size (Bluestein for large prime
        // factors), so a shape inside the profile can need more than the bound at the maximum.
        if (mOwnBuffer != nullptr)
        {
            cudaFree(mOwnBuffer);
            mOwnBuffer = nullptr;
            mOwnBytes = 0;
        }
        if (!checkCuda(cudaMalloc(&mOwnBuffer, need), "cudaMalloc of the Converse2D fallback workspace", error))
        {
            mOwnBuffer = nullptr;
            return false;
        }
        mOwnBytes = need;
    }
    return true;
}

bool Converse2DRunner::enqueue(Geometry const& g, void const* x, ElemType xType, void const* kernel,
    ElemType kernelType, void const* lam, ElemType lamType, void* out, ElemType outType, void* workspace,
    size_t available, cudaStream_t stream, std::string* error)
{
    Plans* plans = findPlans(g);
    if (plans == nullptr)
    {
        // Normally done by onShapeChange(); planning here is a fallback.
        if (!prepare(g, available, error))
        {
            return false;
        }
        plans = findPlans(g);
    }
    Plans const current = *plans; // prepare() below may reorder the cache
    WorkspaceLayout const layout = workspaceLayout(g, current.work);
    char* base = static_cast<char*>(workspace);
    if (available != 0 && layout.total > available)
    {
        if (mOwnBytes < layout.total && !prepare(g, available, error))
        {
            return false;
        }
        base = static_cast<char*>(mOwnBuffer);
    }
    if (base == nullptr)
    {
        return fail(error, "Converse2D: no workspace");
    }
    auto* y = reinterpret_cast<float*>(base + layout.y);
    auto* fy = reinterpret_cast<Complex*>(base + layout.fy);
    auto* grid = reinterpret_cast<float*>(base + layout.grid);
    auto* fk = reinterpret_cast<Complex*>(base + layout.fk);
    auto* z = reinterpret_cast<Complex*>(base + layout.z);
    void* work = base + layout.work;

    cufftHandle const handles[3] = {current.y, current.k, current.x};
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

    if (!checkCuda(launchPad(x, xType, y, g, stream), "Converse2D pad kernel", error)
        || !checkCufft(cufftExecR2C(current.y, y, reinterpret_cast<cufftComplex*>(fy)), "cufftExecR2C (input)", error)
        || !checkCuda(launchP2O(kernel, kernelType, grid, g, stream), "Converse2D p2o kernel", error)
        || !checkCufft(
            cufftExecR2C(current.k, grid, reinterpret_cast<cufftComplex*>(fk)), "cufftExecR2C (kernel)", error)
        || !checkCuda(launchSolve(fy, fk, lam, lamType, z, g, stream), "Converse2D solve kernel", error))
    {
        return false;
    }
    // Without padding an FP32 output is the C2R result itself; otherwise C2R writes into the kernel
    // grid's buffer (no longer needed) and the crop kernel cuts and converts it.
    bool const direct = g.padding == 0 && outType == ElemType::kFLOAT;
    float* xs = direct ? static_cast<float*>(out) : grid;
    if (!checkCufft(cufftExecC2R(current.x, reinterpret_cast<cufftComplex*>(z), xs), "cufftExecC2R", error))
    {
        return false;
    }
    if (!direct && !checkCuda(launchCrop(xs, out, outType, g, stream), "Converse2D crop kernel", error))
    {
        return false;
    }
    return true;
}

Converse2DRunner::~Converse2DRunner()
{
    for (Plans& p : mPlans)
    {
        destroyPlans(p);
    }
    if (mOwnBuffer != nullptr)
    {
        cudaFree(mOwnBuffer);
    }
}

} // namespace converse2d
