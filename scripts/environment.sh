# shellcheck shell=bash
# Sourced by ./gpulab and ./test.sh: makes sure gpulab's Python environment exists and is current.
#
# The environment lives in .venv inside the checkout. User servers run from it under their
# own accounts, so when gpulab runs as root from a checkout other users cannot enter
# (e.g. under /root), it goes to /opt/gpulab/ instead, installed as a copy, not editable.

gpulab_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

gpulab_log() { printf 'gpulab: %s\n' "$*" >&2; }

gpulab_open_to_others() {  # every folder from / to $1 can be entered by other users
  local dir="$1"
  while [ "$dir" != "/" ]; do
    [ "$(( 0$(stat -c '%a' "$dir") & 01 ))" -ne 0 ] || return 1
    dir="$(dirname "$dir")"
  done
}

gpulab_as_root() { [ "$(id -u)" -eq 0 ]; }

gpulab_step() {  # gpulab_step LOG "what" COMMAND...: one progress line; the output goes to LOG, shown only on failure
  local log="$1" what="$2" started=$SECONDS
  shift 2
  printf 'gpulab: %s ... ' "$what" >&2
  if "$@" >>"$log" 2>&1; then
    printf 'done (%ss)\n' "$(( SECONDS - started ))" >&2
  else
    local status=$?
    printf 'failed\n' >&2
    tail -n 40 "$log" >&2
    gpulab_log "the whole output is in $log"
    return "$status"
  fi
}

gpulab_apt_install() {  # install the Debian packages that are missing (root only)
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! gpulab_as_root; then
    gpulab_log "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"
    return 1
  fi
  gpulab_log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

gpulab_python() {  # a Python >= 3.11 that every user can run
  local candidate
  for candidate in /usr/bin/python3 /usr/bin/python3.12 /usr/bin/python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  gpulab_log "gpulab needs Python 3.11 or newer (apt-get install python3)"
  return 1
}

gpulab_source_stamp() {  # changes whenever what pip would install changes
  local editable="$1"
  {
    echo "extras=${GPULAB_EXTRAS:-} editable=$editable"
    cat "$gpulab_root/pyproject.toml" "$gpulab_root/setup.py" "$gpulab_root/constraints.txt" "${BASH_SOURCE[0]}"
    if [ "$editable" = no ]; then
      (cd "$gpulab_root" && find hub_config spawner extensions db images -type f ! -name '*.pyc' -print0 |
        sort -z | xargs -0 sha256sum)
    fi
  } | sha256sum | cut -c1-16
}

gpulab_environment() {
  local editable=yes
  GPULAB_VENV="${GPULAB_VENV:-$gpulab_root/.venv}"
  if gpulab_as_root && ! gpulab_open_to_others "$gpulab_root" && [ "$GPULAB_VENV" = "$gpulab_root/.venv" ]; then
    GPULAB_VENV="/opt/gpulab/venv-$(printf '%s' "$gpulab_root" | sha256sum | cut -c1-8)"
    editable=no
  fi
  export GPULAB_VENV
  local stamp
  stamp="$(gpulab_source_stamp "$editable")"
  if [ -x "$GPULAB_VENV/bin/python" ] && [ "$(cat "$GPULAB_VENV/.gpulab-stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  local python
  python="$(gpulab_python)" || return 1
  if ! "$python" -c 'import ensurepip' 2>/dev/null; then
    gpulab_apt_install python3-venv || return 1
  fi
  # pip and setuptools print hundreds of lines on a first install; they go to a log instead.
  local log
  log="$(mktemp -t gpulab-install.XXXXXX.log)"
  if [ ! -x "$GPULAB_VENV/bin/python" ]; then
    mkdir -p "$(dirname "$GPULAB_VENV")"
    gpulab_step "$log" "creating the Python environment in $GPULAB_VENV" "$python" -m venv "$GPULAB_VENV"
    gpulab_step "$log" "updating pip" "$GPULAB_VENV/bin/python" -m pip install -q --upgrade pip
  fi
  local target="$gpulab_root"
  [ -n "${GPULAB_EXTRAS:-}" ] && target="${gpulab_root}[$GPULAB_EXTRAS]"
  local pip=("$GPULAB_VENV/bin/python" -m pip install -q -c "$gpulab_root/constraints.txt")
  if [ "$editable" = yes ]; then
    gpulab_step "$log" "installing gpulab and its packages (the first time takes a few minutes)" "${pip[@]}" -e "$target"
  else
    gpulab_step "$log" "installing gpulab" "${pip[@]}" --force-reinstall --no-deps "$gpulab_root"
    gpulab_step "$log" "installing its packages (the first time takes a few minutes)" "${pip[@]}" "$target"
  fi
  # rfc3987-syntax (pulled in by jupyter-events' jsonschema extra) compiles ~35 grammars when
  # jupyter_server is imported, ~2.3 s of every server's and run's start, for formats ("iri") no
  # Jupyter schema uses; without it jsonschema skips only those formats.
  gpulab_step "$log" "removing rfc3987-syntax" "$GPULAB_VENV/bin/python" -m pip uninstall --yes -q rfc3987-syntax
  rm -f "$log"
  chmod -R a+rX "$GPULAB_VENV"
  echo "$stamp" >"$GPULAB_VENV/.gpulab-stamp"
}
