import group3ad_ext
import pytest
import torch


def test_build_info_keys_and_types():
    info = group3ad_ext.build_info()
    assert info["version"] == group3ad_ext.__version__
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    assert isinstance(info["cuda"], bool)
    assert isinstance(info["cuda_archs"], str)
    assert (info["cuda_archs"] != "") == info["cuda"]
    assert info["cpu_threads"] >= 1


def test_ops_are_registered():
    for name in ["fps", "knn", "normals", "fpfh", "fpfh_variation", "nn_search"]:
        assert hasattr(torch.ops.group3ad_ext, name), name


@pytest.mark.skipif(not torch.version.cuda, reason="CPU build of torch")
def test_ci_build_compiled_cuda_kernels():
    # CI builds with FORCE_CUDA=1: a CUDA torch without CUDA kernels means the build silently
    # dropped them.
    import os

    if os.environ.get("FORCE_CUDA") == "1":
        assert group3ad_ext.build_info()["cuda"]
