# syntax=docker/dockerfile:1
# Switchyard backend node. Build from the repository root:
#   GPU (default): docker build -f infra/docker/backend.Dockerfile -t switchyard-backend .
#   CPU only:      docker build -f infra/docker/backend.Dockerfile -t switchyard-backend:cpu \
#                    --build-arg RUNTIME_IMAGE=node:20-bookworm-slim --build-arg ONNXRUNTIME_NODE_INSTALL=skip .
ARG NODE_IMAGE=node:20-bookworm-slim
# onnxruntime-node's CUDA provider is built for CUDA 12 with cuDNN 9.
ARG RUNTIME_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${NODE_IMAGE} AS deps
# cuda12 makes onnxruntime-node's install script fetch its CUDA provider libraries (needs
# internet at build time). The script reads this variable before npm's config, so it wins
# over the repository's .npmrc (onnxruntime-node-install=skip).
ARG ONNXRUNTIME_NODE_INSTALL=cuda12
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL="${ONNXRUNTIME_NODE_INSTALL}" npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
# The backend runs from TypeScript source (its engine worker is a .ts file), so it needs tsx,
# a devDependency: install it at the lockfile's versions and add it to the production tree.
RUN tsx="$(node -p "require('./package-lock.json').packages['node_modules/tsx'].version")" \
 && esbuild="$(node -p "require('./package-lock.json').packages['node_modules/esbuild'].version")" \
 && npm install --prefix /tmp/tsx --no-audit --no-fund --no-save "tsx@${tsx}" "esbuild@${esbuild}" \
 && cp -Rn /tmp/tsx/node_modules/. node_modules/ \
 && rm -rf /tmp/tsx \
 && node --input-type=module -e "import.meta.resolve('tsx/esm/api')" \
 && npm cache clean --force

FROM ${RUNTIME_IMAGE}
# The Node binary of the deps stage: same version that installed node_modules, no apt repository.
COPY --from=deps /usr/local/bin/node /usr/local/bin/node
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_DIR=/models
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin switchyard
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY backend ./backend
COPY openai ./openai
COPY lib ./lib
USER 10001:10001
# Mount models read-only at /models: MODEL_DIR=/models serves every model folder in it,
# MODEL_DIR=/models/<name> one. tsx keeps its compile cache in /tmp, which must stay writable.
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/live').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains: /ready turns 503, in-flight requests finish (DRAIN_TIMEOUT_MS), exit 0.
CMD ["node", "--import", "tsx", "backend/node.ts"]
