#!/usr/bin/env bash
# The tools tests/netns and bench/bench_wan.py need, on Debian (as root, as in CI):
# ip and ss (iproute2), iptables (nft backend; iptables-legacy also works, pick it
# with SKUPPER_TEST_IPTABLES=iptables-legacy), sysctl (procps). The NFQUEUE wire tool
# (tests/netns/nfq_wire.py) speaks netlink itself: no libnetfilter-queue needed, but
# the kernel needs CONFIG_NETFILTER_NETLINK_QUEUE and CONFIG_NETFILTER_XT_TARGET_NFQUEUE.
set -euo pipefail
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v ss >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
command -v sysctl >/dev/null || missing+=(procps)
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "install-netns-tools: need root to install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-netns-tools: ip, ss, iptables and sysctl present"
