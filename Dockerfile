# syntax=docker/dockerfile:1
#
# The mongoplex image: a static-ish Rust binary on distroless/cc (glibc, libgcc, CA
# certificates, no shell), running as the distroless "nonroot" user (65532).
#
#   docker build -t mongoplex .
#   docker run --rm --read-only -p 27016:27016 -p 9317:9317 \
#       -e MONGOPLEX_UPSTREAM='mongodb://db1:27017,db2:27017/?replicaSet=rs0' mongoplex
#
# Configuration: MONGOPLEX_<KEY> variables (see config/mongoplex.toml for the keys), or
# a file mounted anywhere and named by MONGOPLEX_CONFIG (or `--config`); check it with
# `docker run --rm ... mongoplex check-config`.
#
# Both base images are pinned by digest: bump the tag and the digest together (read the
# digest with `docker buildx imagetools inspect IMAGE:TAG`). Builder and runtime are both
# Debian 12 (bookworm), so the binary's glibc matches the runtime's.

# ---- builder --------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS builder
WORKDIR /src
# Symbols stay (readable backtraces), DWARF goes: the release profile's debug = 1 would
# otherwise add tens of MB to the image.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never

# Dependency layer: build every dependency against placeholder sources, so that a change
# under src/ rebuilds only mongoplex itself. It is invalidated only by Cargo.toml or
# Cargo.lock. (The [[bench]] target's file must exist for Cargo to read the manifest.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/bench \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > tests/bench/proxy.rs \
    && cargo build --release --locked --bin mongoplex \
    && rm -rf src

COPY src ./src
# COPY keeps the context's modification times, which may be older than the placeholder
# build: touch, or Cargo would keep the placeholder binary.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin mongoplex \
    && install -D -m 0755 target/release/mongoplex /out/mongoplex

# ---- runtime --------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=builder /out/mongoplex /usr/local/bin/mongoplex
COPY config/mongoplex.toml /etc/mongoplex/mongoplex.example.toml

# In a container the listeners must take connections from outside the network
# namespace; everything else keeps its default until configured.
ENV MONGOPLEX_LISTEN=0.0.0.0:27016 \
    MONGOPLEX_ADMIN=0.0.0.0:9317 \
    MONGOPLEX_LOG_FORMAT=json

# 27016: MongoDB clients. 9317: admin HTTP (/metrics, /live, /ready, /status).
EXPOSE 27016 9317

# mongoplex writes nothing to disk, so the root filesystem can be mounted read-only
# (docker run --read-only; readOnlyRootFilesystem in Kubernetes). A unix_socket, if
# configured, needs a writable mount (an emptyDir or tmpfs) for its directory.
USER 65532:65532

# No curl in distroless: the binary probes its own admin port (MONGOPLEX_ADMIN, with
# 0.0.0.0 probed on loopback). Exits 0 live, 1 not.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/mongoplex", "health"]

ENTRYPOINT ["/usr/local/bin/mongoplex"]
