# The image `ferry install` deploys: ferry-server, ferry-node-agent, ferry-datamover and restic, static,
# at the root of a minimal image. (Container builds cannot run on Ferry's CI machines; this file
# is not exercised there.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/ferry-server ./cmd/ferry-node-agent ./cmd/ferry-datamover
# The pinned restic CLI, for the node-agent's restores of Velero's restic backups.
RUN FERRY_CACHE=/cache hack/install-tool.sh restic && cp /cache/tools/restic-* /out/restic

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /
