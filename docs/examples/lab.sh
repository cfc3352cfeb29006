#!/bin/sh
# A one-machine IKEv2 lab: a strongSwan gateway and a strongSwan client, each charon in
# a network namespace of its own, joined by a veth pair.  Run as root (Debian 12:
# strongswan-charon strongswan-swanctl libcharon-extra-plugins iproute2).
#
#   sh lab.sh up                 namespaces eapkit-gw (192.0.2.1) and eapkit-cl (192.0.2.2)
#   sh lab.sh charon gw|cl DIR   start charon in that namespace; DIR holds its
#                                strongswan.conf (written if missing) and swanctl/
#   sh lab.sh swanctl gw|cl DIR ARGS...   swanctl for that charon (e.g. --load-all)
#   sh lab.sh down DIR...        stop the charons started with these DIRs, delete the lab
#
# On the gateway, eapkit serve runs in the gateway's namespace, on its own loopback:
#   ip netns exec eapkit-gw eapkit serve --config /var/lib/eapkit/eapkit.toml
#
# Two charons on one host: charon writes /var/run/charon.pid (compiled in) and refuses
# to start while it names a live process; `ip netns exec` gives each command a mount
# namespace of its own, where DIR/run is bind-mounted over /run.
#
# A kernel without ESP (CONFIG_INET_ESP; `ip xfrm state add ... proto esp` fails with
# "Requested AEAD algorithm not found") cannot install the CHILD_SA ("unable to add
# SAD entry").  Then set LIBIPSEC=1: charon loads kernel-libipsec, which does ESP in
# user space over a TUN device (it also forces UDP encapsulation).
set -eu
GW=eapkit-gw
CL=eapkit-cl
PLUGINS="random drbg nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey \
kdf hmac sha1 sha2 md5 aes gcm kernel-netlink socket-default vici eap-identity"

ns_of() { if [ "$1" = gw ]; then echo $GW; else echo $CL; fi; }

strongswan_conf() { # ROLE DIR
    if [ "$1" = gw ]; then extra="eap-radius"; else extra="eap-gtc eap-mschapv2 eap-tls eap-ttls"; fi
    libipsec=""
    if [ "${LIBIPSEC:-0}" = 1 ]; then libipsec="kernel-libipsec"; fi
    include=""
    if [ "$1" = gw ]; then include="include $2/eap-radius.conf"; fi
    cat <<CONF
charon {
    load_modular = no
    load = $libipsec $PLUGINS $extra
    install_virtual_ip = yes
    filelog {
        log {
            path = $2/charon.log
            default = 1
            ike = 2
            cfg = 2
        }
    }
    plugins {
        vici {
            socket = unix://$2/charon.vici
        }
    }
}
$include
CONF
}

case "${1:-}" in
up)
    ip netns add $GW
    ip netns add $CL
    ip link add lab-gw netns $GW type veth peer name lab-cl netns $CL
    ip -n $GW addr add 192.0.2.1/24 dev lab-gw
    ip -n $CL addr add 192.0.2.2/24 dev lab-cl
    ip -n $GW addr add 198.51.100.1/32 dev lo   # "the network behind the gateway"
    for ns in $GW $CL; do
        ip -n $ns link set lo up
    done
    ip -n $GW link set lab-gw up
    ip -n $CL link set lab-cl up
    ;;
charon)
    role=$2 dir=$3
    mkdir -p "$dir/run" "$dir/swanctl/x509" "$dir/swanctl/x509ca" "$dir/swanctl/x509crl" \
        "$dir/swanctl/private"
    [ -f "$dir/strongswan.conf" ] || strongswan_conf "$role" "$dir" > "$dir/strongswan.conf"
    STRONGSWAN_CONF="$dir/strongswan.conf" ip netns exec "$(ns_of "$role")" \
        sh -c "mount --bind $dir/run /run && exec /usr/lib/ipsec/charon" \
        > "$dir/charon.out" 2>&1 &
    echo $! > "$dir/charon.pid"
    i=0
    while [ ! -S "$dir/charon.vici" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then echo "charon did not start: see $dir/charon.log" >&2; exit 1; fi
        sleep 0.1
    done
    ;;
swanctl)
    dir=$3
    command=$4
    shift 4
    STRONGSWAN_CONF="$dir/strongswan.conf" swanctl "$command" --uri "unix://$dir/charon.vici" "$@"
    ;;
down)
    shift
    for dir in "$@"; do
        if [ -f "$dir/charon.pid" ]; then
            kill "$(cat "$dir/charon.pid")" 2>/dev/null || true
            rm -f "$dir/charon.pid"
        fi
    done
    ip netns del $CL 2>/dev/null || true
    ip netns del $GW 2>/dev/null || true
    ;;
*)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac
