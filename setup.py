"""ssmscope: kernel microbenchmarks, Nsight Compute metrics and rooflines for SSM and hybrid LMs.

The repository root *is* the ``ssmscope`` package (``kernels/`` is ``ssmscope.kernels``), so that the
layout shows the data flow: kernels -> microbench -> ncu_parsers -> roofline -> e2e.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

STAGES = ["kernels", "microbench", "ncu_parsers", "roofline", "e2e"]


def find_packages_under(root: Path) -> list[str]:
    """``ssmscope`` plus every folder with an ``__init__.py`` below the pipeline stages."""
    packages = ["ssmscope"]
    for stage in STAGES:
        for init in sorted((root / stage).rglob("__init__.py")):
            rel = init.parent.relative_to(root).as_posix().replace("/", ".")
            packages.append(f"ssmscope.{rel}")
    return packages


class BuildWithoutSetup(build_py):
    """The root package maps to the repository root: keep setup.py itself out of the wheel."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "ssmscope" and m[1] == "setup")]


here = Path(__file__).parent
setup(
    name="ssmscope",
    version="0.1.0",
    description="Kernel microbenchmarks, Nsight Compute metrics and rooflines for SSM and hybrid language models",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"ssmscope": "."},
    packages=find_packages_under(here),
    package_data={"ssmscope": ["roofline/devices/*.yaml", "e2e/*.yaml", "*/README.md", "kernels/*/README.md"]},
    cmdclass={"build_py": BuildWithoutSetup},
    install_requires=[
        "torch>=2.4",
        "triton>=3.0",
        "numpy",
        "matplotlib",
        "click>=8.1",
        "pyyaml",
        "rich",
    ],
    extras_require={
        # The GPU side: NVTX ranges for Nsight Compute, CuPy raw kernels for `roofline calibrate`, NVML.
        "gpu": ["nvtx", "cupy-cuda12x", "nvidia-ml-py"],
        "gpu-cuda13": ["nvtx", "cupy-cuda13x", "nvidia-ml-py"],
        # The official kernels compile CUDA extensions against the installed torch (see README).
        "official": ["mamba-ssm", "causal-conv1d"],
        "e2e": ["transformers>=4.53"],
        "export": ["pandas", "pyarrow"],
        "test": ["pytest", "pandas", "pyarrow", "transformers>=4.53"],
    },
    entry_points={"console_scripts": ["ssmscope=ssmscope.cli:main"]},
)
