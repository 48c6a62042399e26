// Converse2D TensorRT plugin: IPluginV3 glue around converse2d::Converse2DRunner.
#include "converse2d_plugin.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
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
    , mRunner(new converse2d::Converse2DRunner())
{
    std::ostringstream os;
    os << "s" << mParams.scale << "_p" << mParams.padding << "_" << mModeName;
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
        Converse2DParams params = mParams;
        if (mWorkspaceBudget > 0)
        {
            params.workspaceBytes = mWorkspaceBudget;
        }
        auto* plugin = new Converse2DPlugin(params);
        plugin->mWorkspaceBudget = mWorkspaceBudget;
        return plugin;
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

int32_t Converse2DPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != 3 || nbOutputs != 1)
    {
        logMessage(Severity::kERROR, "expects 3 inputs (x, kernel, lam) and 1 output");
        return -1;
    }
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        if (in[i].desc.dims.nbDims != 4)
        {
            logMessage(Severity::kERROR, "x, kernel and lam must all be 4-D");
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
    // Every buffer grows with every dimension, so the profile's maximum bounds them; the cuFFT work
    // areas are measured at the maximum too (see Converse2DRunner::prepare for shapes that need more).
    converse2d::Geometry g{};
    if (!geometryFromDims(inputs[0].max, inputs[1].max, inputs[2].max, g, true))
    {
        return 0;
    }
    size_t bytes = 0;
    std::string error;
    if (!converse2d::Converse2DRunner::queryWorkspaceSize(g, bytes, &error))
    {
        // No cuFFT plan could be made here (no device?): budget twice the largest spectrum.
        size_t const spectrum = static_cast<size_t>(std::max(g.N, g.Bk) * g.C * g.Hs * g.Wsh) * sizeof(converse2d::Complex);
        bytes = converse2d::workspaceLayout(g, 2 * spectrum).total;
        logMessage(Severity::kWARNING, "could not measure the cuFFT work area (" + error + "); using an estimate");
    }
    int64_t const b = static_cast<int64_t>(bytes);
    if (mWorkspaceBudget == 0 || b < mWorkspaceBudget)
    {
        mWorkspaceBudget = b;
    }
    return bytes;
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
    if (!geometryFromDims(in[0].dims, in[1].dims, in[2].dims, g, true))
    {
        return -1;
    }
    std::string error;
    size_t const budget = static_cast<size_t>(mWorkspaceBudget > 0 ? mWorkspaceBudget : mParams.workspaceBytes);
    size_t const ownBefore = mRunner->ownBufferBytes();
    if (!mRunner->prepare(g, budget, &error))
    {
        logMessage(Severity::kERROR, error);
        return -1;
    }
    if (mRunner->ownBufferBytes() != ownBefore)
    {
        std::ostringstream os;
        os << "this shape needs more than the " << budget << " bytes of workspace reserved at build time (cuFFT's "
           << "work area is not monotone in the size); allocated " << mRunner->ownBufferBytes() << " bytes instead";
        logMessage(Severity::kWARNING, os.str());
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
    nvinfer1::Dims const& xd = inputDesc[0].dims;
    if (xd.nbDims == 4 && (xd.d[0] == 0 || xd.d[1] == 0 || xd.d[2] == 0 || xd.d[3] == 0))
    {
        return 0; // empty batch or image: nothing to do
    }
    converse2d::Geometry g{};
    if (!geometryFromDims(inputDesc[0].dims, inputDesc[1].dims, inputDesc[2].dims, g, true))
    {
        return -1;
    }
    converse2d::ElemType xType, kType, lType, oType;
    if (!toElemType(inputDesc[0].type, xType) || !toElemType(inputDesc[1].type, kType)
        || !toElemType(inputDesc[2].type, lType) || !toElemType(outputDesc[0].type, oType))
    {
        logMessage(Severity::kERROR, "only FP32 and FP16 tensors are supported");
        return -1;
    }
    std::string error;
    size_t const budget = static_cast<size_t>(mWorkspaceBudget > 0 ? mWorkspaceBudget : mParams.workspaceBytes);
    if (!mRunner->enqueue(g, inputs[0], xType, inputs[1], kType, inputs[2], lType, outputs[0], oType, workspace,
            budget, stream, &error))
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
    if (mWorkspaceBudget > 0)
    {
        mParams.workspaceBytes = mWorkspaceBudget;
    }
    mSerialFields.clear();
    mSerialFields.emplace_back("scale", &mParams.scale, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("padding", &mParams.padding, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back(
        "padding_mode", mModeName.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(mModeName.size() + 1));
    if (mParams.workspaceBytes > 0)
    {
        // Internal: the workspace size TensorRT reserved, so that the runtime can tell when a shape
        // needs more (not a node attribute; createPlugin accepts it, getFieldNames does not list it).
        mSerialFields.emplace_back("workspace_bytes", &mParams.workspaceBytes, PluginFieldType::kINT64, 1);
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
            else if (key == "workspace_bytes")
            {
                if (readInt(field, value) && value > 0)
                {
                    params.workspaceBytes = value;
                }
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
