# latch's container image: the same on fly.io (fly.toml) and on a laptop:
#
#   docker build -t latch .
#   docker run -it -v latch:/data -p 8080:8080 -p 4222:4222 latch
#
# prints the one-time setup link (without -t it goes to /data/setup-link:
# docker exec <container> /latch setup-link). docs/deploy-fly.md has the
# rest.

# The Go of go.mod's go line; a test checks the two agree.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces nats-server with this patched copy (docs/architecture.md).
COPY third_party ./third_party
RUN go mod download
COPY . .
# Stamped into `latch --version`; deploy.yml passes the tag and commit.
ARG VERSION=dev
ARG COMMIT=unknown
# The Makefile's static build, so the image's binary is the one the tests
# start as fly would.
RUN make static STATIC=/out/latch VERSION="${VERSION}" COMMIT="${COMMIT}"
RUN mkdir -p /out/data

# No shell, no package manager: the binary, CA certificates, a passwd with
# the nonroot user (65532).
FROM gcr.io/distroless/static-debian12 AS runtime
COPY --from=build /out/latch /latch
COPY --from=build --chown=65532:65532 /out/data /data
# A volume arrives owned by root (fly.io's do): latch starts as root only
# to give /data to 65532, then drops root before it opens anything.
ENV LATCH_RUN_AS=65532:65532
# Every latch command run in the container (fly ssh console -C "/latch
# setup-link") finds the data folder.
ENV LATCH_DATA=/data
VOLUME /data
# 8080 the web (behind fly's https), 4222 NATS, 6222 routes between nodes.
EXPOSE 8080 4222 6222
ENTRYPOINT ["/latch"]
CMD ["serve", "--data", "/data", "--http", "0.0.0.0:8080", "--nats", "0.0.0.0:4222"]
