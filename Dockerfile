# The Strom image: strom-broker on Debian slim, running as a non-root user.
#
# BUILD=source (the default, for any machine with Docker) compiles in the official Rust builder
# image. BUILD=prebuilt copies target/image/strom-broker, the host's release build without its
# debug info, for machines with no Rust builder image (scripts/build-image.sh makes it and
# builds with buildah --pull=never).
ARG BUILD=source

FROM docker.io/library/rust:1-bookworm AS build-source
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p strom-broker \
    && mkdir /out && objcopy --strip-debug target/release/strom-broker /out/strom-broker

FROM docker.io/library/debian:bookworm-slim AS build-prebuilt
COPY target/image/strom-broker /out/strom-broker

FROM build-${BUILD} AS build

FROM docker.io/library/debian:bookworm-slim
COPY --from=build /out/strom-broker /usr/local/bin/strom-broker
RUN mkdir -p /var/lib/strom/data && chown -R 65532:65532 /var/lib/strom
USER 65532:65532
WORKDIR /var/lib/strom
ENV STROM_LOG_DIRS=/var/lib/strom/data
EXPOSE 9092 9093 9644
ENTRYPOINT ["/usr/local/bin/strom-broker"]
