"""Builds rlsub's one C extension (the Walsh-Hadamard kernel); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rlsub._fwht",
            sources=["rlsub/_fwht.c"],
            extra_compile_args=["-O3", "-std=c99", "-fno-math-errno"],
        )
    ]
)
