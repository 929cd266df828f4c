"""Compile every Triton kernel for real GPU targets without a GPU and read its resources.

    python benchmarks/kernel_registers.py            # table: registers / spills per kernel, sm_90 and sm_80
    python benchmarks/kernel_registers.py --json     # machine-readable (used by tests/kernels/test_kernels_compile.py)
    python benchmarks/kernel_registers.py --out DIR  # also DIR/kernel_registers.md / .json

Triton's own ptxas turns each kernel into a cubin here; the bundled ``cuobjdump -res-usage``
reads the registers per thread, spill stores / loads and shared memory from it. So GPU-only
compile errors and register pressure (occupancy) show up on a CPU machine and in CI. Run it
without TRITON_INTERPRET (the script clears it). Kernels compile with the launchers' defaults
(block sizes, num_warps) in fp32 and fp16, KMAX 21 (the largest kernel of the published configs),
and with the specialisation Triton's JIT gives a contiguous THUMOS-size launch (C = 512,
T = 2304): time strides equal to 1 become constants, pointers and C / T / the other strides carry
the divisible-by-16 hint. Without it every element gets its own 64-bit address and the counts
are far higher than what runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from harness import Report, add_out_argument, use_source_tree

os.environ.pop("TRITON_INTERPRET", None)

F, I = "*fp32", "*i32"


def _sig(names: str, types: dict[str, str], default: str) -> dict[str, str]:
    return {n: types.get(n, default) for n in names.split()}


def _i32(*names: str) -> dict[str, str]:
    return {n: "i32" for n in names}


def kernel_specs(dtype: str = "fp32") -> dict:
    """{name: (jit function, signature, constexprs, num_warps)} with the launchers' defaults."""
    from mse_rt.kernels import afm_residual, channel_layernorm, ldm_afm, nms_gpu

    X = f"*{dtype}"
    cexpr = lambda *names: {n: "constexpr" for n in names}  # noqa: E731
    return {
        "channel_layernorm": (
            channel_layernorm._channel_layernorm_kernel,
            _sig("x_ptr w_ptr b_ptr y_ptr C T sxb sxc sxt syb syc syt eps BLOCK_C BLOCK_T",
                 {"x_ptr": X, "y_ptr": X, **_i32("C", "T", "sxb", "sxc", "sxt", "syb", "syc", "syt"), "eps": "fp32",
                  **cexpr("BLOCK_C", "BLOCK_T")}, F),
            {"BLOCK_C": 64, "BLOCK_T": 64}, 4),
        "ln_stats": (
            ldm_afm._ln_stats_kernel,
            _sig("x_ptr lnw_ptr lnb_ptr mean_ptr rstd_ptr part_ptr C T n_tb sxb sxc sxt eps BLOCK_C BLOCK_T",
                 {"x_ptr": X, **_i32("C", "T", "n_tb", "sxb", "sxc", "sxt"), "eps": "fp32",
                  **cexpr("BLOCK_C", "BLOCK_T")}, F),
            {"BLOCK_C": 64, "BLOCK_T": 64}, 4),
        "ldm_phi": (
            ldm_afm._phi_kernel,
            _sig("part_ptr g_w_ptr g_b_ptr phi_ptr C T n_tb BLOCK_C BLOCK_NT",
                 {**_i32("C", "T", "n_tb"), **cexpr("BLOCK_C", "BLOCK_NT")}, F),
            {"BLOCK_C": 64, "BLOCK_NT": 16}, 4),
        "ldm_afm (KMAX 21)": (
            ldm_afm._ldm_afm_kernel,
            _sig("x_ptr mean_ptr rstd_ptr phi_ptr lnw_ptr lnb_ptr psi_w_ptr psi_b_ptr fc_w_ptr fc_b_ptr wkw_w_ptr "
                 "wkw_b_ptr dw_ptr out_ptr C T sxb sxc sxt sob soc sot KMAX BLOCK_C BLOCK_T",
                 {"x_ptr": X, "out_ptr": X, **_i32("C", "T", "sxb", "sxc", "sxt", "sob", "soc", "sot"),
                  **cexpr("KMAX", "BLOCK_C", "BLOCK_T")}, F),
            {"KMAX": 21, "BLOCK_C": 32, "BLOCK_T": 64}, ldm_afm.LDM_AFM_NUM_WARPS),
        "afm_residual": (
            afm_residual._afm_residual_kernel,
            _sig("x_ptr out1_ptr attn_ptr mean_ptr rstd_ptr am_ptr lnw_ptr lnb_ptr s_ptr dw_ptr y_ptr C T sxb sxc sxt "
                 "s1b s1c s1t sab sac sat syb syc syt BLOCK_C BLOCK_T",
                 {"x_ptr": X, "out1_ptr": X, "attn_ptr": X, "y_ptr": X,
                  **_i32("C", "T", "sxb", "sxc", "sxt", "s1b", "s1c", "s1t", "sab", "sac", "sat", "syb", "syc", "syt"),
                  **cexpr("BLOCK_C", "BLOCK_T")}, F),
            {"BLOCK_C": 32, "BLOCK_T": 64}, 4),
        "soft_nms": (
            nms_gpu._soft_nms_kernel,
            _sig("x1_ptr x2_ptr sc_ptr idx_ptr tmp_ptr offs_ptr ox1_ptr ox2_ptr osc_ptr oidx_ptr ocount_ptr sigma "
                 "min_score BLOCK PRECISE",
                 {"idx_ptr": I, "tmp_ptr": I, "offs_ptr": I, "oidx_ptr": I, "ocount_ptr": I, "sigma": "fp32",
                  "min_score": "fp32", **cexpr("BLOCK", "PRECISE")}, F),
            {"BLOCK": 256, "PRECISE": True}, 4),
        "hard_nms": (
            nms_gpu._hard_nms_kernel,
            _sig("x1_ptr x2_ptr alive_ptr offs_ptr oidx_ptr ocount_ptr iou_threshold BLOCK",
                 {"alive_ptr": I, "offs_ptr": I, "oidx_ptr": I, "ocount_ptr": I, "iou_threshold": "fp32",
                  **cexpr("BLOCK")}, F),
            {"BLOCK": 256}, 4),
    }


def _cuobjdump() -> Path | None:
    import triton

    p = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return p if p.is_file() else None


def _resources(cubin: bytes) -> dict:
    tool = _cuobjdump()
    if tool is None:
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", out)
    res = {"regs": int(m.group(1)), "stack": int(m.group(2)), "shared": int(m.group(3))} if m else {}
    spill = re.search(r"(\d+) bytes spill stores", out)
    res["raw"] = out.strip().splitlines()[-1][:200] if out.strip() else ""
    if spill:
        res["spill_stores"] = int(spill.group(1))
    return res


def _specialise(fn, signature: dict, constexprs: dict) -> tuple[dict, dict, dict]:
    """The JIT's specialisation of a contiguous launch: unit time strides, 16-divisible rest."""
    import inspect

    sig, cx = dict(signature), dict(constexprs)
    names = list(inspect.signature(fn.fn).parameters)
    for n in names:
        if re.fullmatch(r"s[a-z0-9]t", n):  # sxt, syt, sot, s1t, sat: stride of the time axis
            sig[n], cx[n] = "constexpr", 1
    div16 = [n for n in names if sig[n].startswith("*") or n in ("C", "T") or re.fullmatch(r"s[a-z0-9][bc]", n)]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in div16}
    return sig, cx, attrs


def compile_all(archs=(90, 80), dtypes=("fp32", "fp16")) -> dict[str, dict]:
    """{"kernel [dtype] @smXX": {"status": "ok" | error, "regs", "stack", "shared"}}."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    out: dict[str, dict] = {}
    for dtype in dtypes:
        for name, (fn, signature, constexprs, warps) in kernel_specs(dtype).items():
            if dtype != "fp32" and not any(v == f"*{dtype}" for v in signature.values()):
                continue  # no activation operands: the fp32 row says it all
            for arch in archs:
                key = f"{name} [{dtype}] @sm{arch}"
                try:
                    sig, cx, attrs = _specialise(fn, signature, constexprs)
                    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=cx, attrs=attrs),
                                       target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
                    ok = ".entry" in k.asm["ptx"] and len(k.asm["cubin"])
                    out[key] = {"status": "ok" if ok else "no cubin", "num_warps": warps, **_resources(k.asm["cubin"])}
                except Exception as exc:  # reported, not raised: the table lists every kernel
                    out[key] = {"status": f"{type(exc).__name__}: {exc}"[:2000]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as one JSON line (no table)")
    add_out_argument(ap)
    args = ap.parse_args()
    use_source_tree()
    res = compile_all()
    if args.json:
        print(json.dumps(res))
    import triton

    report = Report("kernel_registers", args.out, title=__doc__.splitlines()[0], echo=not args.json)
    report.data["kernels"] = res
    report.note(f"triton {triton.__version__}; registers per thread from cuobjdump -res-usage (255 max; 64 for full "
                "occupancy at 4 warps x 16 blocks per SM)", write=False)
    report.table("Resources per kernel", ["kernel", "status", "warps", "regs", "stack B", "shared B"],
                 [(k, v["status"][:120], v.get("num_warps"), v.get("regs", "?"), v.get("stack", "?"), v.get("shared", "?"))
                  for k, v in res.items()])
    if args.json:
        return 0
    return 0 if all(v["status"] == "ok" for v in res.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
