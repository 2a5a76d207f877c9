"""Package layout only; the metadata is in pyproject.toml.

The repository keeps DeepPrivacy2's ``configs/`` folder at its root; the wheel installs it as
``dp2/configs/`` (plain files, found by :mod:`dp2.config_names`), so configs work by name from
any folder. The package list is computed, so a new config folder is shipped without an edit
here (tests/test_packaging.py checks that the wheel holds every config).
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["dp2", "dp2.*"]) + ["dp2.configs"],
    package_dir={"dp2.configs": "configs"},
    package_data={"dp2": ["py.typed"], "dp2.configs": ["**/*.py"]},
    include_package_data=False,
)
