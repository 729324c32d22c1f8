"""Build of the optional C module ``asyncq._speedups``; everything else is in pyproject.toml.

The module is optional: if it cannot be compiled (no C compiler), the install still
succeeds and asyncq uses its pure-Python job storage.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("asyncq._speedups", ["src/asyncq/_speedups.c"], optional=True),
    ],
)
