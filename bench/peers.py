"""The configuration a benchmark's figures depend on, printed at its start.

A peer is only as honest as its configuration: the same PyTorch is 2-3x
faster or slower depending on the BLAS behind it. Every bench/ script calls
describe() first, so its output records the machine (CPU model, cores, the
vector extensions that matter), the BLAS wobble links (OpenBLAS's own
configuration string and kernel), the libblas.so.3 alternative the Python
peers load, and each peer's version, BLAS and thread count.
"""
import ctypes
import datetime
import os
import platform
import re
import subprocess
import sys

# glibc malloc returns every block over 32 MB to the kernel when freed
# (mmap), so a PyTorch layer whose output is that large (ViT-B/16's fc1 at
# batch 16: 38.7 MB) page-faults the whole output in again on every call:
# on this project's VM, where page faults are dear, PyTorch's fp32 matmul then
# runs at ~95 GFLOP/s against 173 with the settings below (sgemm's zeroing
# pass and the kernel's fault handler take a third of its time). PyTorch's
# performance guide recommends a caching allocator (jemalloc / tcmalloc) for
# this; these two glibc variables do the same. The PyTorch benches run the
# peer so by default; --default-malloc keeps glibc's defaults.
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def tune_malloc():
    """Re-run this script with TUNED_MALLOC in its environment (for the
    PyTorch peer), unless it is already there or --default-malloc is given
    (removed from sys.argv here)."""
    if "--default-malloc" in sys.argv:
        sys.argv.remove("--default-malloc")
        return
    if all(os.environ.get(k) == v for k, v in TUNED_MALLOC.items()):
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **TUNED_MALLOC})

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16", "amx_tile")


def cpu():
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return model, [f for f in FLAGS if f in flags]


def openblas():
    """OpenBLAS as wobble loads it on first use (libopenblas.so.0): config string and kernel."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return f"{lib.openblas_get_config().decode()} (kernel {lib.openblas_get_corename().decode()})"
    except (OSError, AttributeError):
        return "libopenblas.so.0 not loadable"


def blas_alternative():
    try:
        q = subprocess.run(["update-alternatives", "--query", "libblas.so.3-x86_64-linux-gnu"], capture_output=True,
                           text=True).stdout
        v = [l.split(":", 1)[1].strip() for l in q.splitlines() if l.startswith("Value:")]
        return v[0] if v else "unknown"
    except OSError:
        return "unknown"


def describe(threads, peers=()):
    """Print the configuration. peers: names among torch, numpy, scipy, PIL,
    sklearn, torchvision (only those are imported)."""
    model, flags = cpu()
    print(f"# {datetime.date.today().isoformat()}, {platform.node() or 'this machine'}: {model}, "
          f"{os.cpu_count()} cores, flags {' '.join(flags) or 'none of ' + '/'.join(FLAGS)}")
    env = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
           if k in os.environ]
    print(f"# wobble and peers: {threads} threads; wobble loads {openblas()}; environment: {' '.join(env) or 'no BLAS variables'}")
    print(f"# libblas.so.3 alternative (what generic-BLAS peers load): {blas_alternative()}")
    tuned = all(os.environ.get(k) == v for k, v in TUNED_MALLOC.items())
    print(f"# malloc: glibc, {'large blocks kept (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_; see peers.py)' if tuned else 'defaults (blocks over 32 MB go back to the kernel when freed)'}")
    for p in peers:
        try:
            if p == "torch":
                import torch
                cfg = torch.__config__.show()
                blas = re.findall(r"\b((?:BLAS|LAPACK)_INFO=[^,\s]+)", cfg)
                par = [l.strip() for l in torch.__config__.parallel_info().splitlines()
                       if "parallel backend" in l or "MKLDNN" in l or "MKL_" in l][:3]
                mkldnn = torch.backends.mkldnn.is_available()
                print(f"# PyTorch {torch.__version__}: {', '.join(blas) or 'BLAS_INFO n/a'} (generic: the "
                      f"libblas.so.3 above), oneDNN {'yes' if mkldnn else 'no'}, {'; '.join(par)}; "
                      f"its default threads here {torch.get_num_threads()} (the benches set {threads})")
            elif p == "numpy":
                import numpy
                info = "n/a"
                try:
                    from threadpoolctl import threadpool_info
                    info = "; ".join(f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')} "
                                     f"{d.get('num_threads')} threads ({os.path.basename(d.get('filepath', ''))})"
                                     for d in threadpool_info() if d.get("user_api") == "blas") or "n/a"
                except ImportError:
                    cfg = getattr(numpy, "__config__", None)
                    bi = getattr(cfg, "blas_opt_info", None) or getattr(cfg, "blas_ilp64_opt_info", None)
                    if isinstance(bi, dict):
                        info = ",".join(bi.get("libraries", [])) or "n/a"
                print(f"# NumPy {numpy.__version__}: BLAS {info}")
            elif p == "scipy":
                import scipy
                print(f"# SciPy {scipy.__version__}")
            elif p == "PIL":
                import PIL
                print(f"# Pillow {PIL.__version__}")
            elif p == "sklearn":
                import sklearn
                print(f"# scikit-learn {sklearn.__version__}")
            elif p == "torchvision":
                import torchvision
                print(f"# torchvision {torchvision.__version__}")
        except ImportError:
            print(f"# {p}: not installed")
