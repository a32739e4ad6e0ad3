# syntax=docker/dockerfile:1
# warmproxy container image: a static binary on distroless/static (CA
# certificates, /etc/passwd with nonroot, tzdata; no shell, no libc).
#
#   docker build -t warmproxy --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker run --rm -p 127.0.0.1:9999:9999 warmproxy
#
# Inside a container the proxy listens on 0.0.0.0:9999 (loopback would be
# unreachable from outside it); publish the port on loopback as above, or
# see deploy/k8s for Kubernetes.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=
ARG TARGETOS TARGETARCH
# No .git in the build context (.dockerignore), so the version and commit
# come from VERSION and COMMIT; -trimpath keeps the build reproducible.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/warmproxy ./cmd/warmproxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warmproxy /usr/local/bin/warmproxy
COPY deploy/warmproxy.yaml /etc/warmproxy/warmproxy.yaml
USER 65532:65532
EXPOSE 9999
ENTRYPOINT ["/usr/local/bin/warmproxy"]
CMD ["-config", "/etc/warmproxy/warmproxy.yaml", "-listen", "0.0.0.0:9999"]
