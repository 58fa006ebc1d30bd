# Shared settings for testcluster/install, up and down. Sourced, not run.
# shellcheck shell=bash

TC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KEDGE_CACHE=${KEDGE_CACHE:-$HOME/.cache/kedge}
export KEDGE_CACHE
TC_SID=$KEDGE_CACHE/sid                  # unpacked Debian sid packages
TC_APT=$KEDGE_CACHE/apt                  # private apt state for sid
TC_GEN=$KEDGE_CACHE/gen                  # generated Go sources (GOPATH entry)
TC_BIN=$KEDGE_CACHE/bin                  # kedge-testcluster, etcd, kustomize
TC_STAMPS=$KEDGE_CACHE/stamps
TC_CLUSTERS=$KEDGE_CACHE/clusters
TC_SERVER_BIN=$TC_BIN/kedge-testcluster

# shellcheck source=versions.env
. "$TC_DIR/versions.env"

tc_log() { echo "testcluster: $*" >&2; }
tc_die() { echo "testcluster: error: $*" >&2; exit 1; }

tc_go_env() {
  export GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 GOFLAGS=
  export GOROOT=$TC_SID/usr/lib/go-1.27
  export GOPATH=$TC_GEN:$TC_SID/usr/share/gocode
  export GOCACHE=$KEDGE_CACHE/go-build
  export PATH=$GOROOT/bin:$PATH
}

# Hash of everything the server build depends on.
tc_inputs_hash() {
  cat "$TC_DIR/versions.env" "$TC_DIR/install" "$TC_DIR/lib.sh" "$TC_DIR"/server/*.go | sha256sum | cut -c1-32
}
