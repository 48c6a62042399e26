// Converse2D plugin self-test, linked against the built plugin library (no libnvinfer needed).
//
//   converse2d_selftest                 checks everything that needs no GPU: getCreators, the
//                                       creator's fields (as the ONNX parser passes them), plugin
//                                       creation, capability interfaces, output types and shapes'
//                                       rules, format combinations, serialization round trip,
//                                       attachToContext, error paths. Prints "selftest OK".
//   converse2d_selftest CASE OUT        also runs the plugin on the GPU (if there is one) on the
//                                       problem in CASE and writes the output to OUT (float32).
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

IPluginV3* createPlugin(IPluginCreatorV3One* creator, int32_t scale, int32_t padding, char const* mode)
{
    // As the ONNX parser passes them: INT -> kINT32, STRING -> kCHAR with the NUL counted.
    std::vector<PluginField> fields{{"scale", &scale, PluginFieldType::kINT32, 1},
        {"padding", &padding, PluginFieldType::kINT32, 1},
        {"padding_mode", mode, PluginFieldType::kCHAR, static_cast<int32_t>(std::strlen(mode) + 1)}};
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
    CHECK(names != nullptr && names->nbFields == 3);

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
    // of FP32/FP16 inputs, linear, with the output of x's type are accepted.
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
    size_t const workspace = build->getWorkspaceSize(in, 3, out, 1);
    std::printf("workspace for x 2x3x64x48, s 2, p 6: %zu bytes\n", workspace);
    CHECK(workspace > 0);

    // Serialization round trip.
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    CHECK(serial != nullptr && serial->nbFields >= 3);
    IPluginV3* restored = creator->createPlugin("node", serial, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    CHECK(std::string(capability<IPluginV3OneBuild>(restored, PluginCapabilityType::kBUILD)->getTimingCacheID())
        == "s2_p6_reflect");
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

    // Invalid fields give no plugin; "zeros" is "constant"; no fields give the defaults.
    CHECK(createPlugin(creator, 0, 0, "circular") == nullptr);
    CHECK(createPlugin(creator, 1, -1, "circular") == nullptr);
    CHECK(createPlugin(creator, 1, 0, "mirror") == nullptr);
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

int gpuRun(IPluginCreatorV3One* creator, char const* casePath, char const* outPath)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::printf("gpu: no CUDA device\n");
        return 0;
    }
    std::ifstream file(casePath, std::ios::binary);
    int64_t h[12];
    CHECK(file.read(reinterpret_cast<char*>(h), sizeof(h)).good());
    int64_t const N = h[0], C = h[1], H = h[2], W = h[3], Bk = h[4], kh = h[5], kw = h[6], Bl = h[7];
    int32_t const scale = static_cast<int32_t>(h[8]), padding = static_cast<int32_t>(h[9]);
    int32_t const mode = static_cast<int32_t>(h[10]);
    bool const half = h[11] != 0;
    std::vector<float> x(N * C * H * W), kernel(Bk * C * kh * kw), lam(Bl * C);
    CHECK(file.read(reinterpret_cast<char*>(x.data()), x.size() * sizeof(float)).good());
    CHECK(file.read(reinterpret_cast<char*>(kernel.data()), kernel.size() * sizeof(float)).good());
    CHECK(file.read(reinterpret_cast<char*>(lam.data()), lam.size() * sizeof(float)).good());
    CHECK(mode >= 0 && mode <= 3);

    IPluginV3* plugin = createPlugin(creator, scale, padding, kMODES[mode]);
    CHECK(plugin != nullptr);
    auto* build = capability<IPluginV3OneBuild>(plugin, PluginCapabilityType::kBUILD);
    DataType const xType = half ? DataType::kHALF : DataType::kFLOAT;
    DynamicPluginTensorDesc in[3] = {dynamicDesc(dims4(N, C, H, W), xType),
        dynamicDesc(dims4(Bk, C, kh, kw), DataType::kFLOAT), dynamicDesc(dims4(Bl, C, 1, 1), DataType::kFLOAT)};
    DynamicPluginTensorDesc out[1] = {dynamicDesc(dims4(N, C, H * scale, W * scale), xType)};
    CHECK(build->configurePlugin(in, 3, out, 1) == 0);
    size_t const workspaceBytes = build->getWorkspaceSize(in, 3, out, 1);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    PluginTensorDesc inDesc[3] = {in[0].desc, in[1].desc, in[2].desc};
    PluginTensorDesc outDesc[1] = {out[0].desc};
    CHECK(runtime->onShapeChange(inDesc, 3, outDesc, 1) == 0);

    size_t const elem = half ? 2 : 4;
    size_t const outCount = static_cast<size_t>(N * C * H * scale * W * scale);
    std::vector<uint16_t> xHalf(x.size());
    for (size_t i = 0; i < x.size(); ++i)
    {
        xHalf[i] = converse2d::floatToHalfBits(x[i]);
    }
    void *dx = nullptr, *dk = nullptr, *dl = nullptr, *dout = nullptr, *dws = nullptr;
    CHECK(cudaMalloc(&dx, x.size() * elem) == cudaSuccess);
    CHECK(cudaMalloc(&dk, kernel.size() * 4) == cudaSuccess);
    CHECK(cudaMalloc(&dl, lam.size() * 4) == cudaSuccess);
    CHECK(cudaMalloc(&dout, outCount * elem) == cudaSuccess);
    CHECK(cudaMalloc(&dws, workspaceBytes) == cudaSuccess);
    CHECK(cudaMemcpy(dx, half ? static_cast<void const*>(xHalf.data()) : x.data(), x.size() * elem,
              cudaMemcpyHostToDevice)
        == cudaSuccess);
    CHECK(cudaMemcpy(dk, kernel.data(), kernel.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(cudaMemcpy(dl, lam.data(), lam.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    cudaStream_t stream{};
    CHECK(cudaStreamCreate(&stream) == cudaSuccess);
    void const* inputs[3] = {dx, dk, dl};
    void* outputs[1] = {dout};
    // Twice: the second call reuses the cached plans.
    for (int i = 0; i < 2; ++i)
    {
        CHECK(runtime->enqueue(inDesc, outDesc, inputs, outputs, dws, stream) == 0);
    }
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
    std::vector<float> result(outCount);
    if (half)
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
    std::ofstream(outPath, std::ios::binary).write(reinterpret_cast<char const*>(result.data()), outCount * 4);
    cudaStreamDestroy(stream);
    cudaFree(dx);
    cudaFree(dk);
    cudaFree(dl);
    cudaFree(dout);
    cudaFree(dws);
    delete plugin;
    std::printf("gpu: ran, workspace %zu bytes\n", workspaceBytes);
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
