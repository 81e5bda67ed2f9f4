# pomona's image for KubeRay: Ray's own image plus the project installed with pip.
#   docker build -t pomona:0.1.0-cpu .                       # CPU torch wheels (small)
#   docker build --build-arg VARIANT=gpu -t pomona:0.1.0-gpu .  # CUDA torch wheels
# `pomona k8s render --image/--tag` must name what you built and pushed.
ARG RAY_VERSION=2.60.0
ARG VARIANT=cpu
FROM rayproject/ray:${RAY_VERSION}-py311-${VARIANT}
ARG VARIANT
ARG RAY_VERSION

# RayJobs run `python jobs/...` from here (their runtime_env working_dir).
WORKDIR /home/ray/pomona
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users platform ./platform
# The versions come from pyproject.toml; for the CPU variant the PyTorch CPU index offers the
# same versions as `+cpu` builds, which pip prefers, so the image skips the CUDA libraries.
RUN if [ "$VARIANT" = "cpu" ]; then extra="--extra-index-url https://download.pytorch.org/whl/cpu"; fi \
    && pip install --no-cache-dir ${extra:-} . \
    && python -c "import pomona, ray; assert ray.__version__ == '${RAY_VERSION}', ray.__version__"
COPY --chown=ray:users jobs ./jobs
COPY --chown=ray:users configs ./configs
