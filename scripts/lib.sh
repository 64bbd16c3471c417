# Shared by scripts/demo and scripts/test: make sure what they need is on
# the machine, installing it when it is missing. Sourced, not run.

die() {
    echo "gnomon: $*" >&2
    exit 1
}

# need_rust: cargo with rustfmt and clippy.
need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            die "cargo is not installed. Install Rust (https://rustup.rs, or 'apt-get install cargo rustc' on Debian 13) and run this again."
        fi
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                rustup component add "$component" || die "could not install the Rust component $component"
            else
                die "cargo $component is missing: 'apt-get install rust-$component' or 'rustup component add $component'"
            fi
        fi
    done
}

# need_packages PKG...: install the Debian packages that are missing.
# Nothing is installed when everything is present; installing needs root.
need_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}. Run as root, or 'sudo apt-get install -y ${missing[*]}' first."
    fi
    echo "gnomon: installing ${missing[*]}" >&2
    # Packages like chrony and gpsd start their system service on install.
    # gnomon's tests and lab run private daemons only: forbid service starts
    # for the duration of the install so the host's clock is never touched.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && made_policy=1
    fi
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } || rc=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get could not install ${missing[*]}"
}
