// Converse2D plugin self-test, linked against the built plugin library (no libnvinfer needed).
//
//   converse2d_selftest                 checks everything that needs no GPU: getCreators, the
//                                       creator's fields (as the ONNX parser passes them), plugin
//                                       creation, capability interfaces, output types and shapes'
//                                       rules, format combinations, serialization round trip,
//                                       attachToContext, error paths. Prints "selftest OK".
//   converse2d_selftest CASE OUT        also runs the plugin on the GPU (if there is one) on the
//                                       problem in CASE and writes the output to OUT (float32);
//                                       also with constant_kernel (the cached kernel spectrum, which
//                                       must give the same output) and with a workspace record too
//                                       small for the shape (onShapeChange must refuse it).
//                                       Prints "gpu: no CUDA device" when there is none.
//
// CASE: int64 N, C, H, W, Bk, kh, kw, Bl, scale, padding, mode (0 circular, 1 reflect,
// 2 replicate, 3 constant), half (1: x and the output in FP16), then float32 x, kernel, lam.
//
//   g++ -std=c++17 -isystem <TensorRT include> -isystem <CUDA include> converse2d_selftest.cpp \
//       -L<build dir> -lconverse2d_plugin -lcudart -Wl,-rpath,<build dir> -o converse2d_selftest
#include "NvInferRuntime.h"

#include "converse2d_kernels.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace
{

struct Logger : ILogger
{
    void log(Severity severity, AsciiChar const* message) noexcept override
    {
        std::printf("  [log %d] %s\n", static_cast<int>(severity), message);
    }
} gLogger;

struct Finder : ILoggerFinder
{
    ILogger* findLogger() override
    {
        return &gLogger;
    }
} gFinder;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::printf("FAILED: %s (line %d)\n", #cond, __LINE__);                                                    \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    Dims dims{};
    dims.nbDims = 4;
    dims.d[0] = a;
    dims.d[1] = b;
    dims.d[2] = c;
    dims.d[3] = d;
    return dims;
}

DynamicPluginTensorDesc dynamicDesc(Dims const& dims, DataType type)
{
    DynamicPluginTensorDesc desc{};
    desc.desc.dims = dims;
    desc.desc.type = type;
    desc.desc.format = TensorFormat::kLINEAR;
    desc.min = desc.opt = desc.max = dims;
    return desc;
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return static_cast<T*>(plugin->getCapabilityInterface(type));
}

char const* const kMODES[] = {"circular", "reflect", "replicate", "constant"};

IPluginV3* createPlugin(IPluginCreatorV3One* creator, int32_t scale, int32_t padding, char const* mode,
    int32_t constantKernel = 0, std::vector<int64_t> const& workspace = {})
{
    // As the ONNX parser passes them: INT -> kINT32, STRING -> kCHAR with the NUL counted.
    std::vector<PluginField> fields{{"scale", &scale, PluginFieldType::kINT32, 1},
        {"padding", &padding, PluginFieldType::kINT32, 1},
        {"padding_mode", mode, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(mode) + 1)},
        {"constant_kernel", &constantKernel, PluginFieldType::kINT32, 1}};
    if (!workspace.empty())
    {
        fields.push_back({"workspace_profiles", workspace.data(), PluginFieldType::kINT64,
            static_cast<int32_t>(workspace.size())});
    }
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator->createPlugin("converse2d_selftest", &fc, TensorRTPhase::kBUILD);
}

int hostChecks(IPluginCreatorV3One* creator)
{
    std::printf("creator %s / %s / %s\n", creator->getPluginName(), creator->getPluginVersion(),
        creator->getPluginNamespace());
    CHECK(std::string(creator->getPluginName()) == "Converse2D");
    CHECK(std::string(creator->getPluginVersion()) == "1");
    CHECK(std::string(creator->getPluginNamespace()) == "restormer");
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 4);

    // Fields with an extra attribute the plugin must ignore.
    int32_t scale = 2, padding = 6;
    char const mode[] = "reflect";
    char const ns[] = "restormer";
    std::vector<PluginField> fields{{"scale", &scale, PluginFieldType::kINT32, 1},
        {"padding", &padding, PluginFieldType::kINT32, 1},
        {"padding_mode", mode, PluginFieldType::kCHAR, static_cast<int32_t>(sizeof(mode))},
        {"plugin_namespace", ns, PluginFieldType::kCHAR, static_cast<int32_t>(sizeof(ns))}};
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* plugin = creator->createPlugin("node", &fc, TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    auto* core = capability<IPluginV3OneCore>(plugin, PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    CHECK(core != nullptr && build != nullptr && runtime != nullptr);
    CHECK(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    CHECK(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    CHECK(std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
    CHECK(std::string(core->getPluginName()) == "Converse2D");
    CHECK(std::string(core->getPluginNamespace()) == "restormer");
    CHECK(std::string(build->getTimingCacheID()) == "s2_p6_reflect");
    CHECK(build->getNbOutputs() == 1);

    DataType inputTypes[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kHALF};
    DataType outputType = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&outputType, 1, inputTypes, 3) == 0 && outputType == DataType::kHALF);

    // Of {FP32, FP16, INT8} x {LINEAR, CHW32} for each of the 4 tensors, exactly the 8 combinations
    // of FP32/FP16 x, kernel and lam, linear, with the output of x's type are accepted.
    DataType const types[3] = {DataType::kFLOAT, DataType::kHALF, DataType::kINT8};
    TensorFormat const formats[2] = {TensorFormat::kLINEAR, TensorFormat::kCHW32};
    int accepted = 0;
    for (int combo = 0; combo < 6 * 6 * 6 * 6; ++combo)
    {
        DynamicPluginTensorDesc io[4];
        int rest = combo;
        bool ok = true;
        for (int pos = 0; pos < 4 && ok; ++pos, rest /= 6)
        {
            io[pos] = dynamicDesc(dims4(1, 1, 1, 1), types[(rest % 6) / 2]);
            io[pos].desc.format = formats[rest % 2];
            ok = build->supportsFormatCombination(pos, io, 3, 1);
        }
        accepted += ok ? 1 : 0;
    }
    CHECK(accepted == 8);

    DynamicPluginTensorDesc in[3] = {dynamicDesc(dims4(2, 3, 64, 48), DataType::kFLOAT),
        dynamicDesc(dims4(1, 3, 7, 7), DataType::kFLOAT), dynamicDesc(dims4(2, 3, 1, 1), DataType::kFLOAT)};
    DynamicPluginTensorDesc out[1] = {dynamicDesc(dims4(2, 3, 128, 96), DataType::kFLOAT)};
    CHECK(build->configurePlugin(in, 3, out, 1) == 0);
    CHECK(build->configurePlugin(in, 3, out, 1) == 0); // the same profile again: recorded once
    size_t const workspace = build->getWorkspaceSize(in, 3, out, 1);
    std::printf("workspace for x 2x3x64x48, s 2, p 6: %zu bytes\n", workspace);
    CHECK(workspace > 0);
    CHECK(build->getWorkspaceSize(in, 3, out, 1) == workspace);

    // Serialization round trip: the fields, and the workspace recorded for the profile.
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    CHECK(serial != nullptr && serial->nbFields == 5);
    CHECK(std::string(serial->fields[4].name) == "workspace_profiles" && serial->fields[4].length == 6);
    CHECK(static_cast<int64_t const*>(serial->fields[4].data)[5] == static_cast<int64_t>(workspace));
    IPluginV3* restored = creator->createPlugin("node", serial, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    auto* restoredBuild = capability<IPluginV3OneBuild>(restored, PluginCapabilityType::kBUILD);
    CHECK(std::string(restoredBuild->getTimingCacheID()) == "s2_p6_reflect");
    CHECK(restoredBuild->getWorkspaceSize(in, 3, out, 1) == workspace);
    auto* restoredRuntime = capability<IPluginV3OneRuntime>(restored, PluginCapabilityType::kRUNTIME);
    CHECK(restoredRuntime->getFieldsToSerialize()->nbFields == serial->nbFields);
    IPluginV3* attached = restoredRuntime->attachToContext(nullptr);
    CHECK(attached != nullptr);

    // Shapes that do not fit are refused with a logged error.
    PluginTensorDesc bad[3] = {in[0].desc, in[1].desc, in[2].desc};
    PluginTensorDesc badOut[1] = {out[0].desc};
    bad[1].dims = dims4(1, 3, 300, 7); // kernel taller than the padded, upsampled grid
    CHECK(capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME)->onShapeChange(bad, 3, badOut, 1)
        != 0);
    bad[1].dims = dims4(1, 2, 7, 7); // wrong channels
    CHECK(capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME)->onShapeChange(bad, 3, badOut, 1)
        != 0);

    // An empty batch is nothing to do, alike in onShapeChange and enqueue (no pointer is touched).
    PluginTensorDesc emptyIn[3] = {in[0].desc, in[1].desc, in[2].desc};
    PluginTensorDesc emptyOut[1] = {out[0].desc};
    emptyIn[0].dims = dims4(0, 3, 64, 48);
    emptyOut[0].dims = dims4(0, 3, 128, 96);
    auto* attachedRuntime = capability<IPluginV3OneRuntime>(attached, PluginCapabilityType::kRUNTIME);
    CHECK(attachedRuntime->onShapeChange(emptyIn, 3, emptyOut, 1) == 0);
    void const* noInputs[3] = {nullptr, nullptr, nullptr};
    void* noOutputs[1] = {nullptr};
    CHECK(attachedRuntime->enqueue(emptyIn, emptyOut, noInputs, noOutputs, nullptr, nullptr) == 0);
    // λ in FP16 is refused by enqueue too.
    PluginTensorDesc halfLam[3] = {in[0].desc, in[1].desc, in[2].desc};
    halfLam[2].type = DataType::kHALF;
    CHECK(attachedRuntime->enqueue(halfLam, badOut, noInputs, noOutputs, nullptr, nullptr) != 0);

    // Invalid fields give no plugin; "zeros" is "constant"; no fields give the defaults.
    CHECK(createPlugin(creator, 0, 0, "circular") == nullptr);
    CHECK(createPlugin(creator, 1, -1, "circular") == nullptr);
    CHECK(createPlugin(creator, 1, 0, "mirror") == nullptr);
    CHECK(createPlugin(creator, 1, 0, "circular", 2) == nullptr);
    CHECK(createPlugin(creator, 1, 0, "circular", 0, {1, 3, 8, 8, 1}) == nullptr); // not 6 numbers per profile
    CHECK(createPlugin(creator, 1, 0, "circular", 0, {1, 3, 8, 8, 1, 0}) == nullptr);
    IPluginV3* cached = createPlugin(creator, 2, 0, "circular", 1);
    CHECK(cached != nullptr);
    CHECK(std::string(capability<IPluginV3OneBuild>(cached, PluginCapabilityType::kBUILD)->getTimingCacheID())
        == "s2_p0_circular_ck");
    delete cached;
    IPluginV3* zeros = createPlugin(creator, 3, 1, "zeros");
    CHECK(zeros != nullptr);
    CHECK(std::string(capability<IPluginV3OneBuild>(zeros, PluginCapabilityType::kBUILD)->getTimingCacheID())
        == "s3_p1_constant");
    PluginFieldCollection empty{0, nullptr};
    IPluginV3* defaults = creator->createPlugin("defaults", &empty, TensorRTPhase::kBUILD);
    CHECK(defaults != nullptr);
    CHECK(std::string(capability<IPluginV3OneBuild>(defaults, PluginCapabilityType::kBUILD)->getTimingCacheID())
        == "s1_p0_circular");

    delete defaults;
    delete zeros;
    delete attached;
    delete restored;
    delete plugin;
    return 0;
}

struct Case
{
    int64_t N, C, H, W, Bk, kh, kw, Bl;
    int32_t scale, padding, mode;
    bool half;
    std::vector<float> x, kernel, lam;
};

bool readCase(char const* path, Case& c)
{
    std::ifstream file(path, std::ios::binary);
    int64_t h[12];
    if (!file.read(reinterpret_cast<char*>(h), sizeof(h)).good() || h[10] < 0 || h[10] > 3)
    {
        return false;
    }
    c = Case{h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], static_cast<int32_t>(h[8]), static_cast<int32_t>(h[9]),
        static_cast<int32_t>(h[10]), h[11] != 0, {}, {}, {}};
    c.x.resize(c.N * c.C * c.H * c.W);
    c.kernel.resize(c.Bk * c.C * c.kh * c.kw);
    c.lam.resize(c.Bl * c.C);
    for (std::vector<float>* v : {&c.x, &c.kernel, &c.lam})
    {
        if (!file.read(reinterpret_cast<char*>(v->data()), v->size() * sizeof(float)).good())
        {
            return false;
        }
    }
    return true;
}

struct CaseDescs
{
    DynamicPluginTensorDesc in[3];
    DynamicPluginTensorDesc out[1];
    PluginTensorDesc inDesc[3];
    PluginTensorDesc outDesc[1];
};

CaseDescs caseDescs(Case const& c)
{
    DataType const xType = c.half ? DataType::kHALF : DataType::kFLOAT;
    CaseDescs d{{dynamicDesc(dims4(c.N, c.C, c.H, c.W), xType), dynamicDesc(dims4(c.Bk, c.C, c.kh, c.kw), DataType::kFLOAT),
                    dynamicDesc(dims4(c.Bl, c.C, 1, 1), DataType::kFLOAT)},
        {dynamicDesc(dims4(c.N, c.C, c.H * c.scale, c.W * c.scale), xType)}, {}, {}};
    for (int i = 0; i < 3; ++i)
    {
        d.inDesc[i] = d.in[i].desc;
    }
    d.outDesc[0] = d.out[0].desc;
    return d;
}

//! Builds the plugin for the case and runs enqueue `enqueues` times; result receives the output.
int runCase(IPluginCreatorV3One* creator, Case const& c, int32_t constantKernel, int enqueues, std::vector<float>& result)
{
    IPluginV3* plugin = createPlugin(creator, c.scale, c.padding, kMODES[c.mode], constantKernel);
    CHECK(plugin != nullptr);
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    CaseDescs d = caseDescs(c);
    CHECK(build->configurePlugin(d.in, 3, d.out, 1) == 0);
    size_t const workspaceBytes = build->getWorkspaceSize(d.in, 3, d.out, 1);
    CHECK(runtime->onShapeChange(d.inDesc, 3, d.outDesc, 1) == 0);

    size_t const elem = c.half ? 2 : 4;
    size_t const outCount = static_cast<size_t>(c.N * c.C * c.H * c.scale * c.W * c.scale);
    std::vector<uint16_t> xHalf(c.x.size());
    for (size_t i = 0; i < c.x.size(); ++i)
    {
        xHalf[i] = converse2d::floatToHalfBits(c.x[i]);
    }
    void *dx = nullptr, *dk = nullptr, *dl = nullptr, *dout = nullptr, *dws = nullptr;
    CHECK(cudaMalloc(&dx, c.x.size() * elem) == cudaSuccess);
    CHECK(cudaMalloc(&dk, c.kernel.size() * 4) == cudaSuccess);
    CHECK(cudaMalloc(&dl, c.lam.size() * 4) == cudaSuccess);
    CHECK(cudaMalloc(&dout, outCount * elem) == cudaSuccess);
    CHECK(cudaMalloc(&dws, workspaceBytes) == cudaSuccess);
    CHECK(cudaMemcpy(dx, c.half ? static_cast<void const*>(xHalf.data()) : c.x.data(), c.x.size() * elem,
              cudaMemcpyHostToDevice)
        == cudaSuccess);
    CHECK(cudaMemcpy(dk, c.kernel.data(), c.kernel.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(cudaMemcpy(dl, c.lam.data(), c.lam.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    cudaStream_t stream{};
    CHECK(cudaStreamCreate(&stream) == cudaSuccess);
    void const* inputs[3] = {dx, dk, dl};
    void* outputs[1] = {dout};
    // Later calls reuse the cached plans (and, with constant_kernel, the kernel's spectrum).
    for (int i = 0; i < enqueues; ++i)
    {
        CHECK(cudaMemset(dout, 0, outCount * elem) == cudaSuccess);
        CHECK(runtime->enqueue(d.inDesc, d.outDesc, inputs, outputs, dws, stream) == 0);
    }
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    result.assign(outCount, 0.0f);
    if (c.half)
    {
        std::vector<uint16_t> bits(outCount);
        CHECK(cudaMemcpy(bits.data(), dout, outCount * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
        for (size_t i = 0; i < outCount; ++i)
        {
            result[i] = converse2d::halfBitsToFloat(bits[i]);
        }
    }
    else
    {
        CHECK(cudaMemcpy(result.data(), dout, outCount * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
    }
    cudaStreamDestroy(stream);
    cudaFree(dx);
    cudaFree(dk);
    cudaFree(dl);
    cudaFree(dout);
    cudaFree(dws);
    delete plugin;
    std::printf("gpu: ran (constant_kernel %d), workspace %zu bytes\n", constantKernel, workspaceBytes);
    return 0;
}

//! A serialized workspace record too small for the case: onShapeChange must refuse the shape.
int refusesSmallWorkspace(IPluginCreatorV3One* creator, Case const& c)
{
    IPluginV3* plugin
        = createPlugin(creator, c.scale, c.padding, kMODES[c.mode], 0, {c.N, c.C, c.H, c.W, c.Bk, 1024});
    CHECK(plugin != nullptr);
    CaseDescs d = caseDescs(c);
    CHECK(capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME)->onShapeChange(d.inDesc, 3, d.outDesc, 1)
        != 0);
    delete plugin;
    return 0;
}

int gpuRun(IPluginCreatorV3One* creator, char const* casePath, char const* outPath)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::printf("gpu: no CUDA device\n");
        return 0;
    }
    Case c;
    CHECK(readCase(casePath, c));
    std::vector<float> result, cached;
    CHECK(runCase(creator, c, 0, 2, result) == 0);
    CHECK(runCase(creator, c, 1, 3, cached) == 0);
    float peak = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < result.size(); ++i)
    {
        peak = std::max(peak, std::fabs(result[i]));
        diff = std::max(diff, std::fabs(result[i] - cached[i]));
    }
    std::printf("gpu: cached kernel spectrum differs by %g (peak %g)\n", diff, peak);
    CHECK(diff <= 1e-6f * peak);
    CHECK(refusesSmallWorkspace(creator, c) == 0);
    std::ofstream(outPath, std::ios::binary)
        .write(reinterpret_cast<char const*>(result.data()), static_cast<std::streamsize>(result.size() * 4));
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    setLoggerFinder(&gFinder);
    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    CHECK(nbCreators == 1 && creators != nullptr);
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    if (hostChecks(creator) != 0)
    {
        return 1;
    }
    if (argc == 3 && gpuRun(creator, argv[1], argv[2]) != 0)
    {
        return 1;
    }
    std::printf("selftest OK\n");
    return 0;
}
