#!/bin/sh
# Certificates for the IKEv2 examples, made with strongSwan's `pki` (package
# strongswan-pki).  Run it in an empty directory you keep offline (ca.key signs
# everything); then copy each file where the table at the end says.
#
#   sh pki.sh                 # CA, gateway, eapkit, a user (alice) and a device (laptop)
#   sh pki.sh revoke FILE.pem # put FILE.pem on the CRL (ca.crl), keeping earlier entries
#
# Names (change them for your site, and in the configuration files):
#   vpn.example.org      the gateway's IKE identity (clients check it)
#   radius.example.org   eapkit's TLS certificate (EAP-TLS/TTLS clients: aaa_id)
#   alice@example.org    a user certificate for EAP-TLS (eapkit user alice@example.org)
#   laptop.example.org   a device certificate for certificate-then-code
set -eu
umask 077
CRL_DAYS=30

issue() { # issue NAME SAN FLAG...
    name=$1 san=$2
    shift 2
    flags=""
    for f in "$@"; do flags="$flags --flag $f"; done
    pki --gen --type ecdsa --size 256 --outform pem > "$name.key"
    # shellcheck disable=SC2086
    pki --pub --in "$name.key" --type ecdsa |
        pki --issue --cacert ca.pem --cakey ca.key --lifetime 730 \
            --dn "CN=$san" --san "$san" $flags --outform pem > "$name.pem"
}

if [ "${1:-}" = revoke ]; then
    pki --signcrl --cacert ca.pem --cakey ca.key --lifetime "$CRL_DAYS" \
        --lastcrl ca.crl --reason key-compromise --cert "$2" --outform pem > ca.crl.new
    mv ca.crl.new ca.crl   # a rename: eapkit reloads the CRL within a second
    echo "revoked $2; copy ca.crl to eapkit (and, for certificate-then-code, the gateway)"
    exit 0
fi

pki --gen --type ecdsa --size 384 --outform pem > ca.key
pki --self --ca --lifetime 3650 --in ca.key --type ecdsa \
    --dn "CN=Example VPN CA" --outform pem > ca.pem
issue gw vpn.example.org serverAuth ikeIntermediate
issue radius radius.example.org serverAuth
issue alice alice@example.org clientAuth
issue laptop laptop.example.org clientAuth
# An empty CRL to start with; `sh pki.sh revoke FILE.pem` adds to it.  Refresh it
# (run `revoke` or re-sign) before its nextUpdate, CRL_DAYS from now: eapkit check
# flags a stale CRL and eapkit refuses every certificate of the CA with it.
pki --signcrl --cacert ca.pem --cakey ca.key --lifetime "$CRL_DAYS" --outform pem > ca.crl
chmod 644 ./*.pem ca.crl
cat <<'WHERE'
Where the files go:
  eapkit (its directory, /var/lib/eapkit):   pki/radius.pem pki/radius.key pki/ca.pem pki/ca.crl
  gateway /etc/swanctl/:                     x509/gw.pem private/gw.key x509ca/ca.pem
                                             x509crl/ca.crl (certificate-then-code only)
  client /etc/swanctl/:                      x509ca/ca.pem, and for EAP-TLS x509/alice.pem
                                             private/alice.key, for certificate-then-code
                                             x509/laptop.pem private/laptop.key
WHERE
