from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "adu_pgcopy",
            ["adu_pgcopy.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror", "-std=gnu11"],
            libraries=["dl"],
        )
    ]
)
