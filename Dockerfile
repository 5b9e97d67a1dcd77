# One image for every scopegate service (authz, xds, idp, demo-api, demo-cert): a static binary
# on distroless, running as the distroless "nonroot" user (65532).
#
# Base images are pinned to specific versions. To pin by digest as well, resolve the tags once
# (`docker buildx imagetools inspect golang:1.26.8-bookworm`) and pass them as build args, e.g.
#   --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:<digest>
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# The toolchain in the image, never a download; a static binary, reproducible paths.
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false"
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X github.com/scopegate/scopegate/internal/version.Version=${VERSION}" \
      -o /out/scopegate ./cmd/scopegate \
 && mkdir -p /out/certs

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/scopegate /usr/local/bin/scopegate
# /certs belongs to nonroot: a named volume mounted there starts with this owner, so the
# one-shot `demo-cert` service can write the demo certificate into it.
COPY --from=build --chown=65532:65532 /out/certs /certs
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/scopegate"]
CMD ["--help"]
