// Converse2D TensorRT plugin: IPluginV3 glue around converse2d::Converse2DRunner.
#include "converse2d_plugin.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <sstream>

#define CONVERSE2D_EXPORT __attribute__((visibility("default")))

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using Severity = nvinfer1::ILogger::Severity;

namespace restormer
{
namespace plugin
{
namespace
{

constexpr int32_t kVALID = 0;
constexpr int32_t kEMPTY = 1;
constexpr int32_t kINVALID = -1;

std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

void logMessage(Severity severity, std::string const& message) noexcept
{
    try
    {
        nvinfer1::ILogger* logger{nullptr};
        {
            std::lock_guard<std::mutex> lock(gLoggerMutex);
            if (gLoggerFinder != nullptr)
            {
                logger = gLoggerFinder->findLogger();
            }
        }
        std::string const text = std::string("Converse2D plugin: ") + message;
        if (logger != nullptr)
        {
            logger->log(severity, text.c_str());
        }
        else if (severity <= Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", text.c_str());
        }
    }
    catch (...)
    {
    }
}

bool toElemType(DataType type, converse2d::ElemType& out)
{
    switch (type)
    {
    case DataType::kFLOAT: out = converse2d::ElemType::kFLOAT; return true;
    case DataType::kHALF: out = converse2d::ElemType::kHALF; return true;
    default: return false;
    }
}

bool readInt(PluginField const& field, int64_t& value)
{
    if (field.data == nullptr || field.length < 1)
    {
        return false;
    }
    switch (field.type)
    {
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); return true;
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); return true;
    case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(field.data); return true;
    default: return false;
    }
}

bool readString(PluginField const& field, std::string& value)
{
    if (field.data == nullptr)
    {
        return false;
    }
    if (field.type != PluginFieldType::kCHAR && field.type != PluginFieldType::kINT8
        && field.type != PluginFieldType::kUNKNOWN)
    {
        return false;
    }
    auto const* chars = static_cast<char const*>(field.data);
    // The ONNX parser passes the string with its terminating NUL counted in length; others may not.
    size_t const limit = field.length > 0 ? static_cast<size_t>(field.length) : size_t{64};
    size_t n = 0;
    while (n < limit && chars[n] != '\0')
    {
        ++n;
    }
    value.assign(chars, n);
    return true;
}

//! kWORKSPACE_RECORD positive numbers per profile, as getFieldsToSerialize writes them.
bool readRecords(PluginField const& field, std::vector<int64_t>& values)
{
    if (field.data == nullptr || field.type != PluginFieldType::kINT64 || field.length <= 0
        || field.length % static_cast<int32_t>(kWORKSPACE_RECORD) != 0)
    {
        return false;
    }
    auto const* data = static_cast<int64_t const*>(field.data);
    std::vector<int64_t> const read(data, data + field.length);
    if (std::any_of(read.begin(), read.end(), [](int64_t v) { return v <= 0; }))
    {
        return false;
    }
    values.insert(values.end(), read.begin(), read.end());
    return true;
}

bool hasNoElement(nvinfer1::Dims const& dims)
{
    return std::any_of(dims.d, dims.d + std::max(dims.nbDims, 0), [](int64_t d) { return d == 0; });
}

//! Offset of the record of the profile whose largest shape is g in workspace, or -1.
int64_t recordOffset(std::vector<int64_t> const& w, converse2d::Geometry const& g)
{
    for (size_t i = 0; i + kWORKSPACE_RECORD <= w.size(); i += kWORKSPACE_RECORD)
    {
        if (w[i] == g.N && w[i + 1] == g.C && w[i + 2] == g.H && w[i + 3] == g.W && w[i + 4] == g.Bk)
        {
            return static_cast<int64_t>(i);
        }
    }
    return -1;
}

//! Workspace bytes for a profile (converse2d_workspace.h); an estimate where cuFFT cannot plan.
size_t profileBudget(converse2d::Geometry const& maxG, nvinfer1::Dims const& minX)
{
    size_t bytes = 0;
    std::string error;
    if (converse2d::Converse2DRunner::profileWorkspaceSize(maxG, minX.d[2], minX.d[3], bytes, &error))
    {
        return bytes;
    }
    logMessage(Severity::kWARNING, "could not measure the cuFFT work area (" + error + "); reserving an estimate");
    size_t const spectrum
        = static_cast<size_t>(std::max(maxG.N, maxG.Bk) * maxG.C * maxG.Hs * maxG.Wsh) * sizeof(converse2d::Complex);
    return converse2d::workspaceLayout(maxG, 2 * spectrum).total;
}

} // namespace

bool parsePaddingMode(std::string const& name, int32_t& mode)
{
    if (name == "circular")
    {
        mode = converse2d::kPAD_CIRCULAR;
    }
    else if (name == "reflect")
    {
        mode = converse2d::kPAD_REFLECT;
    }
    else if (name == "replicate")
    {
        mode = converse2d::kPAD_REPLICATE;
    }
    else if (name == "constant" || name == "zeros")
    {
        mode = converse2d::kPAD_CONSTANT;
    }
    else
    {
        return false;
    }
    return true;
}

char const* paddingModeName(int32_t mode)
{
    switch (mode)
    {
    case converse2d::kPAD_CIRCULAR: return "circular";
    case converse2d::kPAD_REFLECT: return "reflect";
    case converse2d::kPAD_REPLICATE: return "replicate";
    case converse2d::kPAD_CONSTANT: return "constant";
    default: return "unknown";
    }
}

// ---------------------------------------------------------------------------------------------
// Converse2DPlugin

Converse2DPlugin::Converse2DPlugin(Converse2DParams const& params)
    : mParams(params)
    , mModeName(paddingModeName(params.mode))
    , mRunner(new converse2d::Converse2DRunner(params.constantKernel != 0))
{
    std::ostringstream os;
    os << "s" << mParams.scale << "_p" << mParams.padding << "_" << mModeName << (mParams.constantKernel ? "_ck" : "");
    mTimingId = os.str();
}

IPluginCapability* Converse2DPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* Converse2DPlugin::clone() noexcept
{
    try
    {
        return new Converse2DPlugin(mParams);
    }
    catch (std::exception const& e)
    {
        logMessage(Severity::kERROR, std::string("clone failed: ") + e.what());
    }
    return nullptr;
}

char const* Converse2DPlugin::getPluginName() const noexcept
{
    return kCONVERSE2D_NAME;
}

char const* Converse2DPlugin::getPluginVersion() const noexcept
{
    return kCONVERSE2D_VERSION;
}

char const* Converse2DPlugin::getPluginNamespace() const noexcept
{
    return kCONVERSE2D_NAMESPACE;
}

bool Converse2DPlugin::geometryFromDims(nvinfer1::Dims const& x, nvinfer1::Dims const& kernel,
    nvinfer1::Dims const& lam, converse2d::Geometry& g, bool log) const noexcept
{
    char const* problem = nullptr;
    if (x.nbDims != 4 || kernel.nbDims != 4 || lam.nbDims != 4)
    {
        problem = "x, kernel and lam must all be 4-D";
    }
    else if (kernel.d[1] != x.d[1] || lam.d[1] != x.d[1])
    {
        problem = "kernel and lam must have the channels of x";
    }
    else if (lam.d[2] != 1 || lam.d[3] != 1)
    {
        problem = "lam must be (1 or N, C, 1, 1)";
    }
    else
    {
        int32_t const status = converse2d::makeGeometry(g, x.d[0], x.d[1], x.d[2], x.d[3], kernel.d[0], kernel.d[2],
            kernel.d[3], lam.d[0], mParams.scale, mParams.padding, mParams.mode);
        switch (status)
        {
        case 0: return true;
        case -1: problem = "invalid scale, padding or padding_mode"; break;
        case -2: problem = "x has an empty dimension"; break;
        case -3: problem = "kernel must be (1 or N, C, kh, kw)"; break;
        case -4: problem = "lam must be (1 or N, C, 1, 1)"; break;
        case -5: problem = "the kernel is larger than the padded, upsampled grid"; break;
        default: problem = "invalid shapes"; break;
        }
    }
    if (log)
    {
        std::ostringstream os;
        os << problem << " (x";
        for (int32_t i = 0; i < x.nbDims; ++i)
        {
            os << (i ? "x" : " ") << x.d[i];
        }
        os << ", kernel";
        for (int32_t i = 0; i < kernel.nbDims; ++i)
        {
            os << (i ? "x" : " ") << kernel.d[i];
        }
        os << ", lam";
        for (int32_t i = 0; i < lam.nbDims; ++i)
        {
            os << (i ? "x" : " ") << lam.d[i];
        }
        os << ", scale " << mParams.scale << ", padding " << mParams.padding << ")";
        logMessage(Severity::kERROR, os.str());
    }
    return false;
}

bool Converse2DPlugin::profileGeometry(DynamicPluginTensorDesc const* in, converse2d::Geometry& g) const noexcept
{
    nvinfer1::Dims kernel = in[1].max;
    if (kernel.nbDims == 4)
    {
        kernel.d[2] = 1;
        kernel.d[3] = 1;
    }
    return geometryFromDims(in[0].max, kernel, in[2].max, g, true);
}

int32_t Converse2DPlugin::runtimeGeometry(PluginTensorDesc const* in, converse2d::Geometry& g) const noexcept
{
    if (in[0].dims.nbDims == 4 && hasNoElement(in[0].dims))
    {
        return kEMPTY;
    }
    return geometryFromDims(in[0].dims, in[1].dims, in[2].dims, g, true) ? kVALID : kINVALID;
}

size_t Converse2DPlugin::reservedFor(converse2d::Geometry const& g) noexcept
{
    // The profile in use contains g, so the smallest budget of the profiles that contain g is at
    // most what TensorRT reserved.
    std::vector<int64_t> const& w = mParams.workspace;
    int64_t inside = -1;
    int64_t smallest = -1;
    for (size_t i = 0; i + kWORKSPACE_RECORD <= w.size(); i += kWORKSPACE_RECORD)
    {
        int64_t const bytes = w[i + 5];
        smallest = smallest < 0 ? bytes : std::min(smallest, bytes);
        if (g.N <= w[i] && g.C <= w[i + 1] && g.H <= w[i + 2] && g.W <= w[i + 3] && g.Bk <= w[i + 4])
        {
            inside = inside < 0 ? bytes : std::min(inside, bytes);
        }
    }
    if (smallest < 0 && !mWarnedUnknownWorkspace)
    {
        logMessage(Severity::kWARNING, "no workspace size was recorded at build time; it cannot be checked");
        mWarnedUnknownWorkspace = true;
    }
    return static_cast<size_t>(inside >= 0 ? inside : std::max<int64_t>(smallest, 0));
}

int32_t Converse2DPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != 3 || nbOutputs != 1)
    {
        logMessage(Severity::kERROR, "expects 3 inputs (x, kernel, lam) and 1 output");
        return -1;
    }
    converse2d::Geometry g{};
    if (!profileGeometry(in, g))
    {
        return -1;
    }
    // Called for every profile (and format combination): the budget of each profile is measured
    // once, recorded by its largest shape and serialized, so that the runtime can check against it.
    if (recordOffset(mParams.workspace, g) < 0)
    {
        try
        {
            int64_t const bytes = static_cast<int64_t>(profileBudget(g, in[0].min));
            mParams.workspace.insert(mParams.workspace.end(), {g.N, g.C, g.H, g.W, g.Bk, bytes});
        }
        catch (std::exception const& e)
        {
            logMessage(Severity::kERROR, std::string("configurePlugin failed: ") + e.what());
            return -1;
        }
    }
    return 0;
}

int32_t Converse2DPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != 3)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t Converse2DPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 3 || nbOutputs != 1 || inputs[0].nbDims != 4)
    {
        logMessage(Severity::kERROR, "expects x of rank 4, a kernel and lam, and one output");
        return -1;
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = inputs[0].d[1];
    if (mParams.scale == 1)
    {
        outputs[0].d[2] = inputs[0].d[2];
        outputs[0].d[3] = inputs[0].d[3];
    }
    else
    {
        nvinfer1::IDimensionExpr const* s = exprBuilder.constant(mParams.scale);
        outputs[0].d[2] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[2], *s);
        outputs[0].d[3] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[3], *s);
    }
    return 0;
}

bool Converse2DPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != 3 || nbOutputs != 1 || pos < 0 || pos > 3)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 3)
    {
        return desc.type == inOut[0].desc.type; // the output has the type of x
    }
    // λ may come as FP16 (an FP16 graph) but is read as FP32 like everything else; our exporter keeps
    // it FP32 (λ ~ 1e-4 is near FP16's normal range).
    return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
}

int32_t Converse2DPlugin::getNbOutputs() const noexcept
{
    return 1;
}

size_t Converse2DPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs != 3)
    {
        return 0;
    }
    converse2d::Geometry g{};
    if (!profileGeometry(inputs, g))
    {
        return 0;
    }
    // configurePlugin has recorded the profile; only an unconfigured one is measured here.
    int64_t const at = recordOffset(mParams.workspace, g);
    return at >= 0 ? static_cast<size_t>(mParams.workspace[static_cast<size_t>(at) + 5])
                   : profileBudget(g, inputs[0].min);
}

char const* Converse2DPlugin::getTimingCacheID() noexcept
{
    return mTimingId.c_str();
}

char const* Converse2DPlugin::getMetadataString() noexcept
{
    return mTimingId.c_str();
}

int32_t Converse2DPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != 3 || nbOutputs != 1)
    {
        return -1;
    }
    converse2d::Geometry g{};
    int32_t const shape = runtimeGeometry(in, g);
    if (shape != kVALID)
    {
        return shape == kEMPTY ? 0 : -1;
    }
    // Plans (and the kernel spectrum's buffer) are made here, outside enqueue and its CUDA graph.
    std::string error;
    if (!mRunner->prepare(g, reservedFor(g), &error))
    {
        logMessage(Severity::kERROR, error);
        return -1;
    }
    return 0;
}

int32_t Converse2DPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return -1;
    }
    converse2d::Geometry g{};
    int32_t const shape = runtimeGeometry(inputDesc, g);
    if (shape != kVALID)
    {
        return shape == kEMPTY ? 0 : -1;
    }
    converse2d::ElemType xType, kType, lType, oType;
    if (!toElemType(inputDesc[0].type, xType) || !toElemType(inputDesc[1].type, kType)
        || !toElemType(inputDesc[2].type, lType) || !toElemType(outputDesc[0].type, oType))
    {
        logMessage(Severity::kERROR, "x, kernel, lam and the output must be FP32 or FP16");
        return -1;
    }
    std::string error;
    if (!mRunner->enqueue(g, inputs[0], xType, inputs[1], kType, inputs[2], lType, outputs[0],
            oType, workspace, reservedFor(g), stream, &error))
    {
        logMessage(Severity::kERROR, error);
        return -1;
    }
    return 0;
}

IPluginV3* Converse2DPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* Converse2DPlugin::getFieldsToSerialize() noexcept
{
    mSerialFields.clear();
    mSerialFields.emplace_back("scale", &mParams.scale, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("padding", &mParams.padding, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back(
        "padding_mode", mModeName.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(mModeName.size() + 1));
    mSerialFields.emplace_back("constant_kernel", &mParams.constantKernel, PluginFieldType::kINT32, 1);
    if (!mParams.workspace.empty())
    {
        // Internal (not a node attribute, not in getFieldNames): the workspace reserved per profile.
        mSerialFields.emplace_back("workspace_profiles", mParams.workspace.data(), PluginFieldType::kINT64,
            static_cast<int32_t>(mParams.workspace.size()));
    }
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

// ---------------------------------------------------------------------------------------------
// Converse2DPluginCreator

Converse2DPluginCreator::Converse2DPluginCreator()
{
    mFields.emplace_back("scale", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("padding", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("padding_mode", nullptr, PluginFieldType::kCHAR, 1);
    mFields.emplace_back("constant_kernel", nullptr, PluginFieldType::kINT32, 1);
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

char const* Converse2DPluginCreator::getPluginName() const noexcept
{
    return kCONVERSE2D_NAME;
}

char const* Converse2DPluginCreator::getPluginVersion() const noexcept
{
    return kCONVERSE2D_VERSION;
}

char const* Converse2DPluginCreator::getPluginNamespace() const noexcept
{
    return kCONVERSE2D_NAMESPACE;
}

PluginFieldCollection const* Converse2DPluginCreator::getFieldNames() noexcept
{
    return &mCollection;
}

IPluginV3* Converse2DPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        Converse2DParams params;
        std::string const layer = name != nullptr ? name : "";
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            PluginField const& field = fc->fields[i];
            if (field.name == nullptr)
            {
                continue;
            }
            std::string const key = field.name;
            int64_t value = 0;
            if (key == "scale" || key == "padding")
            {
                if (!readInt(field, value) || value < (key == "scale" ? 1 : 0) || value > (1 << 20))
                {
                    logMessage(Severity::kERROR, layer + ": invalid " + key + " (an integer, scale >= 1, padding >= 0)");
                    return nullptr;
                }
                (key == "scale" ? params.scale : params.padding) = static_cast<int32_t>(value);
            }
            else if (key == "padding_mode")
            {
                std::string mode;
                if (!readString(field, mode) || !parsePaddingMode(mode, params.mode))
                {
                    logMessage(Severity::kERROR,
                        layer + ": padding_mode '" + mode + "' is not circular, reflect, replicate or constant");
                    return nullptr;
                }
            }
            else if (key == "constant_kernel")
            {
                if (!readInt(field, value) || (value != 0 && value != 1))
                {
                    logMessage(Severity::kERROR, layer + ": invalid constant_kernel (0 or 1)");
                    return nullptr;
                }
                params.constantKernel = static_cast<int32_t>(value);
            }
            else if (key == "workspace_profiles")
            {
                if (!readRecords(field, params.workspace))
                {
                    logMessage(Severity::kERROR, layer + ": invalid workspace_profiles");
                    return nullptr;
                }
            }
            else if (key == "workspace_bytes" && readInt(field, value) && value > 0)
            {
                // Written by earlier builds of the plugin: one budget for every shape.
                int64_t const any = std::numeric_limits<int64_t>::max();
                params.workspace.insert(params.workspace.end(), {any, any, any, any, any, value});
            }
            // Other fields (plugin_namespace, plugin_version from an ONNX node) are ignored.
        }
        return new Converse2DPlugin(params);
    }
    catch (std::exception const& e)
    {
        logMessage(Severity::kERROR, std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace restormer

// ---------------------------------------------------------------------------------------------
// Entry points of the plugin library (trtexec --dynamicPlugins, IPluginRegistry::loadLibrary,
// tensorrt.get_plugin_registry().load_library()). getPluginCreators (IPluginCreator, the V2
// creator list) does not apply: this library has only an IPluginCreatorV3One.

extern "C" CONVERSE2D_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static restormer::plugin::Converse2DPluginCreator sCreator;
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sCreator};
    nbCreators = 1;
    return sCreators;
}

extern "C" CONVERSE2D_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(restormer::plugin::gLoggerMutex);
    if (restormer::plugin::gLoggerFinder == nullptr && finder != nullptr)
    {
        restormer::plugin::gLoggerFinder = finder;
    }
}

#if defined(CONVERSE2D_REGISTER_ON_LOAD)
// Opt-in (CMake CONVERSE2D_REGISTER_ON_LOAD=ON, links libnvinfer): register the creator when the
// library is loaded, e.g. by ctypes.CDLL after `import tensorrt`. Do not also pass such a build to
// loadLibrary / --dynamicPlugins: registering the same creator twice makes that call fail.
namespace
{
struct Converse2DRegistrar
{
    Converse2DRegistrar()
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry != nullptr)
        {
            int32_t n = 0;
            nvinfer1::IPluginCreatorInterface* const* creators = getCreators(n);
            registry->registerCreator(*creators[0], restormer::plugin::kCONVERSE2D_NAMESPACE);
        }
    }
};
Converse2DRegistrar const gConverse2DRegistrar{};
} // namespace
#endif
