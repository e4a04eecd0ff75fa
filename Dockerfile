# Relay gateway image (docs/deploy.md). Two stages on Debian 12, the
# platform of scripts/deps.sh: `build` runs make with the packages marked
# @build in scripts/packages.txt, `runtime` holds build/relay, migrations/
# and dashboard/dist (when `make dashboard` built it before) with only the
# libraries marked @runtime. The package list is read from that file, never
# repeated here; tests/integration/test_deploy.py checks it against the
# Makefile's LIBS.
#
#   docker build -t relay .
#   docker run -p 8080:8080 -v $PWD/relay.yaml:/etc/relay/relay.yaml:ro relay

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/packages.txt /tmp/packages.txt
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      $(sed -n 's/[[:space:]]*#.*@build.*//p' /tmp/packages.txt) \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" build/relay && mkdir -p dashboard/dist

FROM debian:12 AS runtime
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/packages.txt /tmp/packages.txt
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      $(sed -n 's/[[:space:]]*#.*@runtime.*//p' /tmp/packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/packages.txt \
 && useradd --system --uid 10001 --home-dir /opt/relay --shell /usr/sbin/nologin relay \
 && mkdir -p /opt/relay/.relay /etc/relay \
 && chown relay:relay /opt/relay/.relay
WORKDIR /opt/relay
COPY --from=build /src/build/relay /usr/local/bin/relay
COPY --from=build /src/migrations /opt/relay/migrations
COPY --from=build /src/dashboard/dist /opt/relay/dashboard/dist
# relay serve applies the migrations it finds here at start.
ENV RELAY_MIGRATIONS=/opt/relay/migrations
USER relay
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# --listen: relay.yaml's listen is for the host (127.0.0.1); in the
# container the gateway must listen on every interface.
CMD ["relay", "serve", "--config", "/etc/relay/relay.yaml", "--listen", "0.0.0.0:8080"]
