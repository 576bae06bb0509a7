"""Every weight type the trait table can compute with has a fast int8/float kernel in every kernel set
this CPU runs (a type without one would go to the exact path silently, at a fraction of the speed),
and every type the load-time packing handles has a packed kernel in the x86 SIMD sets. The NEON sets
are checked the same way by the aarch64 self-test under qemu (tests/test_neon_qemu.py)."""

from __future__ import annotations

import pytest

from edgellama import _core

# Computable (they dequantize) but never a weight in a ggml file: the activation formats the int8
# kernels dot against. A file that used one as a weight would run through the exact path.
ACTIVATION_ONLY = {"Q8_1": "ggml's activation format for Q4_1/Q5_1", "Q8_K": "ggml's activation format for the K-quants"}
PACKED_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}
# Packed only where the set has a packed kernel (model_packing.cpp packs a type only then): IQ4_NL's and
# IQ4_XS's are
# AVX-512 (a machine with AVX2 alone keeps them in the file's layout, where its AVX2 kernels read them).
PACKED_EXTRA = {"avx2": set(), "avx_vnni": set(), "avx512": {"IQ4_NL", "IQ4_XS"}}


@pytest.mark.parametrize("isa", _core.available_isas())
def test_every_computable_type_has_a_kernel(isa):
    cov = _core.kernel_coverage(isa)
    assert {"F32", "F16", "Q4_0", "Q6_K"} <= set(cov)  # the listing itself works
    missing = sorted(t for t, (gemm, _) in cov.items() if not gemm and t not in ACTIVATION_ONLY)
    assert not missing, f"{isa}: no kernel for {missing} (they would run through the exact path)"
    # the exemptions are still exactly the types without a kernel (a new kernel removes its entry)
    assert {t for t, (gemm, _) in cov.items() if not gemm} == set(ACTIVATION_ONLY)


@pytest.mark.parametrize("isa", [i for i in _core.available_isas() if i in ("avx2", "avx_vnni", "avx512")])
def test_packable_types_have_packed_kernels_on_x86(isa):
    cov = _core.kernel_coverage(isa)
    assert {t for t, (_, packed) in cov.items() if packed} == PACKED_TYPES | PACKED_EXTRA[isa]


def test_unknown_isa_is_refused():
    with pytest.raises(ValueError, match="isa|ISA|level"):
        _core.kernel_coverage("sse9")
