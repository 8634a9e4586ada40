# The Strom image: strom-broker (the default command) and strom-operator on Debian slim, running
# as a non-root user.
#
# BUILD=source (the default, for any machine with Docker) compiles in the official Rust builder
# image. BUILD=prebuilt copies target/image/, the host's release builds without their debug
# info, for machines with no Rust builder image (scripts/build-image.sh makes them and builds
# with buildah --pull=never).
ARG BUILD=source

FROM docker.io/library/rust:1-bookworm AS build-source
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p strom-broker -p strom-operator \
    && mkdir /out \
    && objcopy --strip-debug target/release/strom-broker /out/strom-broker \
    && objcopy --strip-debug target/release/strom-operator /out/strom-operator

FROM docker.io/library/debian:bookworm-slim AS build-prebuilt
COPY target/image/strom-broker target/image/strom-operator /out/

FROM build-${BUILD} AS build

FROM docker.io/library/debian:bookworm-slim
COPY --from=build /out/strom-broker /out/strom-operator /usr/local/bin/
RUN mkdir -p /var/lib/strom/data && chown -R 65532:65532 /var/lib/strom
USER 65532:65532
WORKDIR /var/lib/strom
ENV STROM_LOG_DIRS=/var/lib/strom/data
EXPOSE 9092 9093 9644 8080
ENTRYPOINT ["/usr/local/bin/strom-broker"]
