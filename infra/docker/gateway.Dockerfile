# syntax=docker/dockerfile:1
# Switchyard gateway: the esbuild bundle (dist/gateway.mjs) on a slim Node 20 image.
# Build from the repository root: docker build -f infra/docker/gateway.Dockerfile -t switchyard-gateway .
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# Scripts are not needed to bundle (esbuild's binary comes as an optional dependency).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY gateway ./gateway
COPY openai ./openai
COPY lib ./lib
RUN npm run build

# Production dependencies of the bundle only: the backend's packages (onnxruntime-node is
# ~290 MB) are dropped when the bundle does not import them, then every import is checked.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY --from=build /app/dist ./dist
RUN npm ci --omit=dev --no-audit --no-fund \
 && unused="$(node -e "const b=require('fs').readFileSync('dist/gateway.mjs','utf8');console.log(Object.keys(require('./package.json').dependencies).filter((d)=>!b.includes('\"'+d+'\"')&&!b.includes('\"'+d+'/')).join(' '))")" \
 && if [ -n "$unused" ]; then npm uninstall --omit=dev --no-audit --no-fund $unused; fi \
 && node --input-type=module -e "const b=(await import('node:fs')).readFileSync('dist/gateway.mjs','utf8');for(const [,m] of b.matchAll(/from \"([^\".][^\"]*)\"/g)) if(!m.startsWith('node:')) import.meta.resolve(m)" \
 && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    METRICS_PORT=9091
WORKDIR /app
# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 10001:10001
EXPOSE 8080 9091
# No curl in slim images: Node's own fetch. Plain HTTP; with TLS_CERT_FILE set, probe from outside instead.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/gateway.mjs"]
