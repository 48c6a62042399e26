// Converse2D TensorRT plugin (IPluginV3, name "Converse2D", namespace "restormer", version "1").
//
// Inputs: x (N, C, H, W), kernel (1 or N, C, kh, kw), lam (1 or N, C, 1, 1); FP32 or FP16, linear.
// Output: (N, C, H*scale, W*scale), the type of x. Fields: scale, padding, padding_mode, constant_kernel.
// The math is docs/OPERATORS.md (Converse2D, transfer-function form), computed in FP32.
#pragma once

#include "NvInferRuntime.h"
#include "NvInferVersion.h"

#include "converse2d_runner.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "The Converse2D plugin needs TensorRT 10.3 or newer (IPluginV3)"
#endif

namespace restormer
{
namespace plugin
{

constexpr char const* kCONVERSE2D_NAME = "Converse2D";
constexpr char const* kCONVERSE2D_VERSION = "1";
constexpr char const* kCONVERSE2D_NAMESPACE = "restormer";

//! Numbers per profile in Converse2DParams::workspace: the largest x (N, C, H, W) and kernel batch
//! of the profile, then the workspace bytes reserved for it.
constexpr size_t kWORKSPACE_RECORD = 6;

//! The attributes of one Converse2D node, and the workspace reserved per optimisation profile.
struct Converse2DParams
{
    int32_t scale{1};
    int32_t padding{0};
    int32_t mode{converse2d::kPAD_CIRCULAR};
    int32_t constantKernel{0}; //!< 1: the kernel input is an initializer (its spectrum is cached)
    std::vector<int64_t> workspace; //!< kWORKSPACE_RECORD numbers per profile seen by configurePlugin
};

//! Padding mode name <-> enum ("zeros" is accepted as "constant"). Returns false for unknown names.
bool parsePaddingMode(std::string const& name, int32_t& mode);
char const* paddingModeName(int32_t mode);

class Converse2DPlugin final : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit Converse2DPlugin(Converse2DParams const& params);
    ~Converse2DPlugin() override = default;
    Converse2DPlugin(Converse2DPlugin const&) = delete;
    Converse2DPlugin& operator=(Converse2DPlugin const&) = delete;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    //! Geometry from the dims of x, kernel and lam; logs and returns false if they do not fit.
    bool geometryFromDims(nvinfer1::Dims const& x, nvinfer1::Dims const& kernel, nvinfer1::Dims const& lam,
        converse2d::Geometry& g, bool log) const noexcept;
    //! Geometry of a profile's largest shape (the kernel's size, which no buffer depends on, as 1 x 1).
    bool profileGeometry(nvinfer1::DynamicPluginTensorDesc const* in, converse2d::Geometry& g) const noexcept;
    //! kEMPTY (x has no element: nothing to do), kVALID (g filled) or kINVALID (logged).
    int32_t runtimeGeometry(nvinfer1::PluginTensorDesc const* in, converse2d::Geometry& g) const noexcept;
    //! Workspace bytes reserved for shape g (0 = unknown).
    size_t reservedFor(converse2d::Geometry const& g) noexcept;

    Converse2DParams mParams;
    std::string mModeName;
    std::string mTimingId;
    bool mWarnedUnknownWorkspace{false};
    std::unique_ptr<converse2d::Converse2DRunner> mRunner;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class Converse2DPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    Converse2DPluginCreator();
    ~Converse2DPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace plugin
} // namespace restormer
