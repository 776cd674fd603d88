# Hone's production image. The build stage runs the same commands as
# scripts/run (scripts/setup, scripts/build-site release, cargo build
# --release); the runtime stage is an NVIDIA CUDA runtime image so training
# workers can use the GPU.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/src/target HONE_SITE_ROOT=/src/target/site
RUN scripts/setup \
 && scripts/build-site release \
 && cargo build --release -p hone-server --bin hone

FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 hone \
 && mkdir -p /data /opt/hone \
 && chown hone /data
COPY --from=build /src/target/release/hone /usr/local/bin/hone
COPY --from=build /src/target/site /opt/hone/site
ENV HONE_BIND=0.0.0.0:3000 \
    HONE_DATA_DIR=/data \
    HONE_SITE_ROOT=/opt/hone/site
USER hone
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD curl -fsS http://127.0.0.1:3000/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/hone"]
CMD ["serve"]
