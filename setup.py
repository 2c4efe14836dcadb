"""Builds rlsub's two C extensions (the Walsh-Hadamard kernel; the ES policy path's per-step helpers) and puts the shipped configs inside the
package (rlsub/_configs, found by rlsub.named_configs); everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildWithConfigs(build_py):
    """build_py that also copies configs/**/*.yaml to rlsub/_configs/ in the built package (a wheel
    or a plain install); an editable install reads the source tree's configs/ instead."""

    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "configs"
        target = Path(self.build_lib) / "rlsub" / "_configs"
        if source.is_dir() and not self.editable_mode:
            for path in source.rglob("*.yaml"):
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


setup(
    cmdclass={"build_py": BuildWithConfigs},
    ext_modules=[
        Extension(
            "rlsub._fwht",
            sources=["rlsub/_fwht.c"],
            extra_compile_args=["-O3", "-std=c99", "-fno-math-errno"],
        ),
        # bit-identical to the numpy operations it replaces: no multiply-add contracted to one rounding
        Extension(
            "rlsub._step",
            sources=["rlsub/_step.c"],
            extra_compile_args=["-O3", "-std=c99", "-fno-math-errno", "-ffp-contract=off"],
        ),
    ],
)
