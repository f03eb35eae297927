# The image `ferry install` deploys: ferry-server, ferry-node-agent and ferry-datamover, static,
# at the root of a minimal image. (Container builds cannot run on Ferry's CI machines; this file
# is not exercised there.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/ferry-server ./cmd/ferry-node-agent ./cmd/ferry-datamover

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/ /
