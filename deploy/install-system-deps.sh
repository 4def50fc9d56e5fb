#!/usr/bin/env bash
# Installs the tools the tests and the demo use, only if missing:
# kcat (a non-Python Kafka client), prometheus + promtool (the metrics tests), chromium
# (report.html test), docker-compose (`docker-compose config` on docker-compose.yml), and a
# kustomize to render deploy/k8s (kubectl's built-in one if kubectl is there; else kustomize
# built from the Go module proxy into .cache/bin). Run from the repository root (make sysdeps).
set -euo pipefail
KUSTOMIZE_VERSION=v5.5.0  # the version kubectl 1.32 embeds
need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 \
    && [ ! -x .cache/bin/kustomize ]; then
  echo "building kustomize $KUSTOMIZE_VERSION into .cache/bin (Go module proxy)"
  GOBIN="$PWD/.cache/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
