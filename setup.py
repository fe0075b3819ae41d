"""The optional C kernels (bytezip/_kernels.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("bytezip._kernels", ["bytezip/_kernels.c"], optional=True,
                             extra_compile_args=["-O3", "-ffp-contract=off", "-std=c11"])])
