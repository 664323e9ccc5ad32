# syntax=docker/dockerfile:1
# relay-bridge: one Matrix appservice for a Signal group and a WhatsApp group in one room.
#
#   docker build -t relay-bridge .
#   docker run --rm -v "$PWD/data:/data" relay-bridge generate-registration
#
# The image keeps everything it writes in /data: config.yaml, registration.yaml, media, and the
# embedded database when database.uri is empty. It runs as uid/gid 991, the same ids the official
# Synapse image uses, so a Synapse container can read the registration file (written with mode 0600)
# from a shared mount.

# Pinned to an exact release; raise it deliberately.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# ---- build: install everything, compile TypeScript, drop dev dependencies -------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

# package.json overrides @matrix-org/matrix-sdk-crypto-nodejs with the local stub in stubs/, so the
# stub has to be there before npm ci. No dependency needs its install script (npm 11 would otherwise
# ask to approve the ones of Baileys and protobufjs), so none run.
COPY package.json package-lock.json ./
COPY stubs/ stubs/
RUN npm ci --ignore-scripts

COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts

# The embedded database's template (src/db/template.ts): a first start in the container loads it instead of
# creating a database from nothing, which would cost seconds (postinstall would make it, but no scripts ran).
COPY migrations/ migrations/
COPY scripts/pglite-template.ts scripts/
RUN node scripts/pglite-template.ts

# Fail the build, not the first start, when a module the bridge loads at runtime is missing from the
# production dependencies.
RUN node --input-type=module -e "for (const m of ['cli', 'bridge', 'signal/network', 'whatsapp/network']) await import('./dist/' + m + '.js')"

# ---- runtime ---------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
WORKDIR /app

RUN groupadd --system --gid 991 relaybridge \
 && useradd --system --uid 991 --gid relaybridge --home-dir /data --no-create-home --shell /usr/sbin/nologin relaybridge \
 && mkdir /data \
 && chown relaybridge:relaybridge /data

COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules/ node_modules/
# node_modules/@matrix-org/matrix-sdk-crypto-nodejs is a symlink into stubs/.
COPY --from=build /app/stubs/ stubs/
COPY --from=build /app/dist/ dist/
COPY migrations/ migrations/
COPY config/ config/
COPY bin/ bin/
# The compose stack's one-shot init and synapse-admin services (docker-compose.yml).
COPY docker/init/ docker/init/
# The operator console's page (console.enabled).
COPY console/ console/

# Inside a container the bridge must listen on all interfaces, and its data lives in /data whatever
# data_dir says in config.yaml (environment variables override the file).
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps \
    RELAY_BRIDGE_DATA_DIR=/data \
    RELAY_BRIDGE_APPSERVICE_HOSTNAME=0.0.0.0

USER relaybridge
VOLUME ["/data"]
# 29330: the appservice endpoint (for the homeserver). 9100: /metrics and /health (keep private).
EXPOSE 29330 9100

# /health answers 200 while the database answers. Needs metrics.enabled (the default) on port 9100.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9100/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# A 4 MB young generation: V8 otherwise grows it to 64 MB during start-up and keeps it (docs/performance.md).
ENTRYPOINT ["node", "--max-semi-space-size=4", "/app/bin/relay-bridge.js", "-c", "/data/config.yaml", "-r", "/data/registration.yaml"]
CMD ["start"]
