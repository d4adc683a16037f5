#!/bin/sh
# Makes a CA and certificates for Chorus on 127.0.0.1 / localhost, in the directory given
# (default testdata/tls/, the certificates of the TLS tests, test/server-tls.test.ts, whose
# keys are public). `chorus dev --tls` runs it for its cluster's own. Valid for 100 years,
# EC P-256.
#   ca.crt            the CA that signs server.crt and client.crt
#   server.crt/.key   a member's client-port certificate: SAN IP 127.0.0.1, DNS localhost
#   client.crt/.key   a client certificate (CN chorus-test-client), for --client-cert-auth
#   other-ca.crt      a second CA, which signs other-client.crt: a client the members refuse
#   other-server.crt/.key  signed by other-ca, SAN as server.crt: the rotated-to certificate
set -eu
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/testdata/tls}"
mkdir -p "$dir"
cd "$dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
days=36500
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name cn
  key "$work/$1.key"
  openssl req -x509 -new -key "$work/$1.key" -subj "/CN=$2" -days $days -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() { # name cn ca extensions
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  printf '%s\n' "$4" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$3.crt" -CAkey "$work/$3.key" -CAcreateserial \
    -CAserial "$work/$3.srl" -days $days -extfile "$work/$1.ext" -out "$1.crt" 2>/dev/null
}
ca ca chorus-test-ca
ca other-ca chorus-test-other-ca
leaf server chorus-test-server ca \
  "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature"
leaf client chorus-test-client ca \
  "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
leaf other-server chorus-test-other-server other-ca \
  "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature"
leaf other-client chorus-test-other-client other-ca \
  "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
chmod 600 ./*.key
