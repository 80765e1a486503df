# The agentctl controller image: `docker build -t ghcr.io/agentctl/agentctl:0.1.0 .`
# (charts/agentctl's default image is ghcr.io/agentctl/agentctl, tag = the chart's appVersion =
# pyproject.toml's version). Two stages: the build stage installs with pip; the final stage
# gets only the virtualenv, and neither pip nor setuptools.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/agentctl
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN /opt/agentctl/bin/pip install . \
    && /opt/agentctl/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentctl" \
      org.opencontainers.image.description="GitOps deployment controller for MLflow agents" \
      org.opencontainers.image.licenses="Apache-2.0"
# The chart's securityContext runs as this user, with a read-only root filesystem and /tmp
# (HOME) as its one writable emptyDir.
RUN groupadd --system --gid 65532 agentctl \
    && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --shell /usr/sbin/nologin agentctl \
    && python -m pip uninstall --yes pip setuptools wheel
COPY --from=build /opt/agentctl /opt/agentctl
ENV PATH=/opt/agentctl/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["agentctl"]
CMD ["controller", "--manifests", "/manifests", "--listen", "0.0.0.0:8080"]
