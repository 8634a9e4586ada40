# Two small images, each one binary and the C libraries it links (glibc, libgcc_s) on an empty
# base: no shell, no package manager, a non-root user.
#   docker build -t strom .                                      # strom-broker (the default)
#   docker build --target operator -t strom-operator .           # strom-operator
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
    && objcopy --strip-all target/release/strom-broker /out/strom-broker \
    && objcopy --strip-all target/release/strom-operator /out/strom-operator

FROM docker.io/library/debian:bookworm-slim AS build-prebuilt
COPY target/image/strom-broker target/image/strom-operator /out/

FROM build-${BUILD} AS build

# One root file system per binary: the binary, the libraries ldd names (a missing one fails
# the build), /etc/hosts before DNS as glibc needs to be told without an nsswitch.conf, a
# passwd entry for the non-root user and the data directory it owns.
FROM docker.io/library/debian:bookworm-slim AS rootfs
COPY --from=build /out/ /out/
RUN set -eu; \
    for bin in strom-broker strom-operator; do \
      root="/rootfs/$bin"; \
      mkdir -p "$root/usr/local/bin" "$root/etc" "$root/var/lib/strom/data" "$root/tmp"; \
      cp "/out/$bin" "$root/usr/local/bin/"; \
      if ldd "/out/$bin" | grep -q 'not found'; then ldd "/out/$bin" >&2; exit 1; fi; \
      for lib in $(ldd "/out/$bin" | grep -o '/[^ ]*'); do cp --parents -L "$lib" "$root/"; done; \
      echo 'hosts: files dns' > "$root/etc/nsswitch.conf"; \
      echo 'nonroot:x:65532:65532:nonroot:/var/lib/strom:/nonexistent' > "$root/etc/passwd"; \
      echo 'nonroot:x:65532:' > "$root/etc/group"; \
      chown -R 65532:65532 "$root/var/lib/strom"; \
      chmod 1777 "$root/tmp"; \
    done

FROM scratch AS operator
COPY --from=rootfs /rootfs/strom-operator/ /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/strom-operator"]

FROM scratch AS broker
COPY --from=rootfs /rootfs/strom-broker/ /
USER 65532:65532
WORKDIR /var/lib/strom
ENV STROM_LOG_DIRS=/var/lib/strom/data
EXPOSE 9092 9093 9644
ENTRYPOINT ["/usr/local/bin/strom-broker"]
