"""skbn's CUDA path against ``torch.nn.functional.batch_norm`` (cuDNN), one GPU.

One call checks correctness against a float64 reference and times both
libraries on the same CUDA tensors, then prints a short table::

    python benchmarks/gpu_compare.py              # needs a GPU, torch and numba-cuda
    python benchmarks/gpu_compare.py --quick      # the 1,000,000 x 64 cases only
    python benchmarks/gpu_compare.py --simulate   # no GPU: tiny shapes, correctness

Timings are wall-clock medians of ``--repeats`` calls (default 20), each
bracketed by ``torch.cuda.synchronize()``, after warm-up calls (the kernels
compile on first use).  skbn is called through ``BatchNormalizer`` with torch
CUDA tensors in and out, so its times include validation and Python launch
overhead, as a user sees them; torch's include its dispatcher overhead.
``floor`` is the time to move the case's bytes at the device-to-device copy
bandwidth measured in the same run (read ``X`` twice and write ``Y`` once in
training mode, read and write once in inference mode).

``--simulate`` runs under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
set by re-running itself when needed) on tiny shapes with Numba device
arrays, and checks correctness only; tests/test_cuda.py runs it.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

EPS = 1e-5
# name, shape, feature axis, mode ("train": partial_fit_transform against
# training-mode batch_norm; "eval": transform against eval-mode batch_norm;
# "backward": skbn.functional.batch_norm_backward on CUDA arrays against torch's
# native_batch_norm_backward, training mode), goal: the largest skbn / torch
# time ratio aimed for, or None.
CASES = [
    ("train 1Mx64", (1_000_000, 64), -1, "train", 1.25),
    ("eval 1Mx64", (1_000_000, 64), -1, "eval", 1.10),
    ("train 100kx1024", (100_000, 1024), -1, "train", None),
    ("eval 100kx1024", (100_000, 1024), -1, "eval", None),
    ("train 10Mx4", (10_000_000, 4), -1, "train", None),
    ("eval 10Mx4", (10_000_000, 4), -1, "eval", None),
    ("train NCHW 64x64x56x56", (64, 64, 56, 56), 1, "train", None),
    ("eval NCHW 64x64x56x56", (64, 64, 56, 56), 1, "eval", None),
    ("backward 1Mx64", (1_000_000, 64), -1, "backward", None),
]
SIMULATED_CASES = [
    ("train 300x8", (300, 8), -1, "train", None),
    ("eval 300x8", (300, 8), -1, "eval", None),
    ("train 40x3", (40, 3), -1, "train", None),
    ("train NCHW 3x4x5x6", (3, 4, 5, 6), 1, "train", None),
    ("eval NCHW 3x4x5x6", (3, 4, 5, 6), 1, "eval", None),
    ("backward 300x8", (300, 8), -1, "backward", None),
    ("backward NCHW 3x4x5x6", (3, 4, 5, 6), 1, "backward", None),
]
# float32 results against the float64 reference: relative to the output's
# scale (about 1), a few float32 roundings.
TOLERANCE = 1e-5


def _reference(x64, axis, gamma, beta):
    """Float64 two-pass statistics and normalized output (any array module)."""
    ndim = x64.ndim
    axis %= ndim
    reduce = tuple(a for a in range(ndim) if a != axis)
    shape = [1] * ndim
    shape[axis] = -1
    mean = x64.mean(reduce, keepdims=True)
    var = ((x64 - mean) ** 2).mean(reduce, keepdims=True)
    y = (x64 - mean) / (var + EPS) ** 0.5 * gamma.reshape(shape) + beta.reshape(shape)
    return mean.reshape(-1), var.reshape(-1), y


def _backward_reference(x64, dy64, axis, gamma):
    """Float64 dx, dgamma, dbeta of training-mode batch norm, and the mean and
    1 / sqrt(var + eps) the forward pass used."""
    ndim = x64.ndim
    axis %= ndim
    reduce = tuple(a for a in range(ndim) if a != axis)
    shape = [1] * ndim
    shape[axis] = -1
    n = int(np.prod(x64.shape)) // x64.shape[axis]
    mean, var, _ = _reference(x64, axis, gamma, gamma * 0)
    inv = 1.0 / (var + EPS) ** 0.5
    xhat = (x64 - mean.reshape(shape)) * inv.reshape(shape)
    dbeta = dy64.sum(reduce)
    dgamma = (dy64 * xhat).sum(reduce)
    dx = (gamma * inv / n).reshape(shape) * (
        n * dy64 - dbeta.reshape(shape) - xhat * dgamma.reshape(shape)
    )
    return mean, inv, dx, dgamma, dbeta


def _median_ms(fn, sync, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _check(name, err_y, err_var, var_tolerance=1e-10):
    return {
        "case": name,
        "ok": bool(err_y <= TOLERANCE and err_var <= var_tolerance),
        "err_y": float(err_y),
        "err_var": float(err_var),
    }


# -- on a GPU -----------------------------------------------------------------------


def _gpu_case(case, repeats, bandwidth, gen):
    import torch
    import torch.nn.functional as F

    from skbn import BatchNormalizer

    name, shape, axis, mode, goal = case
    if mode == "backward":
        return _gpu_backward(case, repeats, bandwidth, gen)
    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    # Far from zero, where E[x^2] - E[x]^2 would cancel.
    x = torch.randn(shape, device=dev, generator=gen).mul_(3.0).add_(100.0)
    d = shape[axis]
    gamma = torch.rand(d, device=dev, dtype=torch.float64, generator=gen) + 0.5
    beta = torch.randn(d, device=dev, dtype=torch.float64, generator=gen)
    g32, b32 = gamma.float(), beta.float()
    _, var64, y64 = _reference(x.double(), axis, gamma, beta)
    bn = BatchNormalizer(axis=axis, gamma=gamma.cpu().numpy(), beta=beta.cpu().numpy())
    # Every case has its features on axis 1, where torch wants them.
    rm = torch.zeros(d, device=dev)
    rv = torch.ones(d, device=dev)
    training = mode == "train"
    if training:

        def ours():
            return bn.partial_fit_transform(x)

        y = ours()
        err_var = np.max(np.abs(bn.running_var_ - var64.cpu().numpy()))
        err_var /= float(var64.max())
    else:

        def ours():
            return bn.transform(x)

        bn.fit(x)
        y = ours()
        err_var = 0.0
        rm.copy_(torch.as_tensor(bn.running_mean_, device=dev))
        rv.copy_(torch.as_tensor(bn.running_var_, device=dev))

    def theirs():
        return F.batch_norm(x, rm, rv, g32, b32, training, 0.1, EPS)

    assert isinstance(y, torch.Tensor) and y.is_cuda and y.dtype == x.dtype
    row = _check(name, float((y.double() - y64).abs().max()), err_var)
    err_torch = float((theirs().double() - y64).abs().max())
    del y, y64
    ms = _median_ms(ours, sync, repeats)
    t_ms = _median_ms(theirs, sync, repeats)
    moved = x.numel() * x.element_size() * (3 if training else 2)
    row.update(
        skbn_ms=ms,
        torch_ms=t_ms,
        ratio=ms / t_ms,
        goal=goal,
        floor_ms=1e3 * moved / bandwidth,
        err_torch=err_torch,
    )
    return row


def _gpu_backward(case, repeats, bandwidth, gen):
    import torch

    from skbn import functional

    name, shape, axis, _, goal = case
    dev = torch.device("cuda")
    x = torch.randn(shape, device=dev, generator=gen).mul_(3.0).add_(100.0)
    dy = torch.randn(shape, device=dev, generator=gen)
    d = shape[axis]
    gamma = torch.rand(d, device=dev, dtype=torch.float64, generator=gen) + 0.5
    _, _, dx64, dgamma64, dbeta64 = _backward_reference(
        x.double(), dy.double(), axis, gamma
    )
    gamma_h = gamma.cpu().numpy()
    g32 = gamma.float()
    # The forward pass on the GPU keeps what the backward pass needs.
    _, cache = functional.batch_norm_forward(x, gamma_h, None, axis=axis, eps=EPS)
    _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
        x, g32, None, None, None, True, 0.1, EPS
    )

    def ours():
        return functional.batch_norm_backward(dy, cache)

    def theirs():
        return torch.ops.aten.native_batch_norm_backward(
            dy, x, g32, None, None, save_mean, save_invstd, True, EPS, [True] * 3
        )

    dx, dgamma, _ = ours()
    scale = float(dx64.abs().max())
    err_dx = float((dx.double() - dx64).abs().max()) / scale
    dgamma64 = dgamma64.cpu().numpy()
    err_dgamma = np.max(np.abs(dgamma - dgamma64)) / np.max(np.abs(dgamma64))
    # The functional API returns the gradients in x's dtype (float32).
    row = _check(name, err_dx, err_dgamma, TOLERANCE)
    row["err_torch"] = float((theirs()[0].double() - dx64).abs().max()) / scale
    ms = _median_ms(ours, torch.cuda.synchronize, repeats)
    t_ms = _median_ms(theirs, torch.cuda.synchronize, repeats)
    moved = x.numel() * x.element_size() * 5  # x, dy twice; dx once
    row.update(
        skbn_ms=ms,
        torch_ms=t_ms,
        ratio=ms / t_ms,
        goal=goal,
        floor_ms=1e3 * moved / bandwidth,
    )
    return row


def run_gpu(cases, repeats):
    import torch

    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    # Copy bandwidth (bytes read + written per second), for the floor column.
    src = torch.empty(256 * 2**20 // 4, device=dev)
    dst = torch.empty_like(src)
    copy_ms = _median_ms(lambda: dst.copy_(src), torch.cuda.synchronize, repeats)
    bandwidth = 2 * src.numel() * 4 / (copy_ms * 1e-3)
    rows = []
    for case in cases:
        rows.append(_gpu_case(case, repeats, bandwidth, gen))
        torch.cuda.empty_cache()
    print(
        f"device: {torch.cuda.get_device_name()}; copy bandwidth "
        f"{bandwidth / 1e12:.2f} TB/s; medians of {repeats}"
    )
    _table(rows, timed=True)
    return rows


# -- under the simulator ------------------------------------------------------------


def run_simulated(cases):
    from numba import cuda

    from skbn import BatchNormalizer, _config, functional

    # A few threads per block: the simulator runs each thread as a Python
    # thread, and small inputs still span several blocks.
    _config.CUDA_THREADS_PER_BLOCK = 16
    _config.CUDA_MERGE_THREADS = 8
    _config.CUDA_MIN_BLOCK_ELEMENTS = 64
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, axis, mode, _ in cases:
        x = (100.0 + 3.0 * rng.standard_normal(shape)).astype(np.float32)
        d = shape[axis]
        gamma = rng.uniform(0.5, 1.5, d)
        beta = rng.standard_normal(d)
        mean64, var64, y64 = _reference(x.astype(np.float64), axis, gamma, beta)
        bn = BatchNormalizer(axis=axis, gamma=gamma, beta=beta)
        xd = cuda.to_device(x)
        if mode == "backward":
            dy = rng.standard_normal(shape).astype(np.float32)
            _, _, dx64, dgamma64, _ = _backward_reference(
                x.astype(np.float64), dy.astype(np.float64), axis, gamma
            )
            _, cache = functional.batch_norm_forward(xd, gamma, None, axis=axis)
            dx, dgamma, _ = functional.batch_norm_backward(cuda.to_device(dy), cache)
            err_dx = np.max(np.abs(dx.copy_to_host() - dx64)) / np.max(np.abs(dx64))
            err_dgamma = np.max(np.abs(dgamma - dgamma64)) / np.max(np.abs(dgamma64))
            # The functional API returns the gradients in x's dtype (float32).
            rows.append(_check(name, err_dx, err_dgamma, TOLERANCE))
            continue
        if mode == "train":
            y = bn.partial_fit_transform(xd)
            err_var = np.max(np.abs(bn.running_var_ - var64)) / var64.max()
        else:
            y = bn.fit(xd).transform(xd)
            err_var = 0.0
        err_y = np.max(np.abs(y.copy_to_host().astype(np.float64) - y64))
        rows.append(_check(name, err_y, err_var))
    _table(rows, timed=False)
    return rows


# -- report -------------------------------------------------------------------------


def _table(rows, timed):
    if timed:
        head = (
            f"{'case':<24} {'skbn ms':>8} {'torch ms':>8} {'ratio':>6} {'goal':>5} "
            f"{'floor ms':>8} {'skbn err':>9} {'torch err':>9} ok"
        )
    else:
        head = f"{'case':<24} {'err y':>9} {'err var':>9} ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "yes" if r["ok"] else "NO"
        if timed:
            goal = "" if r["goal"] is None else f"{r['goal']:.2f}"
            print(
                f"{r['case']:<24} {r['skbn_ms']:8.3f} {r['torch_ms']:8.3f} "
                f"{r['ratio']:6.2f} {goal:>5} {r['floor_ms']:8.3f} "
                f"{r['err_y']:9.1e} {r['err_torch']:9.1e} {ok}"
            )
        else:
            print(f"{r['case']:<24} {r['err_y']:9.1e} {r['err_var']:9.1e} {ok}")


def main(argv=None):
    """Run the comparison; returns one dict per case (``ok``: correct)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.simulate:
        if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
            # The simulator must be on before numba.cuda is first imported.
            env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
            cmd = [sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:])]
            raise SystemExit(subprocess.call(cmd, env=env))
        rows = run_simulated(SIMULATED_CASES)
    else:
        cases = [c for c in CASES if "1Mx64" in c[0]] if args.quick else CASES
        rows = run_gpu(cases, args.repeats)
    if not all(r["ok"] for r in rows):
        print("FAILED: a result is off the float64 reference", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = main()
    raise SystemExit(0 if all(r["ok"] for r in result) else 1)
