"""Importing compat and fdrouter: never fails, never drags paddle into the router."""

from __future__ import annotations

import pytest

from compat import profiles


def test_importing_compat_does_not_import_paddle(run_python):
    result = run_python(
        "-c", "import sys, compat; assert 'paddle' not in sys.modules, 'compat imported paddle'"
    )
    assert result.returncode == 0, result.stderr


def test_importing_fdrouter_does_not_import_paddle(run_python):
    result = run_python(
        "-c", "import fdrouter, sys; assert 'paddle' not in sys.modules, 'fdrouter imported paddle'"
    )
    assert result.returncode == 0, result.stderr


# what a model module on that platform does at import time
MODEL_MODULE = """
from compat import profiles
profiles.apply_from_env()
import paddle
import fdrouter
import compat
from compat import decode_alltoall_transpose, enable_torch_proxy, swiglu, tensor_model_parallel_all_reduce
paths = {name: feature.path for name, feature in compat.features().items()}
print(sorted(paths.items()))
"""


@pytest.mark.parametrize("profile", list(profiles.PROFILES))
def test_importing_compat_and_fdrouter_never_fails_under_any_profile(run_python, profile, expected_paths):
    result = run_python("-c", MODEL_MODULE, profile=profile)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(sorted(expected_paths[profile].items()))


def test_compat_functions_compile_under_to_static_even_when_compat_is_imported_before_paddle(
    run_python, tmp_path
):
    # the first compat call happens inside the static conversion: compat must have marked
    # its functions for paddle.jit when paddle was imported, not on that first call
    script = tmp_path / "model.py"  # to_static reads the source, so a file, not -c
    script.write_text("""
import compat
import paddle

@paddle.jit.to_static(full_graph=True)
def layer(x):
    return compat.tensor_model_parallel_all_reduce(compat.swiglu(x))

print(layer(paddle.ones([2, 4])).shape)
""")
    result = run_python(str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "paddle.Size([2, 2])"


def test_without_paddle_compat_imports_and_every_function_says_paddle_is_needed(run_python):
    code = """
import sys
sys.modules["paddle"] = None  # what an environment without paddle looks like to `import paddle`
import compat
for name, feature in compat.features().items():
    assert feature.path == "unavailable", (name, feature)
    assert "paddle is not available" in feature.reason, feature.reason
calls = {
    "enable_torch_proxy": lambda: compat.enable_torch_proxy(),
    "swiglu": lambda: compat.swiglu(object()),
    "tensor_model_parallel_all_reduce": lambda: compat.tensor_model_parallel_all_reduce(object()),
    "decode_alltoall_transpose": lambda: compat.decode_alltoall_transpose(object()),
}
for name, call in calls.items():
    try:
        call()
    except compat.PaddleMissing as exc:
        assert isinstance(exc, ImportError)
        assert str(exc).startswith(f"compat.{name} needs paddle: "), str(exc)
        assert "pip install 'fdrouter[paddle]'" in str(exc), str(exc)
    else:
        raise AssertionError(f"{name} did not raise without paddle")
print("ok")
"""
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
