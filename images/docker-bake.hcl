# Generated from images/catalog.yaml by `python -m gpulab.images.bake`: edit the catalog, not
# this file. Run from the repository root (images/README.md):
#   docker buildx bake -f images/docker-bake.hcl                  every image, parents first
#   docker buildx bake -f images/docker-bake.hcl pytorch-cuda12   one image and its parents
#   REGISTRY=registry.example.com/ml DATE_TAG=$(date +%Y%m%d) \
#     docker buildx bake -f images/docker-bake.hcl --push

variable "REGISTRY" { default = "ghcr.io/gpulab" }
variable "DATE_TAG" { default = "" }  # e.g. 20261105: also push <tag>-<DATE_TAG>
variable "GPULAB_VERSION" { default = "0.1.0" }
variable "GIT_REVISION" { default = "unknown" }
variable "BUILD_DATE" { default = "unknown" }  # RFC 3339, for the created label

# The catalog's moving tag, and a dated one when DATE_TAG is set.
function "tags" {
  params = [repository, tag]
  result = compact(["${REGISTRY}/${repository}:${tag}",
    notequal(DATE_TAG, "") ? "${REGISTRY}/${repository}:${tag}-${DATE_TAG}" : ""])
}

group "default" { targets = ["base", "hub", "cpu", "pytorch-cuda12", "pytorch-cuda13", "tensorflow-cuda12"] }
group "environments" { targets = ["cpu", "pytorch-cuda12", "pytorch-cuda13", "tensorflow-cuda12"] }

target "_common" {
  platforms = ["linux/amd64"]
  args = { GPULAB_VERSION = GPULAB_VERSION, GIT_REVISION = GIT_REVISION, BUILD_DATE = BUILD_DATE }
}

target "base" {
  inherits = ["_common"]
  context = "."
  dockerfile = "images/base/Dockerfile"
  tags = tags("base", "python-3.12")
}

target "hub" {
  inherits = ["_common"]
  context = "."
  dockerfile = "images/hub/Dockerfile"
  tags = tags("hub", "0.1.0")
}

target "cpu" {
  inherits = ["_common"]
  context = "images/cpu"
  dockerfile = "Dockerfile"
  contexts = { parent = "target:base" }
  args = { PARENT_IMAGE = "parent" }
  tags = tags("cpu", "cpu-python-3.12")
}

target "pytorch-cuda12" {
  inherits = ["_common"]
  context = "images/pytorch/cuda12"
  dockerfile = "../../framework/Dockerfile"
  contexts = { parent = "target:cpu" }
  args = { PARENT_IMAGE = "parent", ENVIRONMENT_ID = "pytorch-cuda12", DISPLAY_NAME = "PyTorch 2.15 (CUDA 12.6)", DESCRIPTION = "PyTorch 2.15 with CUDA 12.6 and cuDNN, for NVIDIA drivers 560 and newer", CUDA = "12.6", MIN_DRIVER = "560.28.03" }
  tags = tags("pytorch", "cuda12-pytorch-2.15")
}

target "pytorch-cuda13" {
  inherits = ["_common"]
  context = "images/pytorch/cuda13"
  dockerfile = "../../framework/Dockerfile"
  contexts = { parent = "target:cpu" }
  args = { PARENT_IMAGE = "parent", ENVIRONMENT_ID = "pytorch-cuda13", DISPLAY_NAME = "PyTorch 2.15 (CUDA 13.0)", DESCRIPTION = "PyTorch 2.15 with CUDA 13.0 and cuDNN, for NVIDIA drivers 580 and newer", CUDA = "13.0", MIN_DRIVER = "580.65.06" }
  tags = tags("pytorch", "cuda13-pytorch-2.15")
}

target "tensorflow-cuda12" {
  inherits = ["_common"]
  context = "images/tensorflow/cuda12"
  dockerfile = "../../framework/Dockerfile"
  contexts = { parent = "target:cpu" }
  args = { PARENT_IMAGE = "parent", ENVIRONMENT_ID = "tensorflow-cuda12", DISPLAY_NAME = "TensorFlow 2.21 (CUDA 12.5)", DESCRIPTION = "TensorFlow 2.21 and Keras 3 with CUDA 12.5 and cuDNN 9.3, for NVIDIA drivers 555 and newer", CUDA = "12.5", MIN_DRIVER = "555.42.02" }
  tags = tags("tensorflow", "cuda12-tensorflow-2.21")
}
