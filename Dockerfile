# The labelbeam SDK worker image: Beam's Python 3.11 SDK container at the version setup.py pins,
# with labelbeam installed the way setup.py declares it. Use it as --sdk_container_image on
# Dataflow, and as the DOCKER environment (or the worker-pool sidecar, EXTERNAL) on Flink.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/labelbeam/worker:2.77.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/labelbeam/worker:2.77.0
#
# The tag of the FROM line must equal apache-beam's pin in setup.py (tests/test_submission.py).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/labelbeam
COPY setup.py README.md ./
COPY pipelines ./pipelines
COPY transforms ./transforms
# Cloud filesystems for the workers; apache-beam itself is already in the image at the same version.
RUN pip install --no-cache-dir ".[gcp,azure]" && python -c "import pipelines.normalize_manifests, transforms.stages"

# The SDK harness entrypoint of the base image stays as it is.
