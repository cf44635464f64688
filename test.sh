#!/usr/bin/env bash
# Runs gpulab's test suite: prepares the environment (Python packages with the test extras,
# and, as root, the Debian packages the tests drive), then pytest. Arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/scripts/environment.sh"
GPULAB_EXTRAS=test gpulab_environment
if gpulab_as_root; then
  # chromium for the browser tests, OpenSSH clients, sshd (the reference the SSH tests compare with) and rsync, acl for shared folders,
  # Podman with runc and debootstrap for the images and the docker backend (tests/support/containers.py builds and serves them)
  gpulab_apt_install chromium openssh-client openssh-server rsync acl shellcheck podman runc debootstrap
else
  gpulab_log "not root: tests that need system accounts or Debian packages will be skipped"
fi
cd "$gpulab_root"
# The images the container tests run (debian, base, cpu, hub) are built before pytest starts, so no
# test spends its time limit on a build (a change to gpulab's code rebuilds base and what is built on
# it: minutes on 2 cores, and more with four test files running); cached by a hash of each context.
if gpulab_as_root && command -v podman >/dev/null 2>&1; then
  "$GPULAB_VENV/bin/python" -m tests.support.containers base cpu hub ||
    gpulab_log "building the test images failed; the container tests will name .test-cache/images/build.log"
fi
# configurable-http-proxy (npm) for the tests of the proxy.kind option, when Node.js is here
if command -v npm >/dev/null 2>&1; then
  chp="$gpulab_root/.test-cache/chp"
  if [ ! -x "$chp/node_modules/.bin/configurable-http-proxy" ]; then
    npm install --silent --no-audit --no-fund --prefix "$chp" configurable-http-proxy@4 >/dev/null 2>&1 ||
      gpulab_log "could not install configurable-http-proxy from npm; its tests will be skipped"
  fi
  [ -x "$chp/node_modules/.bin/configurable-http-proxy" ] && export GPULAB_TEST_CHP_BIN="$chp/node_modules/.bin"
fi
# Most hub tests wait (servers starting, kernels, timers) rather than compute, so several test
# files run at once even on 2 cores; a file's tests stay together (they share a module's hub).
# GPULAB_TEST_WORKERS=0 (or -n 0 among the arguments) runs everything in one process.
exec "$GPULAB_VENV/bin/python" -m pytest -n "${GPULAB_TEST_WORKERS:-4}" --dist loadfile "$@"
