# Shared settings and helpers for the local Kubernetes cluster scripts (sourced, not run).

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/apt.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/debian.sh"

K8S_VERSION=1.20.2
CACHE="${STROM_CACHE:-$HOME/.cache/strom}"
K8S_BIN="$CACHE/k8s-$K8S_VERSION/bin"
LAB="${STROM_LAB:-$CACHE/lab}"
NETNS=strom-k8s
HOST_IP=10.250.0.1
NODE_IP=10.250.0.2
NODE_NAME=strom-node
SERVICE_CIDR=10.96.0.0/16
CLUSTER_API_IP=10.96.0.1
POD_CIDR=10.244.0.0/24
CONTAINERD_SOCK="$LAB/containerd/containerd.sock"
PAUSE_IMAGE=k8s.gcr.io/pause:3.2
BASE_IMAGE=docker.io/library/debian:bookworm-slim
export KUBECONFIG="$LAB/admin.kubeconfig"
# kubectl comes from build-kubernetes, the same version as the cluster.
export PATH="$K8S_BIN:$PATH"

STARTED_AT=$(date +%s)
step_started=$STARTED_AT

# Logs a step with the seconds the previous one took and the total so far.
step() {
  local now
  now=$(date +%s)
  printf '[%4ss +%3ss] %s\n' "$((now - STARTED_AT))" "$((now - step_started))" "$*" >&2
  step_started=$now
}

die() {
  echo "error: $*" >&2
  exit 1
}

# Runs a command inside the cluster's network namespace with the host's mount namespace
# (`ip netns exec` would give it a private one, hiding kubelet's mounts from containerd).
in_netns() {
  nsenter --net="/run/netns/$NETNS" "$@"
}

# Starts a daemon in the namespace, logging to $LAB/logs/NAME.log, its pid in $LAB/pids/NAME.
start_daemon() {
  local name=$1
  shift
  mkdir -p "$LAB/logs" "$LAB/pids"
  setsid nsenter --net="/run/netns/$NETNS" "$@" >"$LAB/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$LAB/pids/$name"
}

# Polls a command until it succeeds, at most $2 seconds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local deadline=$(($(date +%s) + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      die "$what not ready after ${seconds}s"
    fi
    sleep 0.5
  done
}
