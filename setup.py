"""The optional C kernels (bytezip/_kernels.c, one translation unit over bytezip/csrc/) and the package list
(every bytezip.* package, found, and the top-level models/ folder as bytezip.models); the rest is in
pyproject.toml."""
from glob import glob

from setuptools import Extension, find_packages, setup

setup(packages=find_packages(include=["bytezip", "bytezip.*"]) + ["bytezip.models"],
      ext_modules=[Extension("bytezip._kernels", ["bytezip/_kernels.c"], depends=sorted(glob("bytezip/csrc/*")),
                             optional=True, extra_compile_args=["-O3", "-ffp-contract=off", "-fno-trapping-math", "-std=c11"])])
