"""labelbeam: an Apache Beam batch job for computer-vision annotation manifests."""

import setuptools

BEAM = "apache-beam==2.77.0"

setuptools.setup(
    name="labelbeam",
    version="0.1.0",
    description="Normalize, validate and convert computer-vision annotation manifests with Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*"]),
    install_requires=[
        BEAM,
        "pyarrow>=14",
        "fsspec>=2024.2",
        "s3fs>=2024.2",
        "orjson>=3.9",
        "pillow>=10",
        "numpy>=1.24",
        "pyyaml>=6",
        "ijson>=3.2",
        # masks: COCO RLE as pycocotools encodes it; contours traced for Azure polygons
        "pycocotools>=2.0.7",
        "opencv-python-headless>=4.8",
    ],
    extras_require={
        # build: Beam stages --setup_file as an sdist built with `python -m build`.
        "gcp": ["gcsfs>=2024.2", BEAM.replace("apache-beam", "apache-beam[gcp]"), "build>=1"],
        "azure": ["adlfs>=2024.2"],
        # The object-store tests run on emulators (scripts/install_emulators.sh): S3 on moto's
        # server, GCS on fake-gcs-server through gcsfs, Azure Blob on Azurite through adlfs.
        "test": [
            BEAM.replace("apache-beam", "apache-beam[gcp]"),  # the Dataflow dry-run test
            "pytest>=8",
            "pytest-xdist>=3",
            "pytest-timeout>=2",
            "moto[server]>=5",
            "gcsfs>=2024.2",
            "adlfs>=2024.2",
            "jsonschema>=4",
            "label-studio-sdk>=1.0",
            "duckdb>=1.1",
            "playwright>=1.40,<2",
            "psutil>=5.9",  # the benchmark tests sample process memory
            # independent readers of the YOLO output: panlabel (detection), supervision (segment, OBB)
            "panlabel==0.7.0",
            "supervision==0.31.2",
        ],
        # panlabel: the Rust converter benchmarks/label_studio_convert.py compares against (CLI checked at 0.7.0)
        "bench": ["psutil>=5.9", "panlabel==0.7.0"],
    },
    entry_points={"console_scripts": ["labelbeam=pipelines.cli:main"]},
)
